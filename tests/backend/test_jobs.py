"""ThreadJobRunner: coalescing (absorbed while queued, exactly one rerun while running),
concurrency across projects (never within one), pacing (min_interval between starts, the
round's pace_s after its end) without a paced project holding a thread.
ProcessRoundExecutor: rounds in spawned children, several at once, a per-round timeout that
kills the child, a dead child replaced, children dying with their parent."""
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend.jobs import ProcessRoundExecutor, ThreadJobRunner

ROOT = Path(__file__).resolve().parents[2]


def wait_for(cond, timeout=10.0):
    """Poll ``cond`` with a bound (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.002)
    raise AssertionError("condition not reached within the bound")


class GatedJob:
    """A job that blocks until released, counting runs per project."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.runs: list[tuple[int, str]] = []
        self.fail = False

    def __call__(self, project_id, reason):
        self.runs.append((project_id, reason))
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise RuntimeError("boom")
        return {"status": "ok"}


@pytest.fixture
def gated():
    """One worker thread: the coalescing rules in isolation."""
    job = GatedJob()
    runner = ThreadJobRunner(job, workers=1)
    yield job, runner
    job.release.set()
    runner.shutdown(5)


def test_storm_while_queued_runs_once(gated):
    job, runner = gated
    # Block the worker with project 1, then queue project 2 many times.
    runner.submit(1, "first")
    assert job.started.wait(5)
    states = [runner.submit(2, f"a{i}") for i in range(50)]
    assert set(states) == {"queued"}
    assert runner.status(2)["absorbed"] == 49
    job.release.set()
    wait_for(runner.idle)
    assert [p for p, _ in job.runs] == [1, 2]
    assert runner.status(2)["runs"] == 1 and runner.status(2)["state"] == "idle"


def test_submit_while_running_runs_exactly_once_more(gated):
    job, runner = gated
    assert runner.submit(1, "r1") == "queued"
    assert job.started.wait(5)
    assert runner.status(1)["state"] == "running"
    for i in range(10):
        assert runner.submit(1, f"during{i}") == "running"
    assert runner.status(1)["rerun_pending"] is True
    job.release.set()
    wait_for(runner.idle)
    assert [p for p, _ in job.runs] == [1, 1]
    assert job.runs[1][1] == ",".join(f"during{i}" for i in range(10))
    assert runner.status(1)["runs"] == 2


def test_failure_sets_failed_and_next_submit_retries(gated):
    job, runner = gated
    job.fail = True
    job.release.set()
    runner.submit(5, "x")
    wait_for(lambda: runner.status(5)["state"] == "failed")
    assert "boom" in runner.status(5)["last_error"]
    job.fail = False
    assert runner.submit(5, "retry") == "queued"
    wait_for(lambda: runner.status(5)["state"] == "idle")
    assert runner.status(5)["runs"] == 2 and runner.status(5)["last_error"] is None


def test_failed_record_counts_as_failure():
    runner = ThreadJobRunner(lambda p, r: {"status": "failed", "error": "LS down"})
    try:
        runner.submit(1, "x")
        wait_for(lambda: runner.status(1)["state"] == "failed")
        assert runner.status(1)["last_error"] == "LS down"
    finally:
        runner.shutdown(5)


def test_unknown_project_is_idle_and_shutdown_refuses():
    runner = ThreadJobRunner(lambda p, r: None)
    assert runner.status(99)["state"] == "idle" and runner.status(99)["next_start_at"] is None
    runner.shutdown(5)
    with pytest.raises(RuntimeError):
        runner.submit(1, "x")


# --------------------------------------------------------------------------- concurrency
class Meeting:
    """A job whose rounds of two different projects must be inside ``job`` at the same time
    (a barrier of 2), recording the most rounds of one project ever running at once."""

    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=5)
        self.lock = threading.Lock()
        self.running: dict[int, int] = {}
        self.max_same_project = 0
        self.runs: list[int] = []

    def __call__(self, project_id, reason):
        with self.lock:
            self.running[project_id] = self.running.get(project_id, 0) + 1
            self.max_same_project = max(self.max_same_project, self.running[project_id])
            self.runs.append(project_id)
        try:
            if reason.startswith("meet"):
                self.barrier.wait()  # BrokenBarrierError unless the other project runs too
            return {"status": "ok"}
        finally:
            with self.lock:
                self.running[project_id] -= 1


