"""Retrain jobs: a coalescing, paced per-project job runner.

Coalescing rule (per project):

* a retrain requested while one is **queued** is absorbed by it (the queued run will read the
  newest annotations anyway);
* a retrain requested while one **runs** sets a dirty flag, and exactly one more run follows
  the current one — a request is never dropped. A round that returns ``"again": True`` (it
  left work: a listing in progress, a connection to re-check) counts as such a request.

Pacing (per project): a round starts no earlier than ``min_interval`` seconds
(``AL_MIN_ROUND_INTERVAL``) after the project's previous round *started*, and no earlier than
``pace_s`` seconds after it *finished*, ``pace_s`` being what that round returned (how long
Label Studio should be left alone).

:class:`ThreadJobRunner` runs rounds on ``workers`` threads of the web process (the embedded
mode): rounds of different projects run at once, never two rounds of one project, and a project
waiting for its pacing time waits in a ready-time heap, holding no thread.
:class:`ProcessRoundExecutor` runs each round in one of ``AL_ROUND_WORKERS`` long-lived spawned
child processes, so training never holds the web process's GIL; a round that outlives
``AL_JOB_TIMEOUT`` is killed with its child, and the children die with the web process (even
after ``kill -9``). The Redis/RQ runner (``backend.rq_jobs``) calls :func:`run_project_round`
in its workers.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import signal
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import Future
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


def pace_of(result: Any) -> float:
    """Seconds the round ``result`` asks to leave Label Studio alone after it (``pace_s``)."""
    if not isinstance(result, dict):
        return 0.0
    try:
        pace = float(result.get("pace_s") or 0)
    except (TypeError, ValueError):
        return 0.0
    return pace if 0.0 < pace < float("inf") else 0.0


# ---------------------------------------------------------------------------------------------
# Training child processes
_CHILD_STORE = None

#: Seconds between the child's checks that its parent (the web process) is still alive.
PARENT_POLL_S = 0.5
#: Seconds a timed-out child gets between SIGTERM and SIGKILL.
KILL_GRACE_S = 2.0


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


def _die_with_parent(parent_pid: int, pdeathsig: bool = True) -> None:
    """Make this process exit when ``parent_pid`` (the web process) is gone, however it died:
    ``PR_SET_PDEATHSIG`` on Linux (SIGKILL as soon as the thread that spawned us exits - the
    executor spawns from one long-lived thread), plus a watchdog thread polling ``getppid``
    (a dead parent re-parents us)."""
    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except Exception:  # noqa: BLE001 - the watchdog below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, name="studio-al-parent-watchdog", daemon=True).start()


def _child_main(conn, settings, body: Callable, parent_pid: int, pdeathsig: bool = True) -> None:
    """A training child: run ``body(settings, project_id, reason)`` for each request received
    on ``conn`` and send back its record, until ``None`` or the end of the pipe."""
    _die_with_parent(parent_pid, pdeathsig)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        project_id, reason = msg
        try:
            result = body(settings, project_id, reason)
        except BaseException as exc:  # noqa: BLE001 - report it; the child keeps serving
            result = {"status": "failed", "reason": reason, "started_at": time.time(),
                      "error": f"{type(exc).__name__}: {exc}"}
        try:
            conn.send(result)
        except (OSError, ValueError):
            return
        except Exception as exc:  # noqa: BLE001 - an unpicklable record
            conn.send({"status": "failed", "reason": reason, "started_at": time.time(),
                       "error": f"round record not transferable: {type(exc).__name__}: {exc}"})


class _Child:
    __slots__ = ("proc", "conn")

    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn

    def stop(self, grace: float = KILL_GRACE_S) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reaped."""
        proc = self.proc
        try:
            if proc.is_alive():
                proc.terminate()
                proc.join(grace)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        except (OSError, ValueError, AssertionError):
            pass
        try:
            self.conn.close()
        except OSError:
            pass


