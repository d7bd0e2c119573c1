"""ThreadJobRunner coalescing: absorbed while queued, exactly one rerun while running."""
import threading
import time

import pytest

from backend.jobs import ThreadJobRunner


def wait_for(cond, timeout=10.0):
    """Poll ``cond`` with a bound (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
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
    job = GatedJob()
    runner = ThreadJobRunner(job)
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
    assert runner.status(99)["state"] == "idle"
    runner.shutdown(5)
    with pytest.raises(RuntimeError):
        runner.submit(1, "x")


def test_process_round_executor_runs_rounds_in_a_child_process(tmp_path):
    """Embedded production mode: rounds run in one spawned child (the web process stays free of
    torch and of the round's GIL use); the child's audit record comes back to the job thread."""
    import os
    from backend.jobs import ProcessRoundExecutor
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
