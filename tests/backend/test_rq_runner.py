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
from tests.reliability.harness import (HangingTCP, cleanup_prefix, free_port,  # noqa: E402
                                       require_redis, wait_for)


@pytest.fixture
def env(tmp_path, monkeypatch):
    conn = require_redis()
    prefix = f"studio-al-unit-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "REDIS_URL": "redis://127.0.0.1:6379/0", "REDIS_QUEUE": prefix,
                                  "LABEL_STUDIO_URL": "http://ls.invalid",
                                  "LABEL_STUDIO_API_KEY": "k", "AL_LOCK_TTL": "2",
                                  "AL_MIN_ROUND_INTERVAL": "0"},
                                 validate_components=False)
    from backend.store import Store
    Store(settings.model_dir).save_project(1, {"label_config": SINGLE_CONFIG,
                                               "parsed": _parsed()})
    ls = FakeLabelStudio(make_tasks(["good movie", "bad movie", "great", "awful", "fine"]))
    ls.annotate(1, ["pos"])
    ls.annotate(2, ["neg"])
    ls.connect(Store(settings.model_dir), 1, SINGLE_CONFIG)  # the project's ML backend is us
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
    assert runner.flush(10)
    q = Queue(settings.redis_queue, connection=conn)
    assert q.count == 1
    st = runner.status(1)
    assert st["state"] == "queued" and st["absorbed"] == 49 and st["position"] == 0
    _work(settings, conn)
    st = runner.status(1)
    assert st["state"] == "idle" and st["runs"] == 1 and q.count == 0
    from backend.store import Store
    assert len(Store(settings.model_dir).audit(1)) == 1 and st["eta_seconds"] is None
    assert "create_prediction" in ls.calls  # a real round ran
    # ETA once a duration is known: queued -> one average duration
    runner.submit(1, "again")
    assert runner.flush(10)
    # eta_seconds is reported to the hundredth of a second
    assert runner.status(1)["eta_seconds"] == pytest.approx(st["last_duration"], abs=0.006)


def test_requests_while_running_cause_exactly_one_rerun(env, monkeypatch):
    settings, runner, ls, conn = env
    started, release = threading.Event(), threading.Event()
    real_round = rq_jobs.run_project_round
    seen = []

    def slow_round(*args):
        seen.append(time.time())
        if len(seen) == 1:
            started.set()
            assert release.wait(20)
        return real_round(*args)
    monkeypatch.setattr(rq_jobs, "run_project_round", slow_round)
    results = []

    def storm():
        assert started.wait(20)
        results.extend(runner.submit(1, "during") for _ in range(20))
        assert runner.flush(10)
        assert runner.status(1)["rerun_pending"] is True
        release.set()
    t = threading.Thread(target=storm)
    t.start()
    runner.submit(1, "first")
    assert runner.flush(10)
    _work(settings, conn)  # runs the job, then the single rerun, then exits (burst)
    t.join(10)
    assert results == ["queued"] * 20  # answered at once; Redis had them as "running"
    st = runner.status(1)
    assert st["runs"] == 2 and st["state"] == "idle" and not st["rerun_pending"]
    assert len(seen) == 2


def test_repair_requeues_a_lost_running_job_and_gives_up_after_three(env):
    settings, runner, ls, conn = env
    keys = rq_jobs.Keys(settings.redis_queue)
    runner.submit(1, "x")
    assert runner.flush(10)
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
    assert runner.flush(10)
    _work(settings, conn)
    assert runner.status(1)["state"] == "idle"


def test_repair_reenqueues_a_vanished_queued_job(env):
    settings, runner, ls, conn = env
    runner.submit(1, "x")
    assert runner.flush(10)
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
        assert runner.submit(4, "ANNOTATION_CREATED") in ("queued", "deferred")
        assert time.perf_counter() - t0 < 0.2
        wait_for(lambda: runner.health()["deferred_projects"] == [4], 10, "project 4 deferred")
        h = runner.health()
        assert h["redis"] == "down" and h["degraded"]
        assert runner.submit(4, "ANNOTATION_CREATED") == "deferred"  # known down now
        assert runner.status(4)["state"] == "deferred"
        assert runner.flush(0.5) is False and not runner.idle()
    finally:
        runner.shutdown()