class ProcessRoundExecutor:
    """Runs training rounds in up to ``settings.round_workers`` long-lived child processes
    (``spawn``), one round per child at a time; callable ``(project_id, reason) -> record``
    from several threads at once.

    The embedded mode's job threads hand each round to a child and wait for its audit record.
    So the web process never imports torch (neural classifiers train in the children), and a
    CPU-bound round does not hold the web process's GIL while webhooks are being acknowledged.
    A child keeps its imports and the Label Studio client's task cache between rounds.

    * A round running longer than ``settings.job_timeout`` seconds is stopped: its child gets
      SIGTERM, then SIGKILL after :data:`KILL_GRACE_S`; the round is recorded failed
      (``"round timed out after N s (AL_JOB_TIMEOUT)"``) and a new child serves later rounds.
    * A child that dies in a round: the round is recorded failed, a new child serves the next.
    * Children die with the web process (``PR_SET_PDEATHSIG`` and a watchdog thread), even when
      it is killed with ``kill -9``.

    ``body`` (a module-level function, run in the child) is :func:`_round_in_child`; tests
    substitute their own (and may turn ``pdeathsig`` off to test the watchdog alone).
    """

    def __init__(self, settings, body: Callable | None = None,
                 kill_grace: float = KILL_GRACE_S, pdeathsig: bool = True):
        import multiprocessing.connection  # noqa: F401 - registers its atexit hook before ours
        import multiprocessing.util  # noqa: F401
        self.settings = settings
        self.body = body or _round_in_child
        self.max_children = max(1, int(getattr(settings, "round_workers", 1) or 1))
        self.timeout = float(settings.job_timeout)
        self.kill_grace = kill_grace
        self.pdeathsig = pdeathsig
        self._cond = threading.Condition()
        self._idle: list[_Child] = []
        self._all: set[_Child] = set()
        self._count = 0  # children alive or being started
        self._closed = False
        self._spawn_q: "queue.SimpleQueue[Future | None]" = queue.SimpleQueue()
        self._spawner: threading.Thread | None = None
        self._store = None

    # ------------------------------------------------------------------ children
    def _start_child(self) -> _Child:
        from multiprocessing import get_context
        ctx = get_context("spawn")
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, name="studio-al-round", daemon=True,
                           args=(child_conn, self.settings, self.body, os.getpid(),
                                 self.pdeathsig))
        proc.start()
        child_conn.close()
        log.info("event=training_process_started pid=%s", proc.pid)
        return _Child(proc, parent_conn)

    def _spawn_loop(self) -> None:
        while True:
            fut = self._spawn_q.get()
            if fut is None:
                return
            try:
                fut.set_result(self._start_child())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

    def _spawn(self) -> _Child:
        """Start a child from the one long-lived spawner thread (PR_SET_PDEATHSIG fires when
        the *thread* that started the child exits, so no short-lived thread may start one)."""
        with self._cond:
            if self._spawner is None:
                self._spawner = threading.Thread(target=self._spawn_loop, daemon=True,
                                                 name="studio-al-round-spawner")
                self._spawner.start()
        fut: Future = Future()
        self._spawn_q.put(fut)
        return fut.result()

    def _acquire(self) -> _Child:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("round executor is shut down")
                if self._idle:
                    child = self._idle.pop()
                    if child.proc.is_alive():
                        return child
                    self._forget(child)
                    continue
                if self._count < self.max_children:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            child = self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise
        with self._cond:
            self._all.add(child)
            if self._closed:
                self._forget(child)
                child.stop(0.5)
                raise RuntimeError("round executor is shut down")
        return child

    def _forget(self, child: _Child) -> None:
        """(Under the lock.) ``child`` no longer serves."""
        if child in self._all:
            self._all.discard(child)
            self._count -= 1
            self._cond.notify()

    def _release(self, child: _Child) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append(child)
                self._cond.notify()
                return
            self._forget(child)
        child.stop(0.5)

    def _discard(self, child: _Child) -> None:
        child.stop(self.kill_grace)
        with self._cond:
            self._forget(child)

    # ------------------------------------------------------------------ rounds
    def _failed(self, project_id: int, reason: str, started: float, error: str) -> dict:
        """A round that ended without its record: record it failed in the audit log."""
        record = {"status": "failed", "reason": reason, "started_at": started,
                  "finished_at": time.time(), "error": error,
                  "timings": {"total": round(time.time() - started, 4)}}
        log.error("event=round_failed project=%s error=%r", project_id, error)
        try:
            if self._store is None:
                from backend.store import Store
                self._store = Store(self.settings.model_dir)
            self._store.append_audit(project_id, dict(record))
        except Exception:  # noqa: BLE001 - the runner still reports the failure
            log.exception("event=audit_write_failed project=%s", project_id)
        return record

    def __call__(self, project_id: int, reason: str) -> dict:
        from multiprocessing.connection import wait
        started = time.time()
        try:
            child = self._acquire()
        except Exception as exc:  # noqa: BLE001
            return {"status": "failed", "reason": reason, "started_at": started,
                    "error": f"training process not started: {type(exc).__name__}: {exc}"}
        unreadable = None
        try:
            child.conn.send((int(project_id), reason))
            ready = wait([child.conn, child.proc.sentinel], self.timeout)
            if child.conn in ready:
                result = child.conn.recv()
                self._release(child)
                return result
        except (EOFError, OSError):
            ready = [child.proc.sentinel]
        except Exception as exc:  # noqa: BLE001 - e.g. a record that does not unpickle
            ready, unreadable = [child.proc.sentinel], f"{type(exc).__name__}: {exc}"
        if unreadable is not None:
            self._discard(child)
            return self._failed(project_id, reason, started,
                                f"round record unreadable: {unreadable}")
        if not ready:
            pid = child.proc.pid
            self._discard(child)
            log.error("event=round_timeout project=%s pid=%s timeout_s=%s", project_id, pid,
                      self.settings.job_timeout)
            return self._failed(project_id, reason, started,
                                f"round timed out after {self.settings.job_timeout} s "
                                "(AL_JOB_TIMEOUT)")
        child.proc.join(1)
        code = child.proc.exitcode
        self._discard(child)
        return self._failed(project_id, reason, started,
                            f"training process died (exit code {code})")

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            children = list(self._all)
            self._cond.notify_all()
        for child in idle:
            try:
                child.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 1.0
        for child in idle:
            child.proc.join(max(0.0, deadline - time.monotonic()))
        for child in children:
            child.stop(0.5)
        with self._cond:
            for child in children:
                self._forget(child)
        if self._spawner is not None:
            self._spawn_q.put(None)


