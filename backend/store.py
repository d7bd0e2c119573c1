"""Per-project state on local disk: config, events, model versions, rankings, audit log.

Layout under ``MODEL_DIR``::

    <project_id>/project.json            label config + Label Studio url/token from /setup
    <project_id>/events.jsonl            every webhook, fsync'd before the webhook is acknowledged
    <project_id>/versions/<v>/model.pkl  the fitted model bundle of version v
    <project_id>/versions/<v>/ranking.npz   every unlabeled task's priority and prediction
    <project_id>/current                 name of the serving version
    <project_id>/audit.jsonl             one record per training round
    <project_id>/state/<name>.pkl        pickled job state (e.g. the stopping criterion)
    <project_id>/.lock                   flock held while a round runs (one writer per project)

Every file write is atomic (a temporary file in the same directory, fsync, ``os.replace``,
fsync of the directory), so a crash never leaves a partial file behind; ``current`` is only
switched after a version's files are complete, so a partial model is never loaded.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import pickle
import shutil
import tempfile
import threading
import time
from typing import Any, Iterator

_VERSION_PREFIX = "studio-al-"
#: The file that completes a version (``backend.ranking``).
RANKING_FILE = "ranking.npz"
log = logging.getLogger("studio_al.store")


def quarantine_version(vdir: str) -> None:
    """Move a damaged version out of the way (``.corrupt-<UTC stamp>-<name>`` beside it), so
    that it is neither served nor listed, but kept for inspection."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    head, name = os.path.split(vdir.rstrip(os.sep))
    with contextlib.suppress(OSError):
        os.replace(vdir, os.path.join(head, f".corrupt-{stamp}-{name}"))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())


def _read_jsonl(path: str) -> list[dict]:
    """Records of a JSON-lines file; a torn last line (crash mid-append) is skipped."""
    out = []
    try:
        with open(path, "rb") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


