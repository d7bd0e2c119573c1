"""Scale-out: retrain jobs on Redis + RQ (``REDIS_URL`` set).

The web process enqueues, ``studio-al worker`` processes (any number, any machine that sees
``MODEL_DIR``) train and push. Everything below lives under the prefix ``P = REDIS_QUEUE``::

    P:project:<id>   hash: state (queued|running|idle|failed), job_id, dirty, absorbed, runs,
                     requeued, attempts, queued_at, started_at, finished_at, last_duration,
                     avg_duration, last_error, last_status, worker, reason
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
runs twice, and ``unique=True`` refuses while a *finished* job of that id is kept.

Recovery: a watchdog (in every web process, and once at worker start) re-enqueues a project
whose job is ``running`` but whose lock has expired (the worker was killed: ``kill -9``, OOM,
lost machine) or whose RQ job ended as failed/stopped, and a ``queued`` project whose RQ job
vanished (Redis restarted without persistence, or the enqueue itself failed). After three
consecutive losses the project is marked ``failed`` (a poison job); the next webhook retries.
While Redis is unreachable webhooks are still acknowledged (the event is already fsync'd to
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

from backend.jobs import FAILED, IDLE, QUEUED, RUNNING, JobRunner, run_project_round

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

# KEYS: project hash, seq, projects set. ARGV: now, reason, project id, prefix.
_SUBMIT = """
redis.call('SADD', KEYS[3], ARGV[3])
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' then
  redis.call('HINCRBY', KEYS[1], 'absorbed', 1)
  return {'queued', redis.call('HGET', KEYS[1], 'job_id')}
elseif st == 'running' then
  local d = redis.call('HINCRBY', KEYS[1], 'dirty', 1)
  if d > 1 then redis.call('HINCRBY', KEYS[1], 'absorbed', 1) end
  return {'running', redis.call('HGET', KEYS[1], 'job_id')}
end
local n = redis.call('INCR', KEYS[2])
local job_id = ARGV[4] .. '-' .. ARGV[3] .. '-' .. n
redis.call('HSET', KEYS[1], 'state', 'queued', 'job_id', job_id, 'queued_at', ARGV[1],
           'dirty', 0, 'attempts', 0, 'reason', ARGV[2])
return {'enqueue', job_id}
"""

# KEYS: project hash. ARGV: job id, now, worker name. Returns 1 when this job may run.
_START = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'worker', ARGV[3],
           'dirty', 0)
return 1
"""

# KEYS: project hash, seq. ARGV: job id, now, status, error, duration, prefix, project id.
_FINISH = """
if redis.call('HGET', KEYS[1], 'job_id') ~= ARGV[1] then return {'stale', ''} end
redis.call('HINCRBY', KEYS[1], 'runs', 1)
local dur = tonumber(ARGV[5])
local avg = tonumber(redis.call('HGET', KEYS[1], 'avg_duration'))
if ARGV[3] == 'ok' then
  if avg then avg = 0.7 * avg + 0.3 * dur else avg = dur end
  redis.call('HSET', KEYS[1], 'avg_duration', tostring(avg), 'attempts', 0)
end
redis.call('HSET', KEYS[1], 'finished_at', ARGV[2], 'last_duration', ARGV[5],
           'last_status', ARGV[3], 'last_error', ARGV[4])
local d = tonumber(redis.call('HGET', KEYS[1], 'dirty')) or 0
if d > 0 then
  local n = redis.call('INCR', KEYS[2])
  local job_id = ARGV[6] .. '-' .. ARGV[7] .. '-' .. n
  redis.call('HSET', KEYS[1], 'state', 'queued', 'job_id', job_id, 'queued_at', ARGV[2],
             'dirty', 0, 'reason', 'rerun')
  return {'enqueue', job_id}
end
if ARGV[3] == 'ok' then
  redis.call('HSET', KEYS[1], 'state', 'idle')
else
  redis.call('HSET', KEYS[1], 'state', 'failed')
end
return {'done', ''}
"""

