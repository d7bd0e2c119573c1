"""Scale-out: retrain jobs on Redis + RQ (``REDIS_URL`` set).

The web process enqueues, ``studio-al worker`` processes (any number, any machine that sees
``MODEL_DIR``) train and push. Everything below lives under the prefix ``P = REDIS_QUEUE``::

    P:project:<id>   hash: state (queued|running|idle|failed), job_id, dirty, absorbed, runs,
                     requeued, attempts, queued_at, started_at, finished_at, last_duration,
                     avg_duration, last_error, last_status, worker, reason, not_before,
                     delayed
    P:lock:<id>      the per-project writer lock (redis-py Lock with a TTL of AL_LOCK_TTL
                     seconds, renewed every TTL/3 by the running job: it is also its heartbeat)
    P:seq            counter for RQ job ids ``P-<id>-<n>`` (a new id per enqueue)
    P:projects       set of the project ids ever submitted
    rq:queue:P ...   the RQ queue and registries

Coalescing (atomic Lua transitions, so any number of web processes may submit):

* a retrain requested while one is **queued** is absorbed by it;
* one requested while one **runs** increments ``dirty``; when the run ends with ``dirty > 0``
  exactly one more job is enqueued (never dropped, never more than one).

RQ itself would not do this (verified traps, design.md §6): the same ``job_id`` enqueued twice
runs twice, and ``unique=True`` refuses while a *finished* job of that id is kept. A round that
returns ``"again": True`` counts as one such request.

Pacing: a project's round starts no earlier than ``AL_MIN_ROUND_INTERVAL`` after its previous
round started, and no earlier than the ``pace_s`` its previous round returned after that round
ended: the running job stores this earliest start in ``not_before``. A job requested before
then is recorded ``queued`` with ``delayed=1`` but not given to RQ yet; :func:`sweep` (the web
processes' monitor, and a thread of every ``studio-al worker``) enqueues it once it is due.

Recovery: a watchdog (in every web process, and once at worker start) re-enqueues a project
whose job is ``running`` but whose lock has expired (the worker was killed: ``kill -9``, OOM,
lost machine) or whose RQ job ended as failed/stopped, and a ``queued`` project whose RQ job
vanished (Redis restarted without persistence, or the enqueue itself failed). After three
consecutive losses the project is marked ``failed`` (a poison job); the next webhook retries.
Webhooks never wait for Redis: :meth:`RQJobRunner.submit` hands the request to a submitter
thread (coalesced per project) and answers from what is known. While Redis is unreachable or
hangs, webhooks are still acknowledged at once (the event is already fsync'd to
``events.jsonl``), the submission is deferred, ``/health`` and ``/status`` say ``degraded``,
and deferred projects are submitted as soon as Redis answers again.
"""
from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import time
from typing import Any, Callable

from backend.jobs import IDLE, QUEUED, RUNNING, JobRunner, pace_of, run_project_round

try:
    import redis
    from redis.exceptions import RedisError
    from rq import Queue
except ImportError as exc:  # pragma: no cover - exercised only without the [redis] extra
    raise ImportError("REDIS_URL is set but rq/redis are not installed: "
                      "pip install 'studio-al[redis]'") from exc

log = logging.getLogger("studio_al.rq")

#: RQ job function path (workers import it by name).
JOB_FUNC = "backend.rq_jobs.retrain"
MAX_LOSSES = 3
RESULT_TTL = 3600
FAILURE_TTL = 7 * 24 * 3600

# KEYS: project hash, seq, projects set. ARGV: now, reason, project id, prefix, n (requests
# coalesced into this call by the submitter: n - 1 of them count as absorbed). Returns {action, job id, due}: queued | running (absorbed / rerun pending), enqueue (a new job:
# give it to RQ now) or delayed (a new job due at ``due``: sweep() gives it to RQ then).
_SUBMIT = """
redis.call('SADD', KEYS[3], ARGV[3])
local extra = (tonumber(ARGV[5]) or 1) - 1
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' then
  redis.call('HINCRBY', KEYS[1], 'absorbed', 1 + extra)
  return {'queued', redis.call('HGET', KEYS[1], 'job_id'), ''}
elseif st == 'running' then
  local d = redis.call('HINCRBY', KEYS[1], 'dirty', 1)
  if d > 1 then extra = extra + 1 end
  if extra > 0 then redis.call('HINCRBY', KEYS[1], 'absorbed', extra) end
  return {'running', redis.call('HGET', KEYS[1], 'job_id'), ''}
end
if extra > 0 then redis.call('HINCRBY', KEYS[1], 'absorbed', extra) end
local n = redis.call('INCR', KEYS[2])
local job_id = ARGV[4] .. '-' .. ARGV[3] .. '-' .. n
local due = tonumber(redis.call('HGET', KEYS[1], 'not_before')) or 0
local delayed = 0
if due > tonumber(ARGV[1]) then delayed = 1 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'job_id', job_id, 'queued_at', ARGV[1],
           'dirty', 0, 'attempts', 0, 'reason', ARGV[2], 'delayed', delayed)
if delayed == 1 then return {'delayed', job_id, tostring(due)} end
return {'enqueue', job_id, ''}
"""

