"""RQJobRunner against the real Redis (127.0.0.1:6379, a key prefix per test): coalescing
while queued, exactly one rerun for requests made while running, repair of lost jobs, and
deferral while Redis is unreachable. Jobs run in-process with RQ's SimpleWorker."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

rq = pytest.importorskip("rq", reason="rq is in the [redis] extra")
from rq import Queue, SimpleWorker  # noqa: E402

from backend import rq_jobs  # noqa: E402
from backend.settings import Settings  # noqa: E402
from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio, make_tasks  # noqa: E402
from tests.reliability.harness import cleanup_prefix, free_port, require_redis  # noqa: E402


@pytest.fixture
def env(tmp_path, monkeypatch):
    conn = require_redis()
    prefix = f"studio-al-unit-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_QUEUE": prefix,
                                  "LABEL_STUDIO_URL": "http://ls.invalid",
                                  "LABEL_STUDIO_API_KEY": "k", "AL_LOCK_TTL": "2"},
                                 validate_components=False)
    from backend.store import Store
    Store(settings.model_dir).save_project(1, {"label_config": SINGLE_CONFIG,
                                               "parsed": _parsed()})
    ls = FakeLabelStudio(make_tasks(["good movie", "bad movie", "great", "awful", "fine"]))
    ls.annotate(1, ["pos"])
    ls.annotate(2, ["neg"])
    monkeypatch.setitem(rq_jobs._worker_state, "settings", settings)
    monkeypatch.setattr("backend.jobs.label_studio_client_factory", lambda s: lambda u, k: ls)
    runner = rq_jobs.RQJobRunner(settings, interval=3600)  # monitor effectively off
    yield settings, runner, ls, conn
    runner.shutdown()
    cleanup_prefix(conn, prefix)


def _parsed():
    from backend.labelconfig import parse_label_config
    return parse_label_config(SINGLE_CONFIG).to_dict()


def _work(settings, conn):
    w = SimpleWorker([Queue(settings.redis_queue, connection=conn)], connection=conn,
                     name=f"{settings.redis_queue}-w-{uuid.uuid4().hex[:6]}")
    w.work(burst=True, logging_level="WARNING")


def test_storm_while_queued_is_one_job(env):
    settings, runner, ls, conn = env
    states = [runner.submit(1, "ANNOTATION_CREATED") for _ in range(50)]
    assert states == ["queued"] * 50
    q = Queue(settings.redis_queue, connection=conn)
    assert q.count == 1
    st = runner.status(1)
    assert st["state"] == "queued" and st["absorbed"] == 49 and st["position"] == 0
    _work(settings, conn)
    st = runner.status(1)
    assert st["state"] == "idle" and st["runs"] == 1 and q.count == 0
    assert ls.calls.count("fetch_tasks") == 1 and st["eta_seconds"] is None
    # ETA once a duration is known: queued -> one average duration
    runner.submit(1, "again")
    # eta_seconds is reported to the hundredth of a second
    assert runner.status(1)["eta_seconds"] == pytest.approx(st["last_duration"], abs=0.006)


def test_requests_while_running_cause_exactly_one_rerun(env):
    settings, runner, ls, conn = env
    started, release = threading.Event(), threading.Event()
    fetch = ls.fetch_tasks
    seen = []

    def slow_fetch(pid):
        seen.append(time.time())
        if len(seen) == 1:
            started.set()
            assert release.wait(20)
        return fetch(pid)
    ls.fetch_tasks = slow_fetch
    results = []

    def storm():
        assert started.wait(20)
        results.extend(runner.submit(1, "during") for _ in range(20))
        assert runner.status(1)["rerun_pending"] is True
        release.set()
    t = threading.Thread(target=storm)
    t.start()
    runner.submit(1, "first")
    _work(settings, conn)  # runs the job, then the single rerun, then exits (burst)
    t.join(10)
    assert results == ["running"] * 20
    st = runner.status(1)
    assert st["runs"] == 2 and st["state"] == "idle" and not st["rerun_pending"]
    assert len(seen) == 2


def test_repair_requeues_a_lost_running_job_and_gives_up_after_three(env):
    settings, runner, ls, conn = env
    keys = rq_jobs.Keys(settings.redis_queue)
    runner.submit(1, "x")
    job_id = runner.status(1)["job_id"]
    # Simulate a worker that started the job and died: running, no lock, old start.
    conn.hset(keys.project(1), mapping={"state": "running", "started_at": time.time() - 60})
    done = rq_jobs.repair(conn, settings)
    assert done and done[0][1] == "enqueue" and "lock expired" in done[0][2]
    st = runner.status(1)
    assert st["state"] == "queued" and st["job_id"] != job_id and st["requeued"] == 1
    for _ in range(2):
        conn.hset(keys.project(1), mapping={"state": "running", "started_at": time.time() - 60})
        action = rq_jobs.repair(conn, settings)[0][1]
    assert action == "gave_up" and runner.status(1)["state"] == "failed"
    # the next request starts afresh
    assert runner.submit(1, "next") == "queued"
    _work(settings, conn)
    assert runner.status(1)["state"] == "idle"


def test_repair_reenqueues_a_vanished_queued_job(env):
    settings, runner, ls, conn = env
    runner.submit(1, "x")
    q = Queue(settings.redis_queue, connection=conn)
    q.empty()  # e.g. Redis lost its data, or the enqueue failed after the Lua step
    conn.delete(f"rq:job:{runner.status(1)['job_id']}")
    conn.hset(rq_jobs.Keys(settings.redis_queue).project(1), "queued_at", time.time() - 60)
    assert rq_jobs.repair(conn, settings)[0][1] == "reenqueue"
    assert q.count == 1
    _work(settings, conn)
    assert runner.status(1)["runs"] == 1


def test_redis_down_defers_and_reports_degraded(tmp_path):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_URL":
                                  f"redis://127.0.0.1:{free_port()}/0"},
                                 validate_components=False)
    runner = rq_jobs.RQJobRunner(settings, interval=3600)
    try:
        t0 = time.perf_counter()
        assert runner.submit(4, "ANNOTATION_CREATED") == "deferred"
        assert time.perf_counter() - t0 < 1.0
        h = runner.health()
        assert h["redis"] == "down" and h["degraded"] and h["deferred_projects"] == [4]
        assert runner.status(4)["state"] == "deferred"
    finally:
        runner.shutdown()