# ---------------------------------------------------------------------------------------------
# Runners
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
                 "last_finished", "last_duration", "last_error", "last_result", "ready_at",
                 "start_m", "finish_m", "pace_s")

    def __init__(self):
        self.state = IDLE
        self.dirty = False
        self.reasons: list[str] = []
        self.runs = 0
        self.absorbed = 0
        self.last_started = self.last_finished = self.last_duration = None
        self.last_error: str | None = None
        self.last_result: Any = None
        self.ready_at: float | None = None  # monotonic: earliest start while queued
        self.start_m: float | None = None   # monotonic start of the last round
        self.finish_m: float | None = None  # monotonic end of the last round
        self.pace_s = 0.0                   # what the last round asked for

    def as_dict(self) -> dict:
        next_start = None
        if self.state == QUEUED and self.ready_at is not None:
            next_start = round(time.time() + (self.ready_at - time.monotonic()), 3)
        return {"state": self.state, "rerun_pending": self.dirty, "runs": self.runs,
                "absorbed": self.absorbed, "pending_reasons": list(self.reasons),
                "last_started": self.last_started, "last_finished": self.last_finished,
                "last_duration": self.last_duration, "last_error": self.last_error,
                "next_start_at": next_start}


class ThreadJobRunner(JobRunner):
    """``workers`` background threads running ``job(project_id, reason)`` calls, coalesced and
    paced per project (see the module docstring).

    Up to ``workers`` rounds of *different* projects run at once; a project is never run by two
    threads at once (it is in the ready heap only while ``queued``). ``job`` may raise, or
    return a dict with ``"status": "failed"`` and ``"error"``; either way the project's state
    becomes ``failed`` until the next request succeeds. A dict result may carry ``pace_s``
    (seconds to wait after it before the project's next round) and ``again`` (run once more).
    """

    def __init__(self, job: Callable[[int, str], Any], workers: int = 2,
                 min_interval: float = 0.0):
        self.job = job
        self.min_interval = max(0.0, float(min_interval))
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, int]] = []  # (ready_at monotonic, seq, project)
        self._seq = itertools.count()
        self._jobs: dict[int, _ProjectJob] = {}
        self._stopping = False
        self._threads = [threading.Thread(target=self._loop, name=f"studio-al-jobs-{i}",
                                          daemon=True) for i in range(max(1, int(workers)))]
        for t in self._threads:
            t.start()

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
                self._enqueue(project_id, job)
            return job.state

    def _enqueue(self, project_id: int, job: _ProjectJob) -> None:
        """(Under the lock.) Queue ``job`` at its pacing time."""
        now = time.monotonic()
        ready = now
        if job.start_m is not None:
            ready = max(ready, job.start_m + self.min_interval)
        if job.finish_m is not None:
            ready = max(ready, job.finish_m + job.pace_s)
        job.state, job.ready_at = QUEUED, ready
        heapq.heappush(self._heap, (ready, next(self._seq), project_id))
        self._cond.notify()

    def status(self, project_id: int) -> dict:
        with self._cond:
            job = self._jobs.get(int(project_id))
            return _ProjectJob().as_dict() if job is None else job.as_dict()

    def idle(self) -> bool:
        """True when nothing is queued or running (for tests and graceful shutdown)."""
        with self._cond:
            return not self._heap and all(j.state in (IDLE, FAILED) for j in self._jobs.values())

    def shutdown(self, timeout: float | None = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _next(self) -> tuple[int, _ProjectJob] | None:
        """(Under the lock.) Wait for the first project whose pacing time has come; None when
        stopping. Waits are timed to the heap's first ready time: no polling."""
        while not self._stopping:
            if not self._heap:
                self._cond.wait()
                continue
            delay = self._heap[0][0] - time.monotonic()
            if delay > 0:
                self._cond.wait(delay)
                continue
            _, _, project_id = heapq.heappop(self._heap)
            if self._heap and self._heap[0][0] <= time.monotonic():
                self._cond.notify()  # more ready work: wake another thread
            return project_id, self._jobs[project_id]
        return None

    def _loop(self) -> None:
        while True:
            with self._cond:
                nxt = self._next()
                if nxt is None:
                    return
                project_id, job = nxt
                job.state, job.dirty, job.ready_at = RUNNING, False, None
                reasons, job.reasons = job.reasons, []
                job.last_started, job.start_m = time.time(), time.monotonic()
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
                job.last_finished, job.finish_m = time.time(), time.monotonic()
                job.last_duration = round(job.last_finished - job.last_started, 4)
                job.last_error, job.last_result = error, result
                job.pace_s = pace_of(result)
                again = isinstance(result, dict) and bool(result.get("again"))
                if (job.dirty or again) and not self._stopping:
                    job.dirty = False
                    if not job.reasons:
                        job.reasons = ["again"]
                    self._enqueue(project_id, job)
                else:
                    job.state = FAILED if error else IDLE