class Store:
    """Thread-safe access to the per-project files under ``root``."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self._lock = threading.RLock()
        self._project_locks: dict[int, threading.Lock] = {}
        self._project_cache: dict[int, tuple[tuple, dict]] = {}  # project -> (stat, config)
        self._event_seq: dict[int, tuple[int, int]] = {}  # project -> (file size, last seq)
        self._event_fds: dict[int, int] = {}
        self._sync_cond = threading.Condition()
        self._written: dict[int, int] = {}
        self._synced: dict[int, int] = {}
        self._syncing: dict[int, bool] = {}
        self._model_cache: dict[tuple[int, str], Any] = {}
        self._ranking_cache: dict[tuple[int, str], dict] = {}

    # ------------------------------------------------------------------ paths
    def project_dir(self, project_id: int) -> str:
        return os.path.join(self.root, str(int(project_id)))

    def _path(self, project_id: int, *parts: str) -> str:
        return os.path.join(self.project_dir(project_id), *parts)

    def version_dir(self, project_id: int, version: str) -> str:
        if not version or "/" in version or version.startswith("."):
            raise ValueError(f"invalid model version name {version!r}")
        return self._path(project_id, "versions", version)

    def close(self) -> None:
        """Close the open event-log descriptors (the store stays usable: they reopen)."""
        with self._lock:
            fds, self._event_fds = self._event_fds, {}
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def _plock(self, project_id: int) -> threading.Lock:
        with self._lock:
            return self._project_locks.setdefault(int(project_id), threading.Lock())

    def projects(self) -> list[int]:
        """Ids of every project with a directory, ascending."""
        return sorted(int(d) for d in os.listdir(self.root) if d.isdigit()
                      and os.path.isdir(os.path.join(self.root, d)))

    @contextlib.contextmanager
    def round_lock(self, project_id: int) -> Iterator[None]:
        """Exclusive per-project lock across threads and processes (flock)."""
        os.makedirs(self.project_dir(project_id), exist_ok=True)
        with open(self._path(project_id, ".lock"), "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ------------------------------------------------------------------ project config
    def save_project(self, project_id: int, config: dict) -> bool:
        """Store the project config; returns False (and writes nothing) when unchanged."""
        project_id = int(project_id)
        with self._plock(project_id):
            if self.load_project(project_id) == config:
                return False
            atomic_write_json(self._path(project_id, "project.json"), config)
            return True

    def load_project(self, project_id: int) -> dict | None:
        """The stored config (cached; re-read when another process rewrote project.json)."""
        project_id = int(project_id)
        path = self._path(project_id, "project.json")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._project_cache.get(project_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with open(path, "rb") as fh:
                config = json.load(fh)
        except (FileNotFoundError, ValueError):
            return None
        self._project_cache[project_id] = (stamp, config)
        return config

    # ------------------------------------------------------------------ events
    def append_event(self, project_id: int, event: dict) -> int:
        """Append ``event`` to events.jsonl durably (fsync'd before returning); return its
        sequence number.

        Safe across threads and processes (several web processes in Redis mode): the write
        holds an ``flock`` on the file, and the cached last sequence number is trusted only
        while the file still has the size this process last saw. Concurrent appends share
        one ``fsync`` (group commit): each caller returns once an fsync that started after
        its write has completed.
        """
        project_id = int(project_id)
        fd = self._event_fd(project_id)
        with self._plock(project_id):
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                size = os.fstat(fd).st_size
                seq = self._last_seq_at(project_id, size) + 1
                record = {"seq": seq, "received_at": time.time(), **event}
                line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
                self._event_seq[project_id] = (size + len(line), seq)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            with self._sync_cond:
                ticket = self._written[project_id] = self._written.get(project_id, 0) + 1
        self._durable(project_id, fd, ticket)
        return seq

    def _event_fd(self, project_id: int) -> int:
        with self._lock:
            fd = self._event_fds.get(project_id)
            if fd is None:
                os.makedirs(self.project_dir(project_id), exist_ok=True)
                fd = os.open(self._path(project_id, "events.jsonl"),
                             os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                self._event_fds[project_id] = fd
            return fd

    def _durable(self, project_id: int, fd: int, ticket: int) -> None:
        """Return once the write numbered ``ticket`` is fsync'd (one fsync serves every
        write made before it started)."""
        cond = self._sync_cond
        with cond:
            while self._synced.get(project_id, 0) < ticket:
                if self._syncing.get(project_id):
                    cond.wait()
                    continue
                self._syncing[project_id] = True
                target = self._written[project_id]
                cond.release()
                try:
                    os.fsync(fd)
                finally:
                    cond.acquire()
                    self._syncing[project_id] = False
                    cond.notify_all()
                self._synced[project_id] = max(self._synced.get(project_id, 0), target)

    def _last_seq_at(self, project_id: int, size: int) -> int:
        cached = self._event_seq.get(project_id)
        if cached is not None and cached[0] == size:
            return cached[1]
        events = _read_jsonl(self._path(project_id, "events.jsonl"))
        seq = max((e.get("seq", 0) for e in events), default=0)
        self._event_seq[project_id] = (size, seq)
        return seq

    def last_event_seq(self, project_id: int) -> int:
        project_id = int(project_id)
        try:
            size = os.stat(self._path(project_id, "events.jsonl")).st_size
        except FileNotFoundError:
            return 0
        return self._last_seq_at(project_id, size)

    def events(self, project_id: int) -> list[dict]:
        return _read_jsonl(self._path(project_id, "events.jsonl"))

    # ------------------------------------------------------------------ versions
    def new_version_name(self, project_id: int, now: float | None = None) -> str:
        """``studio-al-<round:04d>-<UTC timestamp>``; sortable, new every round."""
        n = len(self.audit(project_id)) + 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
        name = f"{_VERSION_PREFIX}{n:04d}-{stamp}"
        while os.path.exists(self.version_dir(project_id, name)):
            n += 1
            name = f"{_VERSION_PREFIX}{n:04d}-{stamp}"
        return name

    def write_version(self, project_id: int, version: str, model: Any, ranking) -> None:
        """Write a version's model bundle and ranking (a :class:`backend.ranking.Ranking`);
        atomic files, not yet current. The ranking is written last: it marks the version
        complete."""
        vdir = self.version_dir(project_id, version)
        os.makedirs(vdir, exist_ok=True)
        if model is not None:
            atomic_write_bytes(os.path.join(vdir, "model.pkl"),
                               pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
        atomic_write_bytes(os.path.join(vdir, RANKING_FILE), ranking.to_bytes())

    def set_current(self, project_id: int, version: str) -> None:
        if not os.path.isfile(os.path.join(self.version_dir(project_id, version), RANKING_FILE)):
            raise FileNotFoundError(f"version {version!r} of project {project_id} is incomplete")
        atomic_write_bytes(self._path(project_id, "current"), version.encode())

    def current(self, project_id: int) -> str | None:
        """The serving version: the one named in ``current`` when its ranking is readable,
        else the newest older complete version (a damaged version is quarantined and logged),
        else None."""
        try:
            with open(self._path(project_id, "current"), "rb") as fh:
                name = fh.read().decode(errors="replace").strip() or None
        except FileNotFoundError:
            return None
        try:
            if name is not None and self.load_ranking(project_id, name) is not None:
                return name
        except ValueError:
            pass  # an invalid name in the file
        older = [v for v in self.versions(project_id) if name is None or v < name]
        for v in reversed(older):
            if self.load_ranking(project_id, v) is not None:
                log.warning("event=current_version_unusable project=%s version=%r fallback=%s",
                            project_id, name, v)
                return v
        return None

    def versions(self, project_id: int) -> list[str]:
        """Complete versions on disk (those with a ranking), oldest first."""
        vroot = self._path(project_id, "versions")
        if not os.path.isdir(vroot):
            return []
        return sorted(v for v in os.listdir(vroot)
                      if not v.startswith(".") and os.path.isfile(os.path.join(vroot, v, RANKING_FILE)))

    def delete_version(self, project_id: int, version: str) -> None:
        shutil.rmtree(self.version_dir(project_id, version), ignore_errors=True)
        with self._lock:
            self._model_cache.pop((int(project_id), version), None)
            self._ranking_cache.pop((int(project_id), version), None)

    def prune_versions(self, project_id: int, keep: int = 2) -> list[str]:
        """Delete all but the ``keep`` newest complete versions (never the current one)."""
        current = self.current(project_id)
        old = [v for v in self.versions(project_id)[:-keep] if v != current] if keep else []
        for v in old:
            self.delete_version(project_id, v)
        return old

    def load_model(self, project_id: int, version: str) -> Any | None:
        """The model bundle of ``version`` (unpickled once, then cached); None if absent or
        unreadable (logged)."""
        key = (int(project_id), version)
        with self._lock:
            if key in self._model_cache:
                return self._model_cache[key]
        try:
            with open(os.path.join(self.version_dir(project_id, version), "model.pkl"), "rb") as fh:
                model = pickle.load(fh)
        except FileNotFoundError:
            model = None
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign pickle
            log.error("event=model_unreadable project=%s version=%s error=%r", project_id,
                      version, f"{type(exc).__name__}: {exc}")
            model = None
        with self._lock:
            return self._model_cache.setdefault(key, model)

    def load_ranking(self, project_id: int, version: str):
        """The :class:`backend.ranking.Ranking` of ``version`` (parsed once, then cached);
        None when the version has no readable ranking (a damaged file is quarantined)."""
        from backend.ranking import Ranking
        key = (int(project_id), version)
        with self._lock:
            if key in self._ranking_cache:
                return self._ranking_cache[key]
        path = os.path.join(self.version_dir(project_id, version), RANKING_FILE)
        try:
            with open(path, "rb") as fh:
                ranking = Ranking.from_bytes(fh.read())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            log.error("event=ranking_damaged project=%s version=%s error=%r", project_id,
                      version, str(exc))
            quarantine_version(self.version_dir(project_id, version))
            return None
        with self._lock:
            return self._ranking_cache.setdefault(key, ranking)

    # ------------------------------------------------------------------ audit and state
    def append_audit(self, project_id: int, record: dict) -> None:
        with self._plock(project_id):
            os.makedirs(self.project_dir(project_id), exist_ok=True)
            with open(self._path(project_id, "audit.jsonl"), "ab") as fh:
                fh.write(json.dumps(record, separators=(",", ":"), default=str).encode() + b"\n")
                fh.flush()
                os.fsync(fh.fileno())

    def audit(self, project_id: int) -> list[dict]:
        return _read_jsonl(self._path(project_id, "audit.jsonl"))

    def last_audit(self, project_id: int, status: str | None = None) -> dict | None:
        for record in reversed(self.audit(project_id)):
            if status is None or record.get("status") == status:
                return record
        return None

    def save_state(self, project_id: int, name: str, obj: Any) -> None:
        atomic_write_bytes(self._path(project_id, "state", f"{name}.pkl"),
                           pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def load_state(self, project_id: int, name: str) -> Any | None:
        try:
            with open(self._path(project_id, "state", f"{name}.pkl"), "rb") as fh:
                return pickle.load(fh)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            return None