# KEYS: project hash. ARGV: job id, now, worker name, min interval. Returns 1 when this job
# may run.
_START = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'worker', ARGV[3],
           'dirty', 0, 'delayed', 0,
           'not_before', tostring(tonumber(ARGV[2]) + tonumber(ARGV[4])))
return 1
"""

# KEYS: project hash, seq. ARGV: job id, now, status, error, duration, prefix, project id,
# pace_s, again (1|0). Returns {action, job id, due}: stale | done | enqueue | delayed.
_FINISH = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return {'stale', '', ''} end
redis.call('HINCRBY', KEYS[1], 'runs', 1)
local now = tonumber(ARGV[2])
local dur = tonumber(ARGV[5])
local avg = tonumber(redis.call('HGET', KEYS[1], 'avg_duration'))
if ARGV[3] == 'ok' then
  if avg then avg = 0.7 * avg + 0.3 * dur else avg = dur end
  redis.call('HSET', KEYS[1], 'avg_duration', tostring(avg), 'attempts', 0)
end
local nb = math.max(tonumber(redis.call('HGET', KEYS[1], 'not_before')) or 0,
                    now + (tonumber(ARGV[8]) or 0))
redis.call('HSET', KEYS[1], 'finished_at', ARGV[2], 'last_duration', ARGV[5],
           'last_status', ARGV[3], 'last_error', ARGV[4], 'not_before', tostring(nb))
local d = tonumber(redis.call('HGET', KEYS[1], 'dirty')) or 0
if d > 0 or ARGV[9] == '1' then
  local n = redis.call('INCR', KEYS[2])
  local job_id = ARGV[6] .. '-' .. ARGV[7] .. '-' .. n
  local reason = 'rerun'
  if d == 0 then reason = 'again' end
  local delayed = 0
  if nb > now then delayed = 1 end
  redis.call('HSET', KEYS[1], 'state', 'queued', 'job_id', job_id, 'queued_at', ARGV[2],
             'dirty', 0, 'reason', reason, 'delayed', delayed)
  if delayed == 1 then return {'delayed', job_id, tostring(nb)} end
  return {'enqueue', job_id, ''}
end
if ARGV[3] == 'ok' then
  redis.call('HSET', KEYS[1], 'state', 'idle')
else
  redis.call('HSET', KEYS[1], 'state', 'failed')
end
return {'done', '', ''}
"""

