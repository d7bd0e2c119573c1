"""Retrain jobs: a coalescing per-project job runner.

Coalescing rule (per project):

* a retrain requested while one is **queued** is absorbed by it (the queued run will read the
  newest annotations anyway);
* a retrain requested while one **runs** sets a dirty flag, and exactly one more run follows
  the current one — a request is never dropped.

:class:`ThreadJobRunner` schedules jobs from one background thread of the web process (the
embedded mode); :class:`ProcessRoundExecutor` runs each round in a long-lived spawned child
process, so training never holds the web process's GIL. The Redis/RQ runner (``backend.rq_jobs``)
calls :func:`backend.training.run_round` in its workers.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
import traceback
from abc import ABC, abstractmethod
from typing import Any, Callable

log = logging.getLogger("studio_al.jobs")

IDLE, QUEUED, RUNNING, FAILED = "idle", "queued", "running", "failed"


def label_studio_client_factory(settings) -> Callable[[str, str], Any]:
    """``(url, api_key) -> LabelStudioClient`` with the timeout and retries of ``settings``."""
    def factory(url: str, api_key: str):
        from backend.labelstudio import LabelStudioClient
        return LabelStudioClient(url, api_key, timeout=settings.label_studio_timeout,
                                 retries=settings.label_studio_retries)
    return factory


def run_project_round(project_id: int, reason: str, settings, store,
                      client_factory: Callable[[str, str], Any]) -> dict:
    """One round of ``project_id`` with the trusted Label Studio's client
    (:func:`backend.rounds.run_project_round`); never raises."""
    from backend import rounds
    return rounds.run_project_round(project_id, reason, settings, store, client_factory)


_CHILD_STORE = None


def _round_in_child(settings, project_id: int, reason: str) -> dict:
    """Body of :class:`ProcessRoundExecutor`'s rounds (runs in the child process)."""
    global _CHILD_STORE
    from backend.store import Store
    if _CHILD_STORE is None:
        from backend.logs import configure_logging
        configure_logging(settings.log_level)
        _CHILD_STORE = Store(settings.model_dir)
    record = run_project_round(project_id, reason, settings, _CHILD_STORE,
                               label_studio_client_factory(settings))
    return {**record, "worker_pid": os.getpid()}


class ProcessRoundExecutor:
    """Runs training rounds in ONE long-lived child process (``spawn``).

    The embedded mode's job thread hands each round to this child and waits for its audit
    record. So the web process never imports torch (neural classifiers train in the child),
    and a CPU-bound round does not hold the web process's GIL while webhooks are being
    acknowledged. The child keeps its imports and the Label Studio client's task cache between
    rounds; if it dies, the round is recorded as failed and a new child serves the next one.
    """

    def __init__(self, settings):
        self.settings = settings
        self._pool = None
        self._lock = threading.Lock()

    def _executor(self):
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
            return self._pool

    def __call__(self, project_id: int, reason: str) -> dict:
        from concurrent.futures.process import BrokenProcessPool
        try:
            return self._executor().submit(_round_in_child, self.settings, project_id,
                                           reason).result()
        except BrokenProcessPool as exc:
            with self._lock:
                self._pool = None
            return {"status": "failed", "reason": reason, "started_at": time.time(),
                    "error": f"training process died: {exc}"}

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class JobRunner(ABC):
    """Interface of the retrain job runners."""

    @abstractmethod
    def submit(self, project_id: int, reason: str) -> str:
        """Request a retrain; return the project's job state after the request
        (``queued`` or ``running``)."""

    @abstractmethod
    def status(self, project_id: int) -> dict:
        """``{"state": idle|queued|running|failed, ...}`` for one project."""

    @abstractmethod
    def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting work and stop the workers."""


class _ProjectJob:
    __slots__ = ("state", "dirty", "reasons", "runs", "absorbed", "last_started",
                 "last_finished", "last_duration", "last_error", "last_result")

    def __init__(self):
        self.state = IDLE
        self.dirty = False
        self.reasons: list[str] = []
        self.runs = 0
        self.absorbed = 0
        self.last_started = self.last_finished = self.last_duration = None
        self.last_error: str | None = None
        self.last_result: Any = None

    def as_dict(self) -> dict:
        return {"state": self.state, "rerun_pending": self.dirty, "runs": self.runs,
                "absorbed": self.absorbed, "pending_reasons": list(self.reasons),
                "last_started": self.last_started, "last_finished": self.last_finished,
                "last_duration": self.last_duration, "last_error": self.last_error}


class ThreadJobRunner(JobRunner):
    """One background thread running ``job(project_id, reason)`` calls, coalesced per project.

    ``job`` may raise, or return a dict with ``"status": "failed"`` and ``"error"``; either
    way the project's state becomes ``failed`` until the next request succeeds.
    """

    def __init__(self, job: Callable[[int, str], Any]):
        self.job = job
        self._cond = threading.Condition()
        self._queue: collections.deque[int] = collections.deque()
        self._jobs: dict[int, _ProjectJob] = {}
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="studio-al-jobs", daemon=True)
        self._thread.start()

    def submit(self, project_id: int, reason: str) -> str:
        project_id = int(project_id)
        with self._cond:
            if self._stopping:
                raise RuntimeError("job runner is shut down")
            job = self._jobs.setdefault(project_id, _ProjectJob())
            job.reasons = list(dict.fromkeys(job.reasons + [reason]))[-20:]
            if job.state == QUEUED:
                job.absorbed += 1
            elif job.state == RUNNING:
                if job.dirty:
                    job.absorbed += 1
                job.dirty = True
            else:
                job.state = QUEUED
                self._queue.append(project_id)
                self._cond.notify()
            return job.state

    def status(self, project_id: int) -> dict:
        with self._cond:
            job = self._jobs.get(int(project_id))
            return _ProjectJob().as_dict() if job is None else job.as_dict()

    def idle(self) -> bool:
        """True when nothing is queued or running (for tests and graceful shutdown)."""
        with self._cond:
            return not self._queue and all(j.state in (IDLE, FAILED) for j in self._jobs.values())

    def shutdown(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                project_id = self._queue.popleft()
                job = self._jobs[project_id]
                job.state, job.dirty = RUNNING, False
                reasons, job.reasons = job.reasons, []
                job.last_started = time.time()
            error, result = None, None
            try:
                result = self.job(project_id, ",".join(dict.fromkeys(reasons)) or "retrain")
                if isinstance(result, dict) and result.get("status") == "failed":
                    error = str(result.get("error") or "failed")
            except Exception as exc:  # noqa: BLE001 - a failing job must not kill the thread
                error = f"{type(exc).__name__}: {exc}"
                log.error("event=job_crashed project=%s error=%r\n%s", project_id, error,
                          traceback.format_exc())
            with self._cond:
                job.runs += 1
                job.last_finished = time.time()
                job.last_duration = round(job.last_finished - job.last_started, 4)
                job.last_error, job.last_result = error, result
                if job.dirty and not self._stopping:
                    job.dirty = False
                    job.state = QUEUED
                    self._queue.append(project_id)
                else:
                    job.state = FAILED if error else IDLE