def test_two_projects_run_concurrently_with_two_workers():
    job = Meeting()
    runner = ThreadJobRunner(job, workers=2)
    try:
        assert runner.submit(1, "meet") == "queued"
        assert runner.submit(2, "meet") in ("queued", "running")
        wait_for(lambda: runner.status(1)["runs"] == 1 and runner.status(2)["runs"] == 1)
        assert runner.status(1)["state"] == runner.status(2)["state"] == "idle", \
            (runner.status(1), runner.status(2))  # the barrier met: both ran at once
        # Many requests for one project while two workers are free: never two rounds of it.
        for _ in range(200):
            runner.submit(3, "solo")
        wait_for(runner.idle)
        assert job.max_same_project == 1 and job.runs.count(3) <= 2
    finally:
        runner.shutdown(5)


def test_one_worker_cannot_run_two_projects_at_once():
    """The control of the test above: with one worker the two rounds never meet."""
    job = Meeting()
    job.barrier = threading.Barrier(2, timeout=0.3)
    runner = ThreadJobRunner(job, workers=1)
    try:
        runner.submit(1, "meet")
        runner.submit(2, "meet")
        wait_for(lambda: runner.status(2)["runs"] == 1)
        assert runner.status(1)["state"] == "failed" and "BrokenBarrier" in \
            runner.status(1)["last_error"]
    finally:
        runner.shutdown(5)


# --------------------------------------------------------------------------- pacing
class Clock:
    """A fast job recording each round's start and end (monotonic), returning ``result``."""

    def __init__(self, result=None):
        self.result = result or {"status": "ok"}
        self.starts: dict[int, list[float]] = {}
        self.ends: dict[int, list[float]] = {}

    def __call__(self, project_id, reason):
        self.starts.setdefault(project_id, []).append(time.monotonic())
        result = self.result(project_id) if callable(self.result) else self.result
        self.ends.setdefault(project_id, []).append(time.monotonic())
        return result


def test_min_interval_between_round_starts():
    job = Clock()
    runner = ThreadJobRunner(job, workers=2, min_interval=0.4)
    try:
        runner.submit(1, "a")
        wait_for(lambda: runner.status(1)["runs"] == 1 and runner.idle())
        t_submit = time.time()
        assert runner.submit(1, "b") == "queued"
        st = runner.status(1)
        # the next start is announced: 0.4 s after the first start, in the future
        assert st["state"] == "queued" and st["next_start_at"] > t_submit
        for i in range(20):  # absorbed while it waits for its time
            assert runner.submit(1, f"c{i}") == "queued"
        wait_for(lambda: runner.status(1)["runs"] == 2 and runner.idle())
        s = job.starts[1]
        assert len(s) == 2 and s[1] - s[0] >= 0.4 - 1e-3, s
        assert s[1] - s[0] < 2.0  # and not much later
        assert runner.status(1)["absorbed"] == 20
    finally:
        runner.shutdown(5)


def test_pace_s_from_the_round_delays_the_next_one():
    job = Clock({"status": "ok", "pace_s": 0.5})
    runner = ThreadJobRunner(job, workers=2, min_interval=0.0)
    try:
        runner.submit(1, "a")
        wait_for(lambda: runner.status(1)["runs"] == 1 and runner.idle())
        runner.submit(1, "b")
        wait_for(lambda: runner.status(1)["runs"] == 2 and runner.idle())
        assert job.starts[1][1] - job.ends[1][0] >= 0.5 - 1e-3
        # a failed record without pace_s does not delay; "pace_s": null neither
        job.result = {"status": "failed", "error": "x", "pace_s": None}
        runner.submit(1, "c")
        wait_for(lambda: runner.status(1)["runs"] == 3 and runner.status(1)["state"] not in ("queued", "running"))
        runner.submit(1, "d")  # paced by round 3 (pace_s: none), so at once
        wait_for(lambda: runner.status(1)["runs"] == 4)
        assert job.starts[1][3] - job.ends[1][2] < 0.3
    finally:
        runner.shutdown(5)