# KEYS: project hash, lock, seq. ARGV: now, grace, prefix, project id, max losses.
# Returns {action, job id, why}: ok | enqueue (new id) | reenqueue (same id) | gave_up |
# release (a delayed job now due: enqueue it, same id; "why" is its reason) | wait (a delayed
# job; "why" is when it is due).
_REPAIR = """
local h = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'started_at', 'queued_at',
                     'delayed', 'not_before', 'reason')
local st, job_id = h[1], h[2]
if not job_id then return {'ok', '', ''} end
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
if st == 'queued' and h[5] == '1' then
  if now >= (tonumber(h[6]) or 0) then
    redis.call('HSET', KEYS[1], 'delayed', 0, 'queued_at', ARGV[1])
    return {'release', job_id, h[7] or 'retrain'}
  end
  return {'wait', job_id, h[6]}
end
local rq_status = redis.call('HGET', 'rq:job:' .. job_id, 'status')
local why = nil
if st == 'running' then
  if rq_status == 'failed' or rq_status == 'stopped' or rq_status == 'canceled' then
    why = 'rq job ' .. rq_status
  elseif redis.call('EXISTS', KEYS[2]) == 0 and now - (tonumber(h[3]) or now) > grace then
    why = 'worker lost (lock expired)'
  end
elseif st == 'queued' then
  if rq_status == 'failed' or rq_status == 'stopped' or rq_status == 'canceled'
     or rq_status == 'finished' then
    why = 'rq job ' .. rq_status .. ' before it ran'
  elseif not rq_status and now - (tonumber(h[4]) or now) > grace then
    redis.call('HINCRBY', KEYS[1], 'requeued', 1)
    return {'reenqueue', job_id, 'rq job missing'}
  end
end
if not why then return {'ok', job_id, ''} end
local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if a >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'state', 'failed', 'last_status', 'failed',
             'last_error', why .. ' ' .. a .. ' times in a row; giving up until the next request')
  return {'gave_up', job_id, why}
end
local n = redis.call('INCR', KEYS[3])
local new_id = ARGV[3] .. '-' .. ARGV[4] .. '-' .. n
redis.call('HSET', KEYS[1], 'state', 'queued', 'job_id', new_id, 'queued_at', ARGV[1],
           'reason', 'requeue: ' .. why, 'last_error', why, 'delayed', 0)
redis.call('HINCRBY', KEYS[1], 'requeued', 1)
return {'enqueue', new_id, why}
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _f(v: Any) -> float | None:
    try:
        return float(_s(v))
    except ValueError:
        return None


class Keys:
    """Redis key names under one prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def project(self, project_id: int) -> str:
        return f"{self.prefix}:project:{int(project_id)}"

    def lock(self, project_id: int) -> str:
        return f"{self.prefix}:lock:{int(project_id)}"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def projects(self) -> str:
        return f"{self.prefix}:projects"


def connect(url: str, timeout: float = 2.0) -> "redis.Redis":
    """A Redis client with bounded connect/read timeouts (a hung Redis never blocks a request
    for long)."""
    return redis.Redis.from_url(url, socket_connect_timeout=min(timeout, 1.0),
                                socket_timeout=timeout, health_check_interval=10)


class _Scripts:
    def __init__(self, conn: "redis.Redis"):
        self.submit = conn.register_script(_SUBMIT)
        self.start = conn.register_script(_START)
        self.finish = conn.register_script(_FINISH)
        self.repair = conn.register_script(_REPAIR)


def enqueue(queue: "Queue", settings, project_id: int, reason: str, job_id: str) -> None:
    queue.enqueue(JOB_FUNC, args=(int(project_id), reason), job_id=job_id,
                  job_timeout=settings.job_timeout, result_ttl=RESULT_TTL,
                  failure_ttl=FAILURE_TTL, description=f"retrain project {int(project_id)}")


def sweep(conn: "redis.Redis", settings, queue: "Queue | None" = None,
          scripts: _Scripts | None = None) -> tuple[list[tuple[int, str, str]], float | None]:
    """Give due delayed jobs to RQ and re-enqueue lost jobs (see the module docstring).

    Returns ``([(project, action, why)] for every project that needed a repair, the earliest
    time a still-delayed job is due or None)``."""
    keys = Keys(settings.redis_queue)
    scripts = scripts or _Scripts(conn)
    queue = queue or Queue(settings.redis_queue, connection=conn)
    done = []
    next_due: float | None = None
    grace = max(2.0, float(settings.lock_ttl))
    for raw in conn.smembers(keys.projects):
        pid = int(_s(raw))
        action, job_id, why = (_s(x) for x in scripts.repair(
            keys=[keys.project(pid), keys.lock(pid), keys.seq],
            args=[time.time(), grace, settings.redis_queue, pid, MAX_LOSSES]))
        if action == "release":
            enqueue(queue, settings, pid, why or "retrain", job_id)
            log.info("event=job_released project=%s job=%s", pid, job_id)
            continue
        if action == "wait":
            due = _f(why)
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
            continue
        if action in ("enqueue", "reenqueue"):
            enqueue(queue, settings, pid, f"requeue: {why}", job_id)
        if action != "ok":
            log.warning("event=job_repaired project=%s action=%s job=%s why=%r", pid, action,
                        job_id, why)
            done.append((pid, action, why))
    return done, next_due


