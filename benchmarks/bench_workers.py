"""Retrains per minute with 1 vs 2 ``studio-al worker`` processes on 4 projects.

Real RQ workers, a private ``redis-server``, the fake Label Studio process of the reliability
tests (each project: ``--tasks`` SST-2 tasks, ``--labeled`` of them annotated). The bench
process plays the web process: it keeps every project busy (submits a retrain whenever a
project is idle) for ``--seconds`` after a warm-up, and counts finished rounds.

    .venv/bin/python benchmarks/bench_workers.py --seconds 60 --out benchmarks/results/workers.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (first: makes tests.reliability importable)

from backend.rq_jobs import RQJobRunner
from backend.settings import Settings
from backend.store import Store
from tests.reliability.harness import (Backend, FakeLS, PrivateRedis, base_env, texts,
                                       wait_for, wait_workers, worker)

PROJECTS = (1, 2, 3, 4)


def run(n_workers: int, args, tmp: Path) -> dict:
    rds = PrivateRedis(tmp).start()
    ls = FakeLS(token="bench-token")
    store_dir = tmp / f"store{n_workers}"
    rows = texts(args.tasks)
    store = Store(str(store_dir))
    for pid in PROJECTS:
        ls.add_tasks(pid, [t for t, _ in rows])
        ls.annotate(pid, [{"task": i + 1, "choice": rows[i][1]} for i in range(args.labeled)])
    env = base_env(MODEL_DIR=str(store_dir), REDIS_URL=rds.url, REDIS_QUEUE="bench",
                   LABEL_STUDIO_URL=ls.url, LABEL_STUDIO_API_KEY=ls.token, LOG_LEVEL="WARNING")
    workers = [worker(env, tmp / f"w{n_workers}-{i}.log", nice=0) for i in range(n_workers)]
    settings = Settings.from_env(env, validate_components=False)
    runner = RQJobRunner(settings, interval=3600)
    try:
        wait_workers(rds.url, "bench", n_workers, timeout=120)
        connect(env, ls, tmp / f"web{n_workers}.log")

        def pump():
            for pid in PROJECTS:
                if runner.status(pid)["state"] in ("idle", "failed"):
                    runner.submit(pid, "bench")

        def runs():
            return sum(runner.status(pid).get("runs", 0) for pid in PROJECTS)
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:
            pump()
            time.sleep(0.02)
        start_runs, t0 = runs(), time.monotonic()
        while time.monotonic() - t0 < args.seconds:
            pump()
            time.sleep(0.02)
        done, elapsed = runs() - start_runs, time.monotonic() - t0
        wait_for(lambda: runner.idle(), 120, "the last rounds")
        audits = [r for pid in PROJECTS for r in store.audit(pid)]
        failed = sum(r["status"] != "ok" for r in audits)
        totals = sorted(r["timings"]["total"] for r in audits if r["status"] == "ok")
        return {"workers": n_workers, "rounds": done, "seconds": round(elapsed, 1),
                "retrains_per_minute": round(done * 60 / elapsed, 1),
                "round_seconds_median": totals[len(totals) // 2] if totals else None,
                "failed_rounds": failed}
    finally:
        runner.shutdown()
        for w in workers:
            w.stop()
        ls.stop()
        rds.stop()


def connect(env: dict, ls: FakeLS, log: Path) -> None:
    """Connect every project (Label Studio's /setup with the reliability tests' label config)
    to a ``studio-al serve`` on the same MODEL_DIR: its first round, on the workers, proves
    the connection (rounds write to a project only then). The web process is then stopped:
    during the measurement the bench process plays it."""
    web = Backend(env, log)
    try:
        for pid in PROJECTS:
            web.connect(ls, pid)
    finally:
        web.proc.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--labeled", type=int, default=300)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(k, args, Path(tmp)) for k in (1, 2)]
    out = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(),
           "python": platform.python_version(), "projects": len(PROJECTS),
           "tasks_per_project": args.tasks, "labeled_per_project": args.labeled,
           "results": results}
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
