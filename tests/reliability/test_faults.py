"""Faults with real processes (gunicorn backend, RQ workers, Redis):

* ``kill -9`` of the worker in the middle of a round: the job is re-queued and finished by the
  other worker, the previous version keeps serving ``/predict`` meanwhile, and the files the
  killed round left behind are never loaded;
* Redis restarted (a private ``redis-server``, data lost): ``/health`` and ``/status`` say
  degraded, webhooks are still acknowledged, and everything recovers;
* Label Studio answering 500 / timing out / dropping connections during the push: bounded
  retries with backoff, the round is failed in the audit log, the next webhook succeeds.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.reliability.harness import (Backend, PrivateRedis, base_env, texts, wait_for,
                                       wait_workers, worker)

pytestmark = pytest.mark.slow
PROJECT = 7


def _audit(store, project=PROJECT):
    path = store / str(project) / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _annotate_and_notify(ls, backend, rows, task_ids):
    ids = ls.annotate(PROJECT, [{"task": t, "choice": rows[t - 1][1]} for t in task_ids])
    r = backend.post("/webhook", {"action": "ANNOTATIONS_CREATED", "project": PROJECT,
                                  "annotations": [{"id": a, "task": t}
                                                  for a, t in zip(ids, task_ids)]})
    assert r.status_code == 200, r.text
    return ids, r.json()


def _settled(backend, project=PROJECT):
    job = backend.job(project)
    return job["state"] in ("idle", "failed") and not job.get("rerun_pending") and job


def _predict_versions(backend, task_ids):
    r = backend.post("/predict", {"project": PROJECT,
                                  "tasks": [{"id": t, "data": {"text": "x"}} for t in task_ids]})
    assert r.status_code == 200, r.text
    return {p["model_version"] for p in r.json()["results"]}


def test_kill9_worker_mid_round(tmp_path, main_redis, fake_ls, report):
    redis_url, prefix = main_redis
    rows = texts(300)
    fake_ls.add_tasks(PROJECT, [t for t, _ in rows])
    store = tmp_path / "store"
    env = base_env(MODEL_DIR=str(store), REDIS_URL=redis_url, REDIS_QUEUE=prefix,
                   LABEL_STUDIO_URL=fake_ls.url, LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    workers = [worker(env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        backend.connect(fake_ls, PROJECT)
        wait_workers(redis_url, prefix, 2)
        _annotate_and_notify(fake_ls, backend, rows, list(range(1, 41)))
        wait_for(lambda: _settled(backend) and _audit(store)[-1].get("n_labeled") == 40, 60,
                 "round 1")
        v1 = _audit(store)[-1]["version"]
        assert _audit(store)[-1]["status"] == "ok"

        # Round 2 blocks inside its push (after training wrote its version files).
        before = {p.name for p in (store / str(PROJECT) / "versions").iterdir()}
        fake_ls.fault(match="/api/predictions", method="POST", mode="hold", seconds=60)
        _annotate_and_notify(fake_ls, backend, rows, list(range(41, 81)))
        wait_for(lambda: fake_ls.state(PROJECT)["held"] >= 1, 60, "round 2 to reach the push")
        job = backend.job(PROJECT)
        assert job["state"] == "running"
        horse = int(job["worker"].rsplit(":", 1)[1])
        with open(f"/proc/{horse}/stat") as fh:  # RQ forks the horse into its own session
            parent = int(fh.read().rsplit(")", 1)[1].split()[1])
        victim = next(w for w in workers if w.pid == parent)
        half_written = sorted(p.name for p in (store / str(PROJECT) / "versions").iterdir())
        assert v1 in half_written and len(set(half_written) - before) == 1  # + the unfinished one
        t_kill = time.monotonic()
        victim.kill9()  # the worker (as if its machine died) ...
        os.kill(horse, signal.SIGKILL)  # ... and its work horse in the middle of the round
        fake_ls.release()  # later pushes are not held

        # Until the re-queued round finishes, /predict serves v1 and never the killed version.
        served = set()
        def recovered():
            served.update(_predict_versions(backend, [1, 100, 250]))
            last = _audit(store)[-1]
            return last["version"] != v1 and last["status"] == "ok" and \
                backend.get("/versions", project=PROJECT).json()["current"] == last["version"]
        wait_for(recovered, 60, "the re-queued round to finish", interval=0.05)
        recovery_s = time.monotonic() - t_kill
        last = _audit(store)[-1]
        killed = (set(half_written) - before).pop()
        assert killed not in served and killed != last["version"]
        assert served <= {v1, last["version"]}
        assert last["n_labeled"] == 80
        job = backend.job(PROJECT)
        assert job["requeued"] >= 1 and job["worker"].rsplit(":", 1)[1] != str(horse)
        other = next(w for w in workers if w is not victim)
        assert "requeue" in other.log() or "Job OK" in other.log()
        # The next webhook trains normally on the surviving worker.
        _annotate_and_notify(fake_ls, backend, rows, [81, 82])
        wait_for(lambda: _settled(backend) and _audit(store)[-1]["n_labeled"] == 82, 60,
                 "a normal round after the recovery")
        report("kill9_worker", lock_ttl_s=int(env["AL_LOCK_TTL"]),
               recovery_seconds=round(recovery_s, 2), served_during_recovery=sorted(served))
    finally:
        fake_ls.release()
        for w in workers:
            w.stop()
        backend.proc.stop()


def test_redis_restart(tmp_path, fake_ls, report):
    rows = texts(200)
    fake_ls.add_tasks(PROJECT, [t for t, _ in rows])
    rds = PrivateRedis(tmp_path).start()
    store = tmp_path / "store"
    prefix = "studio-al"
    env = base_env(MODEL_DIR=str(store), REDIS_URL=rds.url, REDIS_QUEUE=prefix,
                   LABEL_STUDIO_URL=fake_ls.url, LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    w = worker(env, tmp_path / "worker.log")
    try:
        backend.connect(fake_ls, PROJECT)
        wait_workers(rds.url, prefix)
        _annotate_and_notify(fake_ls, backend, rows, list(range(1, 31)))
        wait_for(lambda: _settled(backend) and _audit(store)[-1].get("n_labeled") == 30, 60,
                 "round 1")
        v1 = _audit(store)[-1]["version"]
        assert backend.get("/health").json()["degraded"] is False

        t_down = time.monotonic()
        rds.stop()
        wait_for(lambda: backend.get("/health").json()["degraded"], 10, "/health degraded")
        detect_s = time.monotonic() - t_down
        health = backend.get("/health").json()
        assert health["status"] == "UP" and health["redis"] == "down"
        status = backend.get("/status").json()
        assert status["degraded"] is True and status["queue"]["redis"] == "down"
        # Webhooks are still acknowledged (recorded durably, submission deferred) ...
        acks = []
        for t in range(31, 41):
            fake_ls.annotate(PROJECT, [{"task": t, "choice": rows[t - 1][1]}])
            t0 = time.perf_counter()
            r = backend.post("/webhook", {"action": "ANNOTATION_CREATED", "project": PROJECT,
                                          "annotation": {"id": t, "task": t}})
            acks.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and r.json()["status"] == "deferred", r.text
        # ... and predictions are still served from the store.
        assert _predict_versions(backend, [1, 150]) == {v1}

        t_up = time.monotonic()
        rds.start()  # same port, empty (no persistence)
        wait_for(lambda: not backend.get("/health").json()["degraded"], 30, "/health recovered")
        health_s = time.monotonic() - t_up
        wait_for(lambda: _audit(store)[-1]["n_labeled"] == 40 and _settled(backend), 90,
                 "the deferred retrain after the restart")
        retrain_s = time.monotonic() - t_up
        assert _audit(store)[-1]["status"] == "ok"
        assert backend.get("/status").json()["degraded"] is False
        report("redis_restart", detect_degraded_seconds=round(detect_s, 2),
               ack_ms_max_while_down=round(max(acks), 2),
               health_recovered_seconds=round(health_s, 2),
               deferred_retrain_done_seconds=round(retrain_s, 2))
    finally:
        w.stop()
        backend.proc.stop()
        rds.stop()


@pytest.mark.parametrize("mode", ["500", "hang", "close"])
def test_label_studio_faults_during_push(tmp_path, main_redis, fake_ls, report, mode):
    redis_url, prefix = main_redis
    rows = texts(150)
    fake_ls.add_tasks(PROJECT, [t for t, _ in rows])
    store = tmp_path / "store"
    env = base_env(MODEL_DIR=str(store), REDIS_URL=redis_url, REDIS_QUEUE=prefix,
                   LABEL_STUDIO_URL=fake_ls.url, LABEL_STUDIO_API_KEY=fake_ls.token,
                   LABEL_STUDIO_TIMEOUT="1", LABEL_STUDIO_RETRIES="2")
    backend = Backend(env, tmp_path / "web.log")
    w = worker(env, tmp_path / "worker.log")
    try:
        backend.connect(fake_ls, PROJECT)
        wait_workers(redis_url, prefix)
        _annotate_and_notify(fake_ls, backend, rows, list(range(1, 21)))
        wait_for(lambda: _settled(backend) and _audit(store)[-1].get("n_labeled") == 20, 60,
                 "round 1")
        v1 = _audit(store)[-1]["version"]
        n0 = len(_audit(store))

        # The PATCH uses the client timeout (a POST that timed out is never retried), so
        # timeouts are injected there; 500s and dropped connections on the first single create.
        route, method = (f"/api/projects/{PROJECT}", "PATCH") if mode == "hang" else \
            ("/api/predictions", "POST")
        fake_ls.fault(match=route, method=method, mode=mode, times=3, seconds=3)
        _annotate_and_notify(fake_ls, backend, rows, [21, 22])
        wait_for(lambda: _settled(backend) and len(_audit(store)) == n0 + 1, 60, "the faulty round")
        failed = _audit(store)[-1]
        assert failed["status"] == "failed" and failed["error"], failed
        assert {"500": "HTTP 500", "hang": "attempts", "close": "attempts"}[mode] in failed["error"]
        assert "after 3 attempts" in failed["error"]
        attempts = [e["t"] for e in fake_ls.state(PROJECT)["log"]
                    if e["method"] == method and e["path"].rstrip("/") == route]
        attempts = attempts[-3:]
        gaps = [b - a for a, b in zip(attempts, attempts[1:])]
        # backoff 0.5 s then 1.0 s (plus the 1 s timeout per attempt when hanging)
        extra = 1.0 if mode == "hang" else 0.0
        assert gaps[0] >= 0.5 + extra - 0.05 and gaps[1] >= 1.0 + extra - 0.05, gaps
        assert gaps[1] < 1.0 + extra + 2.0, gaps  # bounded
        assert backend.get("/versions", project=PROJECT).json()["current"] == v1
        assert _predict_versions(backend, [5, 100]) == {v1}
        assert backend.job(PROJECT)["state"] == "failed"

        _annotate_and_notify(fake_ls, backend, rows, [23])
        wait_for(lambda: _settled(backend) and len(_audit(store)) == n0 + 2, 60, "the next round")
        ok = _audit(store)[-1]
        assert ok["status"] == "ok" and ok["n_labeled"] == 23
        assert fake_ls.state(PROJECT)["fields"]["model_version"] == ok["version"]
        report(f"label_studio_{mode}", retry_gaps_s=[round(g, 2) for g in gaps],
               failed_round_seconds=failed["timings"]["total"])
    finally:
        fake_ls.release()
        w.stop()
        backend.proc.stop()