def test_a_paced_project_does_not_hold_up_another_even_with_one_worker():
    job = Clock(lambda p: {"status": "ok", "pace_s": 30.0 if p == 1 else 0.0})
    runner = ThreadJobRunner(job, workers=1, min_interval=0.0)
    try:
        runner.submit(1, "a")
        wait_for(lambda: runner.status(1)["runs"] == 1 and runner.idle())
        assert runner.submit(1, "b") == "queued"  # waits 30 s for its pacing
        t0 = time.monotonic()
        runner.submit(2, "x")
        wait_for(lambda: runner.status(2)["runs"] == 1, timeout=5)
        assert time.monotonic() - t0 < 1.0  # the only worker was free for project 2
        assert runner.status(1)["state"] == "queued" and len(job.starts[1]) == 1
        assert runner.status(1)["next_start_at"] - time.time() > 25
        t_stop = time.monotonic()
        runner.shutdown(5)  # a paced project does not delay the shutdown either
        assert time.monotonic() - t_stop < 2.0
    finally:
        runner.shutdown(5)


def test_again_runs_once_more_after_its_pace():
    calls = []

    def job(project_id, reason):
        calls.append((time.monotonic(), reason))
        return {"status": "ok", "again": len(calls) == 1, "pace_s": 0.3}
    runner = ThreadJobRunner(job, workers=2)
    try:
        runner.submit(1, "setup")
        wait_for(lambda: runner.status(1)["runs"] == 2 and runner.idle())
        assert [r for _, r in calls] == ["setup", "again"]
        assert calls[1][0] - calls[0][0] >= 0.3 - 1e-3
    finally:
        runner.shutdown(5)


# --------------------------------------------------------------------------- child processes
def child_body(settings, project_id, reason):
    """Round bodies for ProcessRoundExecutor tests (run in the spawned child)."""
    t0 = time.time()
    if reason == "sleep":
        time.sleep(3600)
    if reason == "stubborn":  # ignores SIGTERM: only the SIGKILL stops it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(3600)
    if reason.startswith("pidfile:"):
        Path(reason[8:] + ".tmp").write_text(str(os.getpid()))
        os.replace(reason[8:] + ".tmp", reason[8:])
        time.sleep(3600)
    if reason == "die":
        os._exit(3)
    if reason == "nap":
        time.sleep(1.0)
    return {"status": "ok", "worker_pid": os.getpid(), "t0": t0, "t1": time.time(),
            "pace_s": 0.25}


def _settings(tmp_path, **over):
    from backend.settings import Settings
    s = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING"},
                          validate_components=False)
    return dataclasses.replace(s, **over)


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_process_round_executor_runs_rounds_in_a_child_process(tmp_path):
    """Embedded production mode: rounds run in a spawned child (the web process stays free of
    torch and of the round's GIL use); the child's audit record comes back to the job thread."""
    from backend.settings import Settings
    from backend.store import Store
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "LABEL_STUDIO_URL": "http://127.0.0.1:9",  # nothing listens
                                  "LABEL_STUDIO_API_KEY": "k", "LABEL_STUDIO_RETRIES": "0",
                                  "LABEL_STUDIO_TIMEOUT": "2"}, validate_components=False)
    Store(settings.model_dir).save_project(1, {"label_config": "<View/>"})
    executor = ProcessRoundExecutor(settings)
    try:
        first = executor(1, "test")
        second = executor(1, "test")
    finally:
        executor.shutdown()
    # the round ran (and failed: no Label Studio), was audited by the child, and the same
    # child served both rounds
    assert first["status"] == second["status"] == "failed"
    audit = Store(settings.model_dir).audit(1)
    assert len(audit) == 2 and all(r["status"] == "failed" for r in audit)
    assert first["worker_pid"] == second["worker_pid"] != os.getpid()