def test_hanging_redis_never_delays_submit_and_nothing_is_dropped(tmp_path):
    """A Redis that accepts connections and never answers: submit() returns at once (before:
    2 s, the socket timeout), /health reports degraded, and once Redis answers the deferred
    requests reach it."""
    conn = require_redis()
    prefix = f"studio-al-unit-{uuid.uuid4().hex[:8]}"
    hang = HangingTCP(upstream=("127.0.0.1", 6379))
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path), "REDIS_QUEUE": prefix,
                                  "REDIS_URL": f"redis://127.0.0.1:{hang.port}/0",
                                  "AL_MIN_ROUND_INTERVAL": "0"}, validate_components=False)
    t0 = time.perf_counter()
    runner = rq_jobs.RQJobRunner(settings, interval=0.2)
    try:
        assert time.perf_counter() - t0 < 0.2  # no Redis round trip at construction either
        slowest = 0.0
        for i in range(20):
            t = time.perf_counter()
            state = runner.submit(4 + i % 2, f"ANNOTATION_CREATED{i}")
            slowest = max(slowest, time.perf_counter() - t)
            assert state in ("queued", "deferred")
        assert slowest < 0.2, slowest
        wait_for(lambda: runner.health()["degraded"] and runner.health()["redis"] == "down",
                 10, "redis down")
        wait_for(lambda: runner.health()["deferred_projects"] == [4, 5], 10, "deferred 4, 5")
        t = time.perf_counter()
        assert runner.status(4)["state"] == "deferred"  # no wait for a Redis known down
        assert time.perf_counter() - t < 0.2
        assert conn.hget(rq_jobs.Keys(prefix).project(4), "state") is None

        hang.forward()  # Redis answers again: every deferred request is submitted
        wait_for(lambda: not runner.health()["degraded"], 15, "redis back")
        assert runner.flush(10)
        keys = rq_jobs.Keys(prefix)
        for pid in (4, 5):
            h = {k.decode(): v.decode() for k, v in conn.hgetall(keys.project(pid)).items()}
            assert h["state"] == "queued" and "ANNOTATION_CREATED" in h["reason"], h
        assert int(conn.hget(keys.project(4), "absorbed")) == 9  # 10 requests, one job
        assert Queue(prefix, connection=conn).count == 2
    finally:
        runner.shutdown()
        hang.stop()
        cleanup_prefix(conn, prefix)


# --------------------------------------------------------------------------- pacing
def _paced(settings, monkeypatch, **over):
    import dataclasses
    paced = dataclasses.replace(settings, **over)
    monkeypatch.setitem(rq_jobs._worker_state, "settings", paced)
    return paced


def test_min_interval_delays_the_next_job_until_sweep_releases_it(env, monkeypatch):
    settings, runner, ls, conn = env
    settings = _paced(settings, monkeypatch, min_round_interval=1.5)
    monkeypatch.setattr(rq_jobs, "run_project_round",  # a fast round: the interval binds
                        lambda *a: {"status": "ok", "pace_s": 0.0})
    q = Queue(settings.redis_queue, connection=conn)
    runner.submit(1, "first")
    assert runner.flush(10)
    _work(settings, conn)
    first = runner.status(1)
    assert first["runs"] == 1 and first["state"] == "idle"
    runner.submit(1, "second")
    assert runner.flush(10)
    st = runner.status(1)
    # recorded queued, but not given to RQ before its time
    assert st["state"] == "queued" and q.count == 0
    assert st["next_start_at"] == pytest.approx(first["last_started"] + 1.5, abs=0.01)
    runner.submit(1, "third")  # absorbed while it waits
    assert runner.flush(10)
    assert runner.status(1)["absorbed"] == 1
    released_at = wait_for(lambda: rq_jobs.sweep(conn, settings)[0] == [] and q.count == 1
                           and time.time(), 5, "the delayed job released")
    assert released_at >= st["next_start_at"]
    _work(settings, conn)
    second = runner.status(1)
    assert second["runs"] == 2 and second["state"] == "idle"
    assert second["last_started"] - first["last_started"] >= 1.5


def test_pace_s_and_again_from_the_round(env, monkeypatch):
    settings, runner, ls, conn = env
    settings = _paced(settings, monkeypatch, min_round_interval=0.0)
    rounds = []

    def fake_round(pid, reason, settings_, store, factory):
        rounds.append((time.time(), reason))
        return {"status": "ok", "pace_s": 0.6, "again": len(rounds) == 1}
    monkeypatch.setattr(rq_jobs, "run_project_round", fake_round)
    q = Queue(settings.redis_queue, connection=conn)
    runner.submit(1, "first")
    assert runner.flush(10)
    _work(settings, conn)  # round 1 says "again" with pace_s 0.6: one more, delayed
    st = runner.status(1)
    assert st["runs"] == 1 and st["state"] == "queued" and q.count == 0
    assert st["next_start_at"] >= st["last_finished"] + 0.6 - 1e-3
    wait_for(lambda: rq_jobs.sweep(conn, settings) is not None and q.count == 1, 5,
             "the delayed rerun released")
    _work(settings, conn)
    assert [r for _, r in rounds] == ["first", "again"]
    assert rounds[1][0] - st["last_finished"] >= 0.6 - 1e-3
    st = runner.status(1)
    assert st["runs"] == 2 and st["state"] == "idle"  # round 2 did not ask again
