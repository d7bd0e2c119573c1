"""``studio-al`` command line.

* ``studio-al serve [--bind 127.0.0.1:9090] [--threads 8]`` validates the settings, then
  execs gunicorn on ``backend.wsgi:app`` with ONE worker (embedded mode keeps its job queue
  and caches in-process) and ``--threads`` request threads. The worker class
  (:data:`WORKER_CLASS`, gthread made safe against slow clients: ``backend.gunicorn_worker``)
  gives a thread only complete requests and drops a connection that has not sent its
  request head within 5 s, so slow or idle connections cannot freeze the backend.
  With ``REDIS_URL`` set, ``--workers N`` runs N web processes (the job queue is in Redis and
  the store is safe across processes).
* ``studio-al worker [--burst] [--name NAME]`` runs an RQ worker on queue ``REDIS_QUEUE``
  (needs ``REDIS_URL``); start any number, on any machine that shares ``MODEL_DIR``.
* ``studio-al simulate ...`` runs active-learning simulations (``al_engine.simulate``).

Exit status 2 with a one-line message on a configuration error.
"""
from __future__ import annotations

import argparse
import os
import sys

from backend.settings import Settings, SettingsError


def _fail(message: str) -> int:
    print(f"studio-al: {message}", file=sys.stderr)
    return 2


#: gunicorn worker class of ``serve`` (see ``backend.gunicorn_worker``).
WORKER_CLASS = "backend.gunicorn_worker.SlowClientSafeWorker"


def gunicorn_argv(bind: str, threads: int, log_level: str, workers: int = 1) -> list[str]:
    """The gunicorn command line ``serve`` execs."""
    return [sys.executable, "-m", "gunicorn", "--workers", str(workers),
            "--worker-class", WORKER_CLASS,
            "--threads", str(threads), "--bind", bind, "--timeout", "120",
            "--graceful-timeout", "30", "--log-level", log_level.lower(), "backend.wsgi:app"]


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc))
    if args.threads < 1:
        return _fail(f"--threads={args.threads} is invalid; allowed: an integer >= 1")
    if args.workers < 1:
        return _fail(f"--workers={args.workers} is invalid; allowed: an integer >= 1")
    if args.workers > 1 and not settings.redis_url:
        return _fail(f"--workers={args.workers} needs REDIS_URL (embedded mode keeps its job "
                     "queue in one process); allowed without it: 1")
    os.makedirs(settings.model_dir, exist_ok=True)
    argv = gunicorn_argv(args.bind, args.threads, settings.log_level, args.workers)
    print(f"studio-al: serving on http://{args.bind} (model dir {os.path.abspath(settings.model_dir)}, "
          f"strategy {settings.query_strategy}, classifier {settings.classifier}, "
          f"cold start {settings.init_strategy})", file=sys.stderr, flush=True)
    if os.environ.get("AL_CLASSIFIER", "auto").strip() in ("", "auto") and \
            settings.classifier != "embedding_logistic_regression":
        print("studio-al: AL_CLASSIFIER=auto chose TF-IDF: install studio-al[neural] for the "
              "sentence-embedding default (benchmarks/results/label_efficiency.md)",
              file=sys.stderr, flush=True)
    if args.dry_run:
        print(" ".join(argv))
        return 0
    os.execv(argv[0], argv)
    return 0  # pragma: no cover - execv does not return


def cmd_worker(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc))
    if not settings.redis_url:
        return _fail("REDIS_URL is required for `studio-al worker` (embedded mode trains inside "
                     "`studio-al serve`)")
    if args.nice:
        os.nice(args.nice)
    try:
        from backend.rq_jobs import run_worker
    except ImportError as exc:
        return _fail(str(exc))
    return run_worker(settings, name=args.name, burst=args.burst)


def cmd_simulate(argv: list[str]) -> int:
    """The simulations, their progress and warnings logged like the backend's (``LOG_LEVEL``,
    key=value lines)."""
    from al_engine.simulate import main as simulate_main
    from backend.logs import configure_logging
    from backend.settings import SETTINGS, SettingsError
    try:
        level = next(s for s in SETTINGS if s.env == "LOG_LEVEL").read(os.environ)
    except SettingsError as exc:
        return _fail(str(exc))
    configure_logging(level)
    return simulate_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio-al", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the Label Studio ML backend (gunicorn)")
    serve.add_argument("--bind", default="127.0.0.1:9090", help="host:port (default %(default)s)")
    serve.add_argument("--threads", type=int, default=8, help="request threads (default %(default)s)")
    serve.add_argument("--dry-run", action="store_true",
                       help="validate settings and print the gunicorn command instead of running it")
    serve.set_defaults(func=cmd_serve)
    serve.add_argument("--workers", type=int, default=1,
                       help="web processes (default %(default)s; more than 1 needs REDIS_URL)")
    worker = sub.add_parser("worker", help="run a Redis queue worker (needs REDIS_URL)")
    worker.add_argument("--burst", action="store_true",
                        help="exit when the queue is empty instead of waiting for jobs")
    worker.add_argument("--name", default=None, help="worker name (default <queue>-<host>-<pid>)")
    worker.add_argument("--nice", type=int, default=0,
                        help="raise the worker's niceness by N (e.g. 10 when it shares CPUs with "
                             "`studio-al serve`, so webhook acks keep their latency)")
    worker.set_defaults(func=cmd_worker)
    sub.add_parser("simulate", help="run active-learning simulations on a JSON Lines dataset "
                   "(see `studio-al simulate --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["simulate"]:
        return cmd_simulate(argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