def repair(conn: "redis.Redis", settings, queue: "Queue | None" = None,
           scripts: _Scripts | None = None) -> list[tuple[int, str, str]]:
    """:func:`sweep`; returns ``[(project, action, why)]`` for every project that needed a
    repair."""
    return sweep(conn, settings, queue, scripts)[0]


class RQJobRunner(JobRunner):
    """Submit retrains to RQ with the coalescing rule above; report job state, ETA and the
    health of Redis.

    :meth:`submit` never touches Redis: it records the request (one entry per project,
    reasons merged) for the submitter thread and returns at once, ``queued`` or, while Redis
    is known to be unreachable, ``deferred``. A monitor thread pings Redis every ``interval``
    seconds (``/health`` reads the cached result, so it stays fast), lets the submitter retry
    deferred projects once Redis answers, and runs :func:`sweep` (lost jobs, due delayed
    jobs; it wakes up when a delayed job it knows of is due).
    """

    def __init__(self, settings, interval: float = 1.0, connection: "redis.Redis | None" = None):
        self.settings = settings
        self.keys = Keys(settings.redis_queue)
        self.conn = connection or connect(settings.redis_url)
        self.queue = Queue(settings.redis_queue, connection=self.conn)
        self.scripts = _Scripts(self.conn)
        self.interval = interval
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # submitter: work or Redis is back
        # project -> [reasons, number of requests]: not handed to Redis yet
        self._pending: dict[int, list] = {}
        self._inflight: int | None = None
        self._deferred: set[int] = set()  # projects whose submission waits for Redis
        self._next_due: float | None = None
        self._health: dict[str, Any] = {"ok": None, "since": time.time(), "error": None,
                                        "checked_at": None}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads = [
            threading.Thread(target=self._submitter, name="studio-al-rq-submitter", daemon=True),
            threading.Thread(target=self._monitor, name="studio-al-rq-monitor", daemon=True)]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------------ health
    def _set_health(self, ok: bool, error: str | None) -> None:
        with self._lock:
            now, was = time.time(), self._health["ok"]
            if was is not ok:
                if not ok:
                    log.error("event=redis_down error=%r", error)
                elif was is False:
                    log.warning("event=redis_up down_s=%.2f", now - self._health["since"])
                self._health["since"] = now
            self._health.update(ok=ok, error=error, checked_at=now)
            if not ok:  # whatever waits for the submitter now waits for Redis
                self._deferred.update(self._pending)
            if ok:
                self._cond.notify_all()  # the submitter retries the deferred projects

    def _check(self) -> bool:
        try:
            self.conn.ping()
        except RedisError as exc:
            self._set_health(False, f"{type(exc).__name__}: {exc}")
            return False
        self._set_health(True, None)
        return True

    def health(self) -> dict:
        """``{"redis": "ok"|"down", "degraded": bool, "since": t, "error": ..., "deferred": [...]}``"""
        with self._lock:
            h = dict(self._health)
            deferred = sorted(self._deferred)
        ok = bool(h["ok"])
        return {"redis": "ok" if ok else "down", "degraded": not ok or bool(deferred),
                "since": h["since"], "error": h["error"], "deferred_projects": deferred}

    def _redis_down(self) -> bool:
        """(Under the lock.) Redis is known to be unreachable."""
        return self._health["ok"] is False

    def _monitor(self) -> None:
        while not self._stop.is_set():
            if self._check():
                try:
                    with self._lock:
                        self._next_due = None  # the sweep finds them all (or _note_due)
                    _, due = sweep(self.conn, self.settings, self.queue, self.scripts)
                    with self._lock:
                        known = [d for d in (self._next_due, due) if d is not None]
                        self._next_due = min(known) if known else None
                except RedisError as exc:
                    self._set_health(False, f"{type(exc).__name__}: {exc}")
                except Exception:  # noqa: BLE001 - the monitor must survive anything
                    log.exception("event=repair_failed")
            with self._lock:
                wait = self.interval
                if self._next_due is not None:
                    wait = min(wait, max(0.01, self._next_due - time.time()))
            self._wake.wait(wait)
            self._wake.clear()

    def _note_due(self, due: float | None) -> None:
        if due is None:
            return
        with self._lock:
            if self._next_due is None or due < self._next_due:
                self._next_due = due
        self._wake.set()

    # ------------------------------------------------------------------ submitter
    def _submitter(self) -> None:
        while True:
            with self._cond:
                while not self._stop.is_set() and (not self._pending or self._redis_down()):
                    self._cond.wait()
                if self._stop.is_set():
                    return
                pid = next(iter(self._pending))
                reasons, count = self._pending.pop(pid)
                reason = ",".join(reasons) or "retrain"
                self._inflight = pid
            try:
                self._submit_now(pid, reason, count)
            except RedisError as exc:
                # If the enqueue itself failed after the Lua step, sweep() re-enqueues the
                # recorded job id once Redis answers.
                self._set_health(False, f"{type(exc).__name__}: {exc}")
                with self._cond:
                    self._inflight = None
                    self._merge(pid, reasons, count)
                    self._deferred.add(pid)
                    self._cond.notify_all()
                log.warning("event=submit_deferred project=%s reason=%s", pid, reason)
            except Exception:  # noqa: BLE001 - the submitter must survive anything
                log.exception("event=submit_failed project=%s", pid)
                with self._cond:
                    self._inflight = None
                    self._merge(pid, reasons, count)
                    self._cond.notify_all()
                self._stop.wait(1.0)  # a bug, not Redis: do not spin
            else:
                with self._cond:
                    self._inflight = None
                    if pid not in self._pending:
                        self._deferred.discard(pid)
                    self._cond.notify_all()

    def _submit_now(self, pid: int, reason: str, count: int = 1) -> str:
        action, job_id, due = (_s(x) for x in self.scripts.submit(
            keys=[self.keys.project(pid), self.keys.seq, self.keys.projects],
            args=[time.time(), reason, pid, self.settings.redis_queue, count]))
        if action == "enqueue":
            enqueue(self.queue, self.settings, pid, reason, job_id)
            return QUEUED
        if action == "delayed":
            self._note_due(_f(due))
            log.info("event=job_delayed project=%s job=%s due_in_s=%.2f", pid, job_id,
                     (_f(due) or time.time()) - time.time())
            return QUEUED
        return action

    def _merge(self, pid: int, reasons: list[str], count: int = 1) -> None:
        """(Under the lock.) Add ``count`` requests for ``reasons`` to the project's pending
        one (one entry per project: the submitter's work is bounded by the projects)."""
        old, n = self._pending.get(pid) or ([], 0)
        self._pending[pid] = [list(dict.fromkeys(old + [r for r in reasons if r]))[-20:],
                              n + count]

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until every request was handed to Redis; False when some are still
        pending (Redis down, or ``timeout``). For tests and graceful shutdown."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._inflight is not None:
                left = deadline - time.monotonic()
                if left <= 0 or (self._redis_down() and self._inflight is None):
                    return False
                self._cond.wait(left)
            return True

    # ------------------------------------------------------------------ JobRunner
    def submit(self, project_id: int, reason: str) -> str:
        """Request a retrain; returns at once, without waiting for Redis: ``queued`` (handed
        to the submitter thread; absorbed or rerun per the coalescing rule), or ``deferred``
        (Redis known unreachable: submitted when it answers again)."""
        pid = int(project_id)
        with self._cond:
            if self._stop.is_set():
                raise RuntimeError("job runner is shut down")
            self._merge(pid, [reason])
            down = self._redis_down()
            if down:
                self._deferred.add(pid)
            self._cond.notify_all()
        if down:
            log.warning("event=submit_deferred project=%s reason=%s", pid, reason)
            return "deferred"
        return QUEUED

    def status(self, project_id: int) -> dict:
        pid = int(project_id)
        with self._lock:
            deferred = pid in self._deferred
            pending = pid in self._pending or self._inflight == pid
            answered = self._health["ok"] is True
            error = self._health["error"]
        local = "deferred" if deferred else (QUEUED if pending else None)
        base = {"state": local or IDLE, "backend": "rq", "queue": self.settings.redis_queue,
                "next_start_at": None}
        if not answered:  # never wait for a Redis that is down or has not answered yet
            return {**base, "state": local or "unknown",
                    "error": f"redis unreachable: {error or 'no answer yet'}"}
        try:
            h = {_s(k): _s(v) for k, v in self.conn.hgetall(self.keys.project(pid)).items()}
            if not h:
                return base
            state = h.get("state") or IDLE
            if deferred:
                state = "deferred"
            elif pending and state not in (QUEUED, RUNNING):
                state = QUEUED
            out = {**base, "state": state, "job_id": h.get("job_id"),
                   "rerun_pending": int(h.get("dirty") or 0) > 0,
                   "runs": int(h.get("runs") or 0), "absorbed": int(h.get("absorbed") or 0),
                   "requeued": int(h.get("requeued") or 0), "worker": h.get("worker") or None,
                   "queued_at": _f(h.get("queued_at")), "last_started": _f(h.get("started_at")),
                   "last_finished": _f(h.get("finished_at")),
                   "last_duration": _f(h.get("last_duration")),
                   "last_error": h.get("last_error") or None}
            out["workers"] = self.workers()
            out["position"] = None
            avg = _f(h.get("avg_duration"))
            now = time.time()
            not_before = _f(h.get("not_before"))
            if state == QUEUED and not_before is not None:
                out["next_start_at"] = not_before
            eta = None
            if state == QUEUED:
                pos = self.queue.get_job_position(h.get("job_id"))
                out["position"] = pos
                if avg is not None and pos is not None:
                    eta = (pos // max(out["workers"], 1) + 1) * avg
                if h.get("delayed") == "1" and avg is not None and not_before is not None:
                    eta = max(0.0, not_before - now) + avg
            elif state == RUNNING and avg is not None:
                eta = max(0.0, avg - (now - (out["last_started"] or now)))
            out["eta_seconds"] = None if eta is None else round(eta, 2)
            return out
        except RedisError as exc:
            return {**base, "state": local or "unknown",
                    "error": f"redis unreachable: {type(exc).__name__}"}

    def workers(self) -> int:
        from rq import Worker
        return Worker.count(connection=self.conn, queue=self.queue)

    def idle(self) -> bool:
        """True when no project is queued or running (for tests)."""
        with self._lock:
            if self._deferred or self._pending or self._inflight is not None:
                return False
        for raw in self.conn.smembers(self.keys.projects):
            if _s(self.conn.hget(self.keys.project(int(_s(raw))), "state")) in (QUEUED, RUNNING):
                return False
        return True

    def shutdown(self, timeout: float | None = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        with self._cond:
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))


