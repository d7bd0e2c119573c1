"""WSGI entry point for gunicorn: ``gunicorn backend.wsgi:app``.

Settings come from the environment; an invalid value prints one line naming the variable
and exits with status 2.
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

# In embedded mode the training thread shares the interpreter with the request threads.
# A 1 ms switch interval (default 5 ms) lets a webhook acknowledgement take the GIL
# between the training thread's bytecodes sooner, so acks stay fast during a round.
sys.setswitchinterval(0.001)

app = create_app(_settings)