# KEYS: project hash, lock, seq. ARGV: now, grace, prefix, project id, max losses.
# Returns {action, job id, why}: action ok | enqueue (new id) | reenqueue (same id) | gave_up.
_REPAIR = """
local h = redis.call('HMGET', KEYS[1], 'state', 'job_id', 'started_at', 'queued_at')
local st, job_id = h[1], h[2]
if not job_id then return {'ok', '', ''} end
local now, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
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
           'reason', 'requeue: ' .. why, 'last_error', why)
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


def repair(conn: "redis.Redis", settings, queue: "Queue | None" = None,
           scripts: _Scripts | None = None) -> list[tuple[int, str, str]]:
    """Re-enqueue lost jobs (see the module docstring); returns ``[(project, action, why)]``
    for every project that needed an action."""
    keys = Keys(settings.redis_queue)
    scripts = scripts or _Scripts(conn)
    queue = queue or Queue(settings.redis_queue, connection=conn)
    done = []
    grace = max(2.0, float(settings.lock_ttl))
    for raw in conn.smembers(keys.projects):
        pid = int(_s(raw))
        action, job_id, why = (_s(x) for x in scripts.repair(
            keys=[keys.project(pid), keys.lock(pid), keys.seq],
            args=[time.time(), grace, settings.redis_queue, pid, MAX_LOSSES]))
        if action in ("enqueue", "reenqueue"):
            enqueue(queue, settings, pid, f"requeue: {why}", job_id)
        if action != "ok":
            log.warning("event=job_repaired project=%s action=%s job=%s why=%r", pid, action,
                        job_id, why)
            done.append((pid, action, why))
    return done


class RQJobRunner(JobRunner):
    """Submit retrains to RQ with the coalescing rule above; report job state, ETA and the
    health of Redis.

    A monitor thread pings Redis every ``interval`` seconds (``/health`` reads the cached
    result, so it stays fast), submits deferred projects once Redis is back, and runs
    :func:`repair`.
    """

    def __init__(self, settings, interval: float = 1.0, connection: "redis.Redis | None" = None):
        self.settings = settings
        self.keys = Keys(settings.redis_queue)
        self.conn = connection or connect(settings.redis_url)
        self.queue = Queue(settings.redis_queue, connection=self.conn)
        self.scripts = _Scripts(self.conn)
        self.interval = interval
        self._lock = threading.Lock()
        self._deferred: dict[int, str] = {}
        self._health: dict[str, Any] = {"ok": None, "since": time.time(), "error": None,
                                        "checked_at": None}
        self._stop = threading.Event()
        self._check()
        self._thread = threading.Thread(target=self._monitor, name="studio-al-rq-monitor",
                                        daemon=True)
        self._thread.start()

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

    def _monitor(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._check():
                continue
            with self._lock:
                deferred, self._deferred = self._deferred, {}
            for pid, reason in deferred.items():
                self.submit(pid, reason)
            try:
                repair(self.conn, self.settings, self.queue, self.scripts)
            except RedisError as exc:
                self._set_health(False, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the monitor must survive anything
                log.exception("event=repair_failed")

    # ------------------------------------------------------------------ JobRunner
    def submit(self, project_id: int, reason: str) -> str:
        """Request a retrain: ``queued`` / ``running`` (absorbed or rerun pending) or
        ``deferred`` (Redis unreachable: submitted when it answers again)."""
        pid = int(project_id)
        with self._lock:
            down = self._health["ok"] is False and self._health["checked_at"] is not None \
                and time.time() - self._health["checked_at"] < self.interval
        if not down:
            try:
                action, job_id = (_s(x) for x in self.scripts.submit(
                    keys=[self.keys.project(pid), self.keys.seq, self.keys.projects],
                    args=[time.time(), reason, pid, self.settings.redis_queue]))
                if action == "enqueue":
                    enqueue(self.queue, self.settings, pid, reason, job_id)
                    return QUEUED
                return action
            except RedisError as exc:
                # If the enqueue itself failed after the Lua step, repair() re-enqueues the
                # recorded job id once Redis answers.
                self._set_health(False, f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._deferred[pid] = reason
        log.warning("event=submit_deferred project=%s reason=%s", pid, reason)
        return "deferred"

    def status(self, project_id: int) -> dict:
        pid = int(project_id)
        with self._lock:
            deferred = pid in self._deferred
        base = {"state": "deferred" if deferred else IDLE, "backend": "rq",
                "queue": self.settings.redis_queue}
        try:
            h = {_s(k): _s(v) for k, v in self.conn.hgetall(self.keys.project(pid)).items()}
            if not h:
                return base
            state = "deferred" if deferred else (h.get("state") or IDLE)
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
            eta = None
            if state == QUEUED:
                pos = self.queue.get_job_position(h.get("job_id"))
                out["position"] = pos
                if avg is not None and pos is not None:
                    eta = (pos // max(out["workers"], 1) + 1) * avg
            elif state == RUNNING and avg is not None:
                eta = max(0.0, avg - (now - (out["last_started"] or now)))
            out["eta_seconds"] = None if eta is None else round(eta, 2)
            return out
        except RedisError as exc:
            return {**base, "state": "deferred" if deferred else "unknown",
                    "error": f"redis unreachable: {type(exc).__name__}"}

    def workers(self) -> int:
        from rq import Worker
        return Worker.count(connection=self.conn, queue=self.queue)

    def idle(self) -> bool:
        """True when no project is queued or running (for tests)."""
        with self._lock:
            if self._deferred:
                return False
        for raw in self.conn.smembers(self.keys.projects):
            if _s(self.conn.hget(self.keys.project(int(_s(raw))), "state")) in (QUEUED, RUNNING):
                return False
        return True

    def shutdown(self, timeout: float | None = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


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
    if not scripts.start(keys=[keys.project(pid)], args=[job_id, time.time(), worker]):
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
        try:
            action, next_id = (_s(x) for x in scripts.finish(
                keys=[keys.project(pid), keys.seq],
                args=[job_id, time.time(), status, record.get("error") or "",
                      round(time.time() - t0, 4), settings.redis_queue, pid]))
            if action == "enqueue":
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