# ---------------------------------------------------------------------------------------------
# Worker side
_worker_state: dict[str, Any] = {}


def _worker_settings():
    settings = _worker_state.get("settings")
    if settings is None:
        from backend.settings import Settings
        settings = _worker_state["settings"] = Settings.from_env()
    return settings


class _LockRenewer(threading.Thread):
    """Renews the project lock every TTL/3 (the lock is the running job's heartbeat)."""

    def __init__(self, lock, ttl: int):
        super().__init__(name="studio-al-lock-renewer", daemon=True)
        self.lock, self.ttl = lock, ttl
        self.stop_event = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stop_event.wait(self.ttl / 3):
            try:
                self.lock.reacquire()
            except Exception as exc:  # noqa: BLE001 - LockNotOwnedError or Redis down
                self.lost = True
                log.error("event=lock_renew_failed error=%r", str(exc))


def retrain(project_id: int, reason: str = "retrain",
            client_factory: Callable[[str, str], Any] | None = None) -> dict:
    """The RQ job: one coalesced training round of ``project_id`` under the project lock."""
    from rq import get_current_job
    from backend.jobs import label_studio_client_factory
    from backend.store import Store
    settings = _worker_settings()
    job = get_current_job()
    conn = job.connection if job is not None else connect(settings.redis_url, timeout=10)
    keys, scripts = Keys(settings.redis_queue), _Scripts(conn)
    pid = int(project_id)
    job_id = job.id if job is not None else ""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    if not scripts.start(keys=[keys.project(pid)],
                         args=[job_id, time.time(), worker, settings.min_round_interval]):
        log.info("event=job_superseded project=%s job=%s", pid, job_id)
        return {"status": "superseded", "job_id": job_id}
    t0 = time.time()
    lock = conn.lock(keys.lock(pid), timeout=settings.lock_ttl,
                     blocking_timeout=settings.job_timeout, thread_local=False)
    record: dict = {"status": "failed", "error": "project lock not acquired"}
    acquired = lock.acquire()
    renewer = _LockRenewer(lock, settings.lock_ttl)
    try:
        if acquired:
            renewer.start()
            store = Store(settings.model_dir)  # fresh per job: no stale caches across jobs
            factory = client_factory or label_studio_client_factory(settings)
            record = run_project_round(pid, reason, settings, store, factory)
    except Exception as exc:  # noqa: BLE001 - run_round never raises; belt and braces
        record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        log.exception("event=job_crashed project=%s", pid)
    finally:
        renewer.stop_event.set()
        status = "ok" if record.get("status") == "ok" else "failed"
        again = "1" if record.get("again") and not renewer.lost else "0"
        try:
            action, next_id, _due = (_s(x) for x in scripts.finish(
                keys=[keys.project(pid), keys.seq],
                args=[job_id, time.time(), status, record.get("error") or "",
                      round(time.time() - t0, 4), settings.redis_queue, pid,
                      pace_of(record), again]))
            if action == "stale":  # declared lost meanwhile (heartbeat lapsed): requeued
                log.warning("event=job_stale project=%s job=%s lock_lost=%s", pid, job_id,
                            renewer.lost)
            if action == "enqueue":  # "delayed": sweep() enqueues it when it is due
                enqueue(Queue(settings.redis_queue, connection=conn), settings, pid, "rerun",
                        next_id)
        finally:
            if acquired:
                try:
                    lock.release()
                except Exception:  # noqa: BLE001 - expired/not owned: nothing to release
                    pass
    return {"status": record.get("status"), "version": record.get("version"),
            "error": record.get("error"), "job_id": job_id}


