"""The Label Studio ML backend: the Flask 3 application factory :func:`create_app`.

The factory only wires: a :class:`backend.service.BackendService` (what the backend does)
stored in ``app.extensions["studio_al"]``, the API blueprint (``backend.api``: routes, JSON
errors, basic auth) and the dashboard blueprint (``backend.dashboard``). It queues nothing:
start-up recovery (:meth:`BackendService.recover`) is called by the entry point,
``backend.wsgi``.
"""
from __future__ import annotations

import atexit
import functools
from typing import Any, Callable

from flask import Flask

from backend import api, dashboard
from backend.instance import Instance
from backend.jobs import (JobRunner, ProcessRoundExecutor, ThreadJobRunner,
                          label_studio_client_factory, run_project_round)
from backend.logs import configure_logging
from backend.service import BackendService
from backend.settings import Settings
from backend.store import Store

#: Where an embedded runner's rounds run (``create_app(rounds=...)``).
ROUND_MODES = ("auto", "process", "thread")


def round_job(settings: Settings, store: Store,
              client_factory: Callable[[str, str], Any] | None = None,
              rounds: str = "auto") -> Callable[[int, str], dict]:
    """The callable ``(project_id, reason) -> audit record`` an embedded runner runs.

    ``rounds="process"``: a :class:`ProcessRoundExecutor` (each round in a child process, so
    training never holds the web process's GIL nor imports torch there; shut down at exit).
    ``rounds="thread"``: the round runs in the runner's thread with ``client_factory``
    (default: Label Studio's client from ``settings``). ``"auto"``: ``"thread"`` when a
    ``client_factory`` is given (an injected client, e.g. a test's fake, cannot be sent to a
    child process), else ``"process"``.
    """
    if rounds not in ROUND_MODES:
        raise ValueError(f"rounds={rounds!r}; allowed: {', '.join(ROUND_MODES)}")
    if rounds == "auto":
        rounds = "process" if client_factory is None else "thread"
    if rounds == "thread":
        return functools.partial(run_project_round, settings=settings, store=store,
                                 client_factory=client_factory or
                                 label_studio_client_factory(settings))
    if client_factory is not None:
        raise ValueError("rounds='process' cannot use an injected client_factory (it cannot "
                         "be sent to a child process); pass rounds='thread'")
    job = ProcessRoundExecutor(settings)
    atexit.register(job.shutdown)
    return job


def default_runner(settings: Settings, job: Callable[[int, str], dict]) -> JobRunner:
    """An :class:`backend.rq_jobs.RQJobRunner` with ``REDIS_URL``, else a
    :class:`ThreadJobRunner` running ``job``; shut down at exit."""
    if settings.redis_url:
        from backend.rq_jobs import RQJobRunner  # needs the [redis] extra
        runner: JobRunner = RQJobRunner(settings)
    else:
        runner = ThreadJobRunner(job, workers=settings.round_workers,
                                 min_interval=settings.min_round_interval)
    atexit.register(runner.shutdown, 2.0)
    return runner


def create_app(settings: Settings | None = None, runner: JobRunner | None = None,
               client_factory: Callable[[str, str], Any] | None = None, *,
               rounds: str = "auto") -> Flask:
    """Build the backend (no round is queued: see :meth:`BackendService.recover`).

    Parameters
    ----------
    settings : Settings or None
        Default: :meth:`Settings.from_env`.
    runner : JobRunner or None
        Default: :func:`default_runner` (Redis/RQ with ``REDIS_URL``, else a
        :class:`ThreadJobRunner` of :func:`round_job`).
    client_factory : callable ``(url, api_key) -> LabelStudioClient`` or None
        Label Studio client of the rounds and of ``/setup``'s token check (tests inject a
        fake). Default: :class:`backend.labelstudio.LabelStudioClient`.
    rounds : {"auto", "process", "thread"}
        Where the embedded runner's rounds run (see :func:`round_job`); ``"auto"`` runs them
        in a child process unless a ``client_factory`` is injected.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    store = Store(settings.model_dir)
    job = round_job(settings, store, client_factory, rounds)
    runner = runner or default_runner(settings, job)
    service = BackendService(settings, store, runner, Instance(settings, store.root),
                             client_factory)
    app = Flask("studio_al")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_mb * 1024 * 1024
    app.json.sort_keys = False
    app.extensions["studio_al"] = {"settings": settings, "store": store, "runner": runner,
                                   "job": job, "instance": service.instance, "service": service}
    api.register_error_handlers(app)
    app.before_request(api.check_basic_auth)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)  # GET /dashboard, /dashboard/<project>
    return app
