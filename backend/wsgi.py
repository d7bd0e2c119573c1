"""WSGI entry point for gunicorn: ``gunicorn backend.wsgi:app`` (what ``studio-al serve``
runs).

Settings come from the environment; an invalid value prints one line naming the variable
and exits with status 2. Once the app is built, start-up recovery queues a round for every
project with webhooks recorded after its last round (:meth:`BackendService.recover`).
"""
from __future__ import annotations

import sys

from backend.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    print(f"studio-al: {exc}", file=sys.stderr)
    sys.exit(2)

from backend.app import create_app  # noqa: E402

# The request threads share one GIL with each other (and, in embedded mode, with the job
# threads, which wait for the training child processes). A 1 ms switch interval (default
# 5 ms) lets a short request such as a webhook acknowledgement take the GIL sooner while
# another thread is CPU-bound (a live prediction, a large /predict or /status body, a
# dashboard render).
sys.setswitchinterval(0.001)

app = create_app(_settings)
app.extensions["studio_al"]["service"].recover()