def test_executor_runs_two_rounds_at_once_in_two_children(tmp_path):
    executor = ProcessRoundExecutor(_settings(tmp_path, round_workers=2), body=child_body)
    try:
        executor(1, "warm")  # one child warm; the second starts on demand
        out = {}
        threads = [threading.Thread(target=lambda p=p: out.__setitem__(p, executor(p, "nap")))
                   for p in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        a, b = out[1], out[2]
        assert a["worker_pid"] != b["worker_pid"]
        assert a["t0"] < b["t1"] and b["t0"] < a["t1"], (a, b)  # the rounds overlapped
        assert a["pace_s"] == 0.25  # the record comes back whole
    finally:
        executor.shutdown()


def test_executor_timeout_kills_the_child_and_a_fresh_child_serves_next(tmp_path):
    from backend.store import Store
    executor = ProcessRoundExecutor(_settings(tmp_path, job_timeout=1, round_workers=1),
                                    body=child_body, kill_grace=0.5)
    try:
        before = executor(7, "warm")["worker_pid"]
        t0 = time.monotonic()
        rec = executor(7, "stubborn")
        elapsed = time.monotonic() - t0
        assert rec["status"] == "failed" and rec["reason"] == "stubborn"
        assert rec["error"] == "round timed out after 1 s (AL_JOB_TIMEOUT)"
        assert 1.0 <= elapsed < 4.0, elapsed  # 1 s + the 0.5 s SIGTERM grace + the SIGKILL
        assert gone(before)
        audit = Store(str(tmp_path / "store")).audit(7)
        assert audit[-1]["status"] == "failed" and "timed out" in audit[-1]["error"]
        after = executor(7, "ok")
        assert after["status"] == "ok" and after["worker_pid"] != before
    finally:
        executor.shutdown()


def test_executor_replaces_a_child_that_died(tmp_path):
    executor = ProcessRoundExecutor(_settings(tmp_path, round_workers=1), body=child_body)
    try:
        rec = executor(3, "die")
        assert rec["status"] == "failed" and "exit code 3" in rec["error"]
        assert executor(3, "ok")["status"] == "ok"
    finally:
        executor.shutdown()


PARENT = """
import sys, threading
sys.path.insert(0, {root!r})
from backend.jobs import ProcessRoundExecutor
from tests.backend.test_jobs import _settings, child_body
from pathlib import Path
ex = ProcessRoundExecutor(_settings(Path({tmp!r})), body=child_body, pdeathsig={pdeathsig})
# the child is started for a thread that then exits: PDEATHSIG must not fire then
out = []
t = threading.Thread(target=lambda: out.append(ex(1, "warm")))
t.start()
t.join()
threading.Thread(target=lambda: ex(1, "pidfile:" + {pidfile!r}), daemon=True).start()
print("READY", out[0]["worker_pid"], flush=True)
sys.stdin.read()
"""


@pytest.mark.parametrize("pdeathsig", [True, False], ids=["pdeathsig", "watchdog-only"])
def test_children_die_with_their_parent_after_kill_9(tmp_path, pdeathsig):
    pidfile = str(tmp_path / "child.pid")
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(
        root=str(ROOT), tmp=str(tmp_path), pidfile=pidfile, pdeathsig=pdeathsig)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready, warm = parent.stdout.readline().split()
        assert ready == "READY"
        child = int(wait_for(lambda: os.path.exists(pidfile) and Path(pidfile).read_text(),
                             timeout=60))
        assert child == int(warm)  # the child outlived the thread it was started for
        assert not gone(child)
        with open(f"/proc/{child}/stat") as fh:
            assert int(fh.read().rsplit(")", 1)[1].split()[1]) == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        t0 = time.monotonic()
        wait_for(lambda: gone(child), timeout=5)
        # PR_SET_PDEATHSIG: at once; the watchdog thread alone: within its 0.5 s poll
        assert time.monotonic() - t0 < (0.5 if pdeathsig else 2.0)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