#: Seconds between two sweeps of a ``studio-al worker`` (delayed jobs start this late at most).
WORKER_SWEEP_S = 0.5


def _start_sweeper(settings) -> threading.Thread:
    """A thread of the worker process (its own Redis connection: the forked work horses never
    share it) that gives due delayed jobs to RQ and repairs lost ones, so pacing works without
    any web process."""
    def loop() -> None:
        conn = connect(settings.redis_url, timeout=5)
        queue, scripts = Queue(settings.redis_queue, connection=conn), _Scripts(conn)
        while True:
            wait = WORKER_SWEEP_S
            try:
                _, due = sweep(conn, settings, queue, scripts)
                if due is not None:
                    wait = min(wait, max(0.01, due - time.time()))
            except RedisError:
                wait = 2.0
            except Exception:  # noqa: BLE001 - the sweeper must survive anything
                log.exception("event=sweep_failed")
                wait = 2.0
            time.sleep(wait)
    t = threading.Thread(target=loop, name="studio-al-rq-sweeper", daemon=True)
    t.start()
    return t


def run_worker(settings, name: str | None = None, burst: bool = False) -> int:
    """``studio-al worker``: an RQ worker on queue ``REDIS_QUEUE`` (forks one work horse per
    job). Heavy modules are imported once here so that each fork starts warm."""
    from rq import Worker
    from backend.settings import redact_url
    from backend.logs import configure_logging
    configure_logging(settings.log_level)
    _worker_state["settings"] = settings
    conn = connect(settings.redis_url, timeout=30)
    try:
        conn.ping()
    except RedisError as exc:
        print(f"studio-al: cannot reach Redis at {redact_url(settings.redis_url)}: "
              f"{type(exc).__name__}", flush=True, file=__import__("sys").stderr)
        return 1
    import al_engine.registry  # noqa: F401 - warm imports for the forked work horses
    import backend.training  # noqa: F401
    import sklearn.svm  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.feature_extraction.text  # noqa: F401
    try:
        repair(conn, settings)
    except RedisError:
        pass
    _start_sweeper(settings)
    # RQ's worker exits with a ConnectionError when Redis goes away; keep serving: wait for
    # Redis with capped backoff and start a fresh worker (a new name, since the old
    # registration may linger until its TTL).
    base = name or f"{settings.redis_queue}-{socket.gethostname()}-{os.getpid()}"
    for generation in itertools.count():
        worker = Worker([Queue(settings.redis_queue, connection=conn)], connection=conn,
                        name=base if generation == 0 else f"{base}-{generation}")
        worker.log_result_lifespan = False
        try:
            worker.work(burst=burst, logging_level=settings.log_level, with_scheduler=False)
            return 0
        except RedisError as exc:
            log.error("event=worker_lost_redis error=%r", f"{type(exc).__name__}: {exc}")
        delay = 0.2
        while True:
            try:
                conn.ping()
                break
            except RedisError:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.warning("event=worker_redis_back generation=%d", generation + 1)
        try:
            repair(conn, settings)
        except RedisError:
            pass
    return 0  # pragma: no cover
