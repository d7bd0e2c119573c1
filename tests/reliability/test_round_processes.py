"""The embedded mode's training children with a real ``studio-al serve`` (gunicorn):

* a round against a Label Studio that trickles its answer forever (no per-read timeout ever
  fires) is killed after ``AL_JOB_TIMEOUT`` and recorded failed, while another project's rounds
  run and finish meanwhile (``AL_ROUND_WORKERS=2``);
* ``kill -9`` of the gunicorn worker (not the arbiter) while a round runs in its training
  child: the child is gone within seconds, it does not linger as an orphan.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.reliability.harness import Backend, TrickleProxy, base_env, texts, wait_for

pytestmark = pytest.mark.slow
SLOW, FAST = 11, 12
TIMEOUT_S = 10


def _audit(store, project):
    path = store / str(project) / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return _stat(pid)[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def children(pid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if int(_stat(int(p))[1]) == pid and not gone(int(p)):
                    out.append(int(p))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return out


def training_children(worker: int) -> list[int]:
    """The worker's spawned round processes (not multiprocessing's resource tracker)."""
    out = []
    for c in children(worker):
        try:
            with open(f"/proc/{c}/cmdline", "rb") as fh:
                if b"spawn_main" in fh.read():
                    out.append(c)
        except FileNotFoundError:
            pass
    return out


def gunicorn_worker(backend: Backend) -> int:
    workers = children(backend.proc.pid)  # `studio-al serve` execs the gunicorn arbiter
    assert len(workers) == 1, workers
    return workers[0]


def test_round_timeout_while_another_project_trains(tmp_path, fake_ls, report):
    rows = texts(60)
    fake_ls.add_tasks(FAST, [t for t, _ in rows])
    proxy = TrickleProxy(fake_ls.url)  # the Label Studio the backend sees
    proxy.pattern = rf"([?&]project={SLOW}(&|$)|/api/projects/{SLOW}(/|\?|$))"
    store = tmp_path / "store"
    env = base_env(MODEL_DIR=str(store), LABEL_STUDIO_URL=proxy.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token, AL_JOB_TIMEOUT=str(TIMEOUT_S),
                   AL_ROUND_WORKERS="2", AL_MIN_ROUND_INTERVAL="0")
    backend = Backend(env, tmp_path / "web.log")
    try:
        backend.connect(fake_ls, FAST)  # a healthy project, connected through the proxy
        wait_for(lambda: backend.job(FAST)["state"] == "idle", 60, "the healthy project idle")
        worker = gunicorn_worker(backend)
        backend.setup(SLOW)  # its first round asks Label Studio about project SLOW: trickled
        wait_for(lambda: proxy.trickling >= 1, 60, "the round of the slow project to hang")
        t_hang = time.time()
        assert backend.job(SLOW)["state"] == "running"

        # Meanwhile the other project trains (in the other training child).
        ids = fake_ls.annotate(FAST, [{"task": t, "choice": rows[t - 1][1]} for t in range(1, 21)])
        r = backend.post("/webhook", {"action": "ANNOTATIONS_CREATED", "project": FAST,
                                      "annotations": [{"id": a, "task": t}
                                                      for a, t in zip(ids, range(1, 21))]})
        assert r.status_code == 200, r.text
        ok = wait_for(lambda: next((a for a in _audit(store, FAST) if a["status"] == "ok"
                                    and a.get("n_labeled") == 20), None), 30,
                      "a round of the healthy project")
        kids = set(training_children(worker))
        assert len(kids) == 2  # two rounds at once: two children
        assert not _audit(store, SLOW), "the slow round ended before the other one trained"
        assert ok["finished_at"] < t_hang + TIMEOUT_S

        # The slow round is stopped at AL_JOB_TIMEOUT and recorded failed.
        failed = wait_for(lambda: _audit(store, SLOW) and _audit(store, SLOW)[-1], 20,
                          "the timed-out round to be recorded")
        detected = time.time() - t_hang
        assert failed["status"] == "failed", failed
        assert failed["error"] == f"round timed out after {TIMEOUT_S} s (AL_JOB_TIMEOUT)"
        assert TIMEOUT_S - 1 <= detected <= 2 * TIMEOUT_S, detected
        # the child of the timed-out round was killed, the other one still serves
        wait_for(lambda: len(set(training_children(worker)) & kids) == 1, 10,
                 "the timed-out child to be gone")
        wait_for(lambda: proxy.trickling == 0, 10, "the trickled answer to lose its reader")
        job = backend.job(SLOW)
        assert job["last_error"] == failed["error"]

        # The backend keeps training: the next round of the healthy project is served.
        n_ok = sum(a["status"] == "ok" for a in _audit(store, FAST))
        ids = fake_ls.annotate(FAST, [{"task": 21, "choice": rows[20][1]}])
        backend.post("/webhook", {"action": "ANNOTATION_CREATED", "project": FAST,
                                  "annotation": {"id": ids[0], "task": 21}})
        wait_for(lambda: sum(a["status"] == "ok" for a in _audit(store, FAST)) > n_ok, 30,
                 "a round after the timeout")
        assert _audit(store, FAST)[-1]["n_labeled"] == 21
        report("round_timeout", job_timeout_s=TIMEOUT_S, failed_after_s=round(detected, 2),
               other_project_round_done_after_s=round(ok["finished_at"] - t_hang, 2))
    finally:
        proxy.stop()
        backend.proc.stop()


def test_kill9_of_the_gunicorn_worker_takes_its_training_child(tmp_path, fake_ls, report):
    fake_ls.add_tasks(SLOW, [t for t, _ in texts(20)])
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    try:
        fake_ls.fault(match="/api/ml", method="GET", mode="hold", seconds=60)
        backend.setup(SLOW)  # a round starts in the training child and blocks on Label Studio
        wait_for(lambda: fake_ls.state(SLOW)["held"] >= 1, 60, "the round to be running")
        worker = gunicorn_worker(backend)
        kids = training_children(worker)
        assert len(kids) == 1 and backend.job(SLOW)["state"] == "running"
        t0 = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: all(gone(k) for k in kids), 5, "the training child to exit",
                 interval=0.01)
        took = time.monotonic() - t0
        assert backend.proc.proc.poll() is None  # the arbiter lives and starts a new worker
        wait_for(lambda: backend.get("/health").ok, 60, "the new gunicorn worker")
        report("kill9_web_worker", child_gone_after_s=round(took, 3))
    finally:
        fake_ls.release()
        backend.proc.stop()
