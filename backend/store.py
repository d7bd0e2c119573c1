"""Per-project state on local disk: config, events, model versions, rankings, audit log.

Layout under ``MODEL_DIR``::

    <project_id>/project.json            label config + Label Studio url/token from /setup
    <project_id>/events.jsonl            every webhook, fsync'd before the webhook is acknowledged
    <project_id>/events.meta.json        {"last_seq": N}: the last sequence number ever given
                                         (written by :meth:`Store.compact_events`)
    <project_id>/versions/<v>/model.pkl  the fitted model bundle of version v
    <project_id>/versions/<v>/ranking.npz   every unlabeled task's priority and prediction
    <project_id>/current                 name of the serving version
    <project_id>/audit.jsonl             one record per training round
    <project_id>/state/<name>.pkl        pickled job state (e.g. the stopping criterion)
    <project_id>/.lock                   flock held while a round runs (one writer per project)

Every whole-file write is atomic (a temporary file in the same directory, fsync,
``os.replace``, fsync of the directory), so a crash never leaves a partial file behind;
``current`` is only switched after a version's files are complete, so a partial model is
never loaded.

The JSON-lines files (``events.jsonl``, ``audit.jsonl``) are appended under an ``flock``. A
failed or short append (disk full, ``RLIMIT_FSIZE``, I/O error) is truncated back to the size
the file had before it and raises :class:`StoreWriteError`, so nothing is acknowledged that is
not a complete line; a torn tail left by a crash is cut back to the last newline before the
next append, so a new record is never glued to it. Readers skip any line that is not a JSON
object. A whole file that cannot be parsed (``project.json``, ``state/*.pkl``,
``events.meta.json``) is renamed ``<name>.corrupt-<UTC stamp>`` beside it, logged once, and
treated as absent.

Event-log descriptors are kept open in a bounded LRU (:data:`MAX_OPEN_EVENT_LOGS` per store),
reference-counted so that an evicted descriptor is closed only once no append or fsync uses
it; the group commit counts writes per descriptor, so an fsync always covers the writes it
claims. :meth:`Store.compact_events` rewrites events.jsonl without the consumed events
(a new inode: appenders check the inode after taking the flock and re-open).
"""
from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import json
import logging
import os
import pickle
import shutil
import tempfile
import threading
import time
from typing import Any, Iterator, NamedTuple

_VERSION_PREFIX = "studio-al-"
#: The file that completes a version (``backend.ranking``).
RANKING_FILE = "ranking.npz"
EVENTS_FILE = "events.jsonl"
EVENTS_META_FILE = "events.meta.json"
AUDIT_FILE = "audit.jsonl"
#: Event-log descriptors kept open per process (least recently used ones are closed).
MAX_OPEN_EVENT_LOGS = 64
_READ_CHUNK = 1 << 20
log = logging.getLogger("studio_al.store")


class StoreWriteError(OSError):
    """An append or file write failed (disk full, file size limit, I/O error) and was rolled
    back: nothing partial is left in the file. The caller must not acknowledge the write;
    a web route answers 503 (the condition is usually temporary)."""


def _write_error(exc: OSError, path: str, what: str) -> StoreWriteError:
    if isinstance(exc, StoreWriteError):
        return exc
    return StoreWriteError(exc.errno or errno.EIO, f"{what} failed: {exc.strerror or exc}", path)


def quarantine_version(vdir: str) -> None:
    """Move a damaged version out of the way (``.corrupt-<UTC stamp>-<name>`` beside it), so
    that it is neither served nor listed, but kept for inspection."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    head, name = os.path.split(vdir.rstrip(os.sep))
    with contextlib.suppress(OSError):
        os.replace(vdir, os.path.join(head, f".corrupt-{stamp}-{name}"))


_logged_once: set[tuple] = set()
_logged_once_lock = threading.Lock()


def _log_unreadable(path: str, exc: OSError) -> None:
    """Once per path and error: the file exists but cannot be read (EISDIR, EACCES, EIO);
    the caller treats it as absent."""
    _log_once(("unreadable", path, str(exc)), logging.ERROR,
              "event=file_unreadable path=%s error=%r treated_as=absent", path, str(exc))


def _log_once(key: tuple, level: int, msg: str, *args) -> None:
    with _logged_once_lock:
        if key in _logged_once:
            return
        if len(_logged_once) > 10_000:
            _logged_once.clear()
        _logged_once.add(key)
    log.log(level, msg, *args)


def quarantine_file(path: str, reason: str, ino: int | None = None) -> str | None:
    """Rename the unreadable file ``path`` to ``<path>.corrupt-<UTC stamp>`` (kept for
    inspection), log it, and return the new path. With ``ino``, only the file with that inode
    is moved (a good file written meanwhile by another thread or process is left alone).
    None when nothing was moved (the failure is then logged once per file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if ino is not None and st.st_ino != ino:
        return None  # replaced since it was read: not the corrupt file any more
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.lexists(dest):
        n += 1
        dest = f"{path}.corrupt-{stamp}-{n}"
    try:
        os.rename(path, dest)
    except OSError as exc:
        _log_once(("quarantine_failed", path, st.st_ino), logging.ERROR,
                  "event=file_corrupt path=%s reason=%r quarantine_failed=%r treated_as=absent",
                  path, reason, str(exc))
        return None
    _fsync_dir(os.path.dirname(path))
    log.error("event=file_quarantined path=%s moved_to=%s reason=%r treated_as=absent",
              path, os.path.basename(dest), reason)
    return dest


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


@contextlib.contextmanager
def _replacing(path: str, what: str, mode: int | None = None, durable: bool = True):
    """A binary file to write ``path``'s new content into: a same-directory temp file,
    flushed, fsynced (unless not ``durable``: advisory files) and moved onto ``path``
    (``os.replace``) when the block ends (``mode`` applied first). On any error the temp file
    is removed, ``path`` is untouched and an ``OSError`` becomes :class:`StoreWriteError`
    naming ``what``."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _write_error(exc, path, what) from exc
        raise
    if durable:
        _fsync_dir(directory)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-directory temp file + ``os.replace``).
    Raises :class:`StoreWriteError` (an ``OSError``) when the disk refuses it; the old file
    is then untouched and no temporary file is left behind."""
    with _replacing(path, "atomic write") as fh:
        fh.write(data)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, separators=(",", ":")).encode())


def _record(line: bytes) -> dict | None:
    """The JSON object of one line; None for anything else (invalid JSON, ``[1]``, ``"x"``)."""
    try:
        obj = json.loads(line)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return obj if isinstance(obj, dict) else None


def _event_seq(record: dict) -> int | None:
    seq = record.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def _stamp(st: os.stat_result) -> tuple:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _iter_lines(fd: int, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """``(end offset, line)`` of every complete (newline-terminated) line of ``fd`` between
    byte ``start`` and ``stop``; read with ``pread`` in bounded chunks. An unterminated tail
    (a torn or in-progress append) is not yielded."""
    pos, buf, consumed = start, b"", start
    while pos < stop:
        data = os.pread(fd, min(_READ_CHUNK, stop - pos), pos)
        if not data:
            break
        pos += len(data)
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            consumed += len(line) + 1
            yield consumed, line


def _read_jsonl(path: str) -> list[dict]:
    """The JSON objects of a JSON-lines file, in order. A torn last line (crash mid-append) is
    skipped silently; a complete line that is not a JSON object (``[1]``, ``"x"``, garbage) is
    skipped and logged once per file."""
    out: list[dict] = []
    bad = 0
    try:
        with open(path, "rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # torn or in-progress tail
                rec = _record(line)
                if rec is None:
                    if line.strip():
                        bad += 1
                    continue
                out.append(rec)
            ino = os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return out
    except OSError as exc:  # EISDIR, EACCES, EIO: nothing readable
        _log_once(("unreadable", path, str(exc)), logging.ERROR,
                  "event=file_unreadable path=%s error=%r treated_as=empty", path, str(exc))
        return out
    if bad:
        _log_once(("bad_lines", path, ino), logging.WARNING,
                  "event=jsonl_lines_skipped path=%s skipped=%d reason=not_a_json_object",
                  path, bad)
    return out


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (a short write is continued); OSError when the disk
    refuses the rest."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write wrote nothing")
        view = view[n:]


def _rollback(fd: int, size: int, path: str, exc: OSError) -> None:
    """Cut a failed append off (back to ``size``, the file's size before it) and log it. If
    even that fails, the torn tail is repaired before the next append (see
    :func:`_repair_tail`)."""
    try:
        os.ftruncate(fd, size)
        undone = "yes"
    except OSError as texc:
        undone = f"no ({texc.strerror or texc}); repaired before the next append"
    log.error("event=append_failed path=%s errno=%s error=%r rolled_back_to=%d rolled_back=%s",
              path, errno.errorcode.get(exc.errno or 0, exc.errno), exc.strerror or str(exc),
              size, undone)


def _repair_tail(fd: int, path: str, size: int) -> int:
    """Make the file open as ``fd`` (``size`` bytes, caller holds its flock) end with a
    complete line: a torn tail (a crash or failed rollback mid-append) is truncated back to
    the last newline and logged. Returns the new size."""
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep, pos = 0, size
    while pos > 0:
        start = max(0, pos - 65536)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            break
        pos = start
    os.ftruncate(fd, keep)
    log.warning("event=torn_tail_repaired path=%s dropped_bytes=%d size=%d", path, size - keep,
                keep)
    return keep


class _SeqMark(NamedTuple):
    """What this process last saw of a project's events.jsonl: the file's ``(inode, size,
    mtime_ns)``, the last sequence number, the offset past the last complete line, the
    compaction generation, and that last line itself (to recognise the same file before
    reading on from ``end``: an inode number can be reused by a new file)."""

    key: tuple
    last: int
    end: int
    gen: int
    tail: bytes


class _LogHandle:
    """One open descriptor of a project's events.jsonl (one inode), shared by the threads
    appending to it, and its group-commit counters (an fsync of this descriptor covers
    exactly the writes made through it)."""

    __slots__ = ("fd", "dev", "ino", "refs", "retired", "closed", "written", "synced",
                 "syncing")

    def __init__(self, fd: int):
        st = os.fstat(fd)
        self.fd, self.dev, self.ino = fd, st.st_dev, st.st_ino
        self.refs = 0
        self.retired = self.closed = self.syncing = False
        self.written = self.synced = 0


class Store:
    """Thread-safe access to the per-project files under ``root``."""

    def __init__(self, root: str, max_open_logs: int = MAX_OPEN_EVENT_LOGS):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.max_open_logs = max(1, int(max_open_logs))
        self._lock = threading.RLock()
        self._project_locks: dict[int, threading.Lock] = {}
        self._project_cache: dict[int, tuple[tuple, dict]] = {}  # project -> (stat, config)
        self._seq_cache: dict[int, _SeqMark] = {}  # project -> events.jsonl as last seen
        self._event_logs: collections.OrderedDict[int, _LogHandle] = collections.OrderedDict()
        self._sync_cond = threading.Condition()
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
        """Close the open event-log descriptors (the store stays usable: they reopen). A
        descriptor in use by an append is closed when that append finishes."""
        with self._lock:
            handles = list(self._event_logs.values())
            self._event_logs.clear()
            to_close = [h for h in handles if self._retire_locked(h)]
        for h in to_close:
            with contextlib.suppress(OSError):
                os.close(h.fd)

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def open_event_logs(self) -> int:
        """How many event-log descriptors this store holds open (for tests and monitoring)."""
        with self._lock:
            return sum(1 for h in self._event_logs.values() if not h.closed)

    def _plock(self, project_id: int) -> threading.Lock:
        with self._lock:
            return self._project_locks.setdefault(int(project_id), threading.Lock())

    def projects(self) -> list[int]:
        """Ids of every project with a directory, ascending (any number of them; entries that
        are not a canonical project id, e.g. ``007`` or a stray file, are ignored)."""
        out = []
        try:
            with os.scandir(self.root) as it:
                for entry in it:
                    name = entry.name
                    if not (name.isascii() and name.isdigit()) or name != str(int(name)):
                        continue
                    with contextlib.suppress(OSError):
                        if entry.is_dir():
                            out.append(int(name))
        except FileNotFoundError:
            return []
        return sorted(out)

    def forget_project(self, project_id: int) -> None:
        """Delete the project's directory and what this store holds for it: its event-log
        descriptor (closed once no append uses it) and cached config and sequence number.
        Appends of this process wait (project lock); another process's next append re-opens
        a new log (the path no longer names its file)."""
        project_id = int(project_id)
        with self._plock(project_id):
            with self._lock:
                h = self._event_logs.pop(project_id, None)
                close = h is not None and self._retire_locked(h)
                self._project_cache.pop(project_id, None)
                self._seq_cache.pop(project_id, None)
                for cache in (self._model_cache, self._ranking_cache):
                    for key in [k for k in cache if k[0] == project_id]:
                        del cache[key]
            if close:
                with contextlib.suppress(OSError):
                    os.close(h.fd)
            shutil.rmtree(self.project_dir(project_id), ignore_errors=True)

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
        """Store the project config; returns False (and writes nothing) when unchanged.
        Raises :class:`StoreWriteError` when the disk refuses the write."""
        project_id = int(project_id)
        with self._plock(project_id):
            if self.load_project(project_id) == config:
                return False
            atomic_write_json(self._path(project_id, "project.json"), config)
            return True

    def load_project(self, project_id: int) -> dict | None:
        """The stored config (cached; re-read when another process rewrote project.json).
        None when absent; a project.json that is not a JSON object (truncated, ``[]``...) is
        quarantined (see :func:`quarantine_file`) and treated as absent."""
        project_id = int(project_id)
        path = self._path(project_id, "project.json")
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log_unreadable(path, exc)
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._project_cache.get(project_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                data = fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:  # EISDIR, EACCES, EIO
            _log_unreadable(path, exc)
            return None
        config = _record(data)
        if config is None:
            quarantine_file(path, "project.json is not a JSON object", st.st_ino)
            self._project_cache.pop(project_id, None)
            return None
        self._project_cache[project_id] = ((st.st_mtime_ns, st.st_size, st.st_ino), config)
        return config

    # ------------------------------------------------------------------ events
    def append_event(self, project_id: int, event: dict) -> int:
        """Append ``event`` to events.jsonl durably (fsync'd before returning); return its
        sequence number.

        Safe across threads and processes (several web processes in Redis mode): the write
        holds an ``flock`` on the file (re-opened first when :meth:`compact_events` replaced
        it), and the cached last sequence number is trusted only while the file still has the
        inode, size and mtime this process last saw. A torn tail (a crash mid-append) is cut
        back to the last newline before writing. A failed or short write is truncated away
        and raises :class:`StoreWriteError`: the event is then NOT recorded and must not be
        acknowledged. Concurrent appends share one ``fsync`` (group commit): each caller
        returns once an fsync of its descriptor that started after its write has completed.
        """
        project_id = int(project_id)
        path = self._path(project_id, EVENTS_FILE)
        with self._plock(project_id):
            h = self._lock_log(project_id)
            try:
                try:
                    seq = self._append_locked(project_id, h, event, path)
                finally:
                    with contextlib.suppress(OSError):
                        fcntl.flock(h.fd, fcntl.LOCK_UN)
                with self._sync_cond:
                    h.written += 1
                    ticket = h.written
            except BaseException:
                self._release(h)
                raise
        try:
            self._durable(h, ticket, path)
        finally:
            self._release(h)
        return seq

    def _append_locked(self, project_id: int, h: _LogHandle, event: dict, path: str) -> int:
        """The append itself (the caller holds the project lock and the flock)."""
        try:
            st = os.fstat(h.fd)
            size = st.st_size
            mark = self._seq_cache.get(project_id)
            if mark is None or mark.key != _stamp(st) or mark.end != size:
                # not as this process left it: another process wrote, or a crash tore it
                size = _repair_tail(h.fd, path, size)
                mark = self._scan_last_seq(project_id, h.fd, _stamp(os.fstat(h.fd)), size)
            seq = mark.last + 1
            record = {"seq": seq, "received_at": time.time(), **event}
            line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        except OSError as exc:
            raise _write_error(exc, path, "append") from exc
        try:
            _write_all(h.fd, line)
        except OSError as exc:
            self._seq_cache.pop(project_id, None)
            _rollback(h.fd, size, path, exc)
            with contextlib.suppress(OSError):  # the file is as it was: keep the cache right
                st = os.fstat(h.fd)
                if st.st_size == size == mark.end:
                    self._seq_cache[project_id] = mark._replace(key=_stamp(st))
            raise _write_error(exc, path, "append") from exc
        with contextlib.suppress(OSError):
            st = os.fstat(h.fd)
            self._seq_cache[project_id] = _SeqMark(_stamp(st), seq, st.st_size, mark.gen, line)
        return seq

    # -- descriptors: a bounded LRU of reference-counted handles
    def _open_log(self, project_id: int) -> int:
        os.makedirs(self.project_dir(project_id), exist_ok=True)
        return os.open(self._path(project_id, EVENTS_FILE),
                       os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def _acquire(self, project_id: int) -> _LogHandle:
        """The project's event-log handle, opened if needed, with one more reference; the
        least recently used handles beyond ``max_open_logs`` are retired (closed as soon as
        no append uses them)."""
        with self._lock:
            h = self._event_logs.get(project_id)
            if h is not None:
                self._event_logs.move_to_end(project_id)
                h.refs += 1
                return h
        fd = self._open_log(project_id)
        to_close: list[int] = []
        with self._lock:
            h = self._event_logs.get(project_id)
            if h is not None:  # another thread opened it meanwhile
                to_close.append(fd)
                self._event_logs.move_to_end(project_id)
            else:
                h = self._event_logs[project_id] = _LogHandle(fd)
                while len(self._event_logs) > self.max_open_logs:
                    _, old = self._event_logs.popitem(last=False)
                    if self._retire_locked(old):
                        to_close.append(old.fd)
            h.refs += 1
        for fd in to_close:
            with contextlib.suppress(OSError):
                os.close(fd)
        return h

    def _retire_locked(self, h: _LogHandle) -> bool:
        """Mark ``h`` retired (caller holds ``_lock`` and removed it from the LRU); True when
        the caller must close its descriptor now (no reference left)."""
        h.retired = True
        if h.refs == 0 and not h.closed:
            h.closed = True
            return True
        return False

    def _retire(self, project_id: int, h: _LogHandle) -> None:
        with self._lock:
            if self._event_logs.get(project_id) is h:
                del self._event_logs[project_id]
            close = self._retire_locked(h)
        if close:
            with contextlib.suppress(OSError):
                os.close(h.fd)

    def _release(self, h: _LogHandle) -> None:
        with self._lock:
            h.refs -= 1
            close = h.retired and h.refs == 0 and not h.closed
            if close:
                h.closed = True
        if close:
            with contextlib.suppress(OSError):
                os.close(h.fd)

    def _lock_log(self, project_id: int) -> _LogHandle:
        """Acquire the project's handle and ``flock`` it, making sure it is the file now at
        the path (compaction replaces the inode: a descriptor of the old file is retired and
        the path re-opened). The caller holds the project lock; returns with a reference."""
        path = self._path(project_id, EVENTS_FILE)
        try:
            h = self._acquire(project_id)
        except OSError as exc:
            raise _write_error(exc, path, "open") from exc
        try:
            for _ in range(1000):
                fcntl.flock(h.fd, fcntl.LOCK_EX)
                try:
                    st = os.stat(path)
                    if (st.st_dev, st.st_ino) == (h.dev, h.ino):
                        return h
                except FileNotFoundError:
                    pass
                fcntl.flock(h.fd, fcntl.LOCK_UN)
                self._seq_cache.pop(project_id, None)  # another file now (or none)
                self._retire(project_id, h)
                self._release(h)
                h = None
                h = self._acquire(project_id)
            raise StoreWriteError(errno.EAGAIN, "events.jsonl keeps being replaced", path)
        except OSError as exc:
            if h is not None:
                self._release(h)
            raise _write_error(exc, path, "lock") from exc

    def _durable(self, h: _LogHandle, ticket: int, path: str) -> None:
        """Return once the write numbered ``ticket`` of handle ``h`` is fsync'd (one fsync
        serves every write made through ``h`` before it started). A failed fsync raises
        :class:`StoreWriteError` (the line may or may not survive a crash)."""
        cond = self._sync_cond
        with cond:
            while h.synced < ticket:
                if h.syncing:
                    cond.wait()
                    continue
                h.syncing = True
                target = h.written
                cond.release()
                error = None
                try:
                    os.fsync(h.fd)
                except OSError as exc:
                    error = exc
                finally:
                    cond.acquire()
                    h.syncing = False
                    cond.notify_all()
                if error is not None:
                    log.error("event=fsync_failed path=%s error=%r", path, str(error))
                    raise _write_error(error, path, "fsync")
                h.synced = max(h.synced, target)

    # -- sequence numbers
    def _meta(self, project_id: int) -> tuple[int, int]:
        """``(last_seq, generation)`` of events.meta.json (``(0, 0)`` when absent; a corrupt
        one is quarantined). The generation counts compactions: a cached scan position is
        only reused within one generation."""
        path = self._path(project_id, EVENTS_META_FILE)
        try:
            with open(path, "rb") as fh:
                ino = os.fstat(fh.fileno()).st_ino
                meta = _record(fh.read())
        except FileNotFoundError:
            return 0, 0
        except OSError as exc:
            _log_unreadable(path, exc)
            return 0, -1
        seq = None if meta is None else _event_seq({"seq": meta.get("last_seq")})
        gen = None if meta is None else _event_seq({"seq": meta.get("generation", 0)})
        if seq is None or gen is None:
            quarantine_file(path, "events.meta.json has no integer last_seq", ino)
            return 0, -1
        return seq, gen

    def _scan_last_seq(self, project_id: int, fd: int, stamp: tuple, size: int) -> _SeqMark:
        """The :class:`_SeqMark` of the file open as ``fd`` (``stamp``) up to byte ``size``:
        read on from where this process last looked when it is the same file (inode,
        compaction generation and last line match) and it only grew, else from the start."""
        meta_seq, gen = self._meta(project_id)
        mark = self._seq_cache.get(project_id)
        last, start, tail = meta_seq, 0, b""
        if mark is not None and mark.key[0] == stamp[0] and mark.gen == gen >= 0 \
                and 0 < mark.end <= size and len(mark.tail) <= mark.end \
                and os.pread(fd, len(mark.tail), mark.end - len(mark.tail)) == mark.tail:
            last, start, tail = max(mark.last, meta_seq), mark.end, mark.tail
        end = start
        for end, line in _iter_lines(fd, start, size):  # noqa: B007 - end is read after the loop
            tail = line + b"\n"
            rec = _record(line)
            seq = None if rec is None else _event_seq(rec)
            if seq is not None and seq > last:
                last = seq
        return _SeqMark(stamp, last, end, gen, tail)

    def last_event_seq(self, project_id: int) -> int:
        """The sequence number of the last event ever appended (0 before the first); it
        never goes back, not even after :meth:`compact_events` dropped every event."""
        project_id = int(project_id)
        path = self._path(project_id, EVENTS_FILE)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._meta(project_id)[0]
        mark = self._seq_cache.get(project_id)
        if mark is not None and mark.key == _stamp(st):
            return mark.last
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return self._meta(project_id)[0]
        try:
            st = os.fstat(fd)
            # a torn or in-progress tail is left out: ``end`` stops at the last complete line
            mark = self._scan_last_seq(project_id, fd, _stamp(st), st.st_size)
        finally:
            os.close(fd)
        self._seq_cache[project_id] = mark
        return mark.last

    # -- reading
    def events(self, project_id: int) -> list[dict]:
        """Every event still in the log (after compaction: those newer than its ``upto``),
        oldest first; lines that are not event objects are skipped."""
        return [e for e in _read_jsonl(self._path(project_id, EVENTS_FILE))
                if _event_seq(e) is not None]

    def events_since(self, project_id: int, seq: int, limit: int = 1000) -> list[dict]:
        """At most ``limit`` events with a sequence number greater than ``seq``, oldest first
        (bounded memory: the file is streamed and reading stops at ``limit``)."""
        out: list[dict] = []
        if limit <= 0:
            return out
        try:
            fd = os.open(self._path(project_id, EVENTS_FILE), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return out
        try:
            for _, line in _iter_lines(fd, 0, os.fstat(fd).st_size):
                rec = _record(line)
                s = None if rec is None else _event_seq(rec)
                if s is not None and s > seq:
                    out.append(rec)
                    if len(out) >= limit:
                        break
        finally:
            os.close(fd)
        return out

    # -- compaction
    def compact_events(self, project_id: int, upto: int) -> int:
        """Drop the events with ``seq <= upto`` (rounds have consumed them): events.jsonl is
        rewritten atomically with the newer ones only, and events.meta.json keeps the last
        sequence number, so the next append continues after it even when every event was
        dropped. Lines that are not events and a torn tail are dropped too. Returns how many
        events were dropped (0: nothing rewritten).

        Safe against concurrent appends from this process (project lock) and from others
        (the flock of the file; an appender that waited on the old file re-opens the new
        one). ``upto`` must not exceed what every consumer has read (the last round's
        ``events_upto``)."""
        project_id = int(project_id)
        upto = int(upto)
        path = self._path(project_id, EVENTS_FILE)
        with self._plock(project_id):
            h = self._lock_log(project_id)
            try:
                try:
                    dropped, kept, last = self._compact_locked(project_id, h, upto, path)
                finally:
                    with contextlib.suppress(OSError):
                        fcntl.flock(h.fd, fcntl.LOCK_UN)
            finally:
                self._release(h)
        if dropped:
            log.info("event=events_compacted project=%s upto=%d dropped=%d kept=%d last_seq=%d",
                     project_id, upto, dropped, kept, last)
        return dropped

    def _compact_locked(self, project_id: int, h: _LogHandle, upto: int, path: str
                        ) -> tuple[int, int, int]:
        st = os.fstat(h.fd)
        size = st.st_size
        mark = self._scan_last_seq(project_id, h.fd, _stamp(st), size)
        last, gen = mark.last, mark.gen
        if not any(_event_seq(r) is not None and _event_seq(r) <= upto
                   for r in self._first_records(h.fd, size)):
            return 0, 0, last
        atomic_write_json(self._path(project_id, EVENTS_META_FILE),
                          {"last_seq": last, "generation": max(gen, 0) + 1,
                           "compacted_upto": upto, "at": time.time()})
        dropped = kept = 0
        with _replacing(path, "compaction", mode=0o644) as out:
            for _, line in _iter_lines(h.fd, 0, size):
                rec = _record(line)
                seq = None if rec is None else _event_seq(rec)
                if seq is None:
                    continue
                if seq <= upto:
                    dropped += 1
                else:
                    kept += 1
                    out.write(line + b"\n")
        self._retire(project_id, h)  # its descriptor is of the old file
        self._seq_cache.pop(project_id, None)
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                st = os.fstat(fd)
                self._seq_cache[project_id] = self._scan_last_seq(project_id, fd, _stamp(st),
                                                                  st.st_size)
            finally:
                os.close(fd)
        return dropped, kept, last

    @staticmethod
    def _first_records(fd: int, size: int) -> Iterator[dict]:
        """The records at the head of the file (enough to know whether anything is old)."""
        for _, line in _iter_lines(fd, 0, size):
            rec = _record(line)
            if rec is not None:
                yield rec

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
        """Append ``record`` to audit.jsonl (fsync'd), under an flock (rounds of several
        processes). Like :meth:`append_event`: a torn tail is repaired first, and a failed
        write is rolled back and raises :class:`StoreWriteError`."""
        line = json.dumps(record, separators=(",", ":"), default=str).encode() + b"\n"
        path = self._path(project_id, AUDIT_FILE)
        with self._plock(project_id):
            try:
                os.makedirs(self.project_dir(project_id), exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise _write_error(exc, path, "open") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = _repair_tail(fd, path, os.fstat(fd).st_size)
                try:
                    _write_all(fd, line)
                except OSError as exc:
                    _rollback(fd, size, path, exc)
                    raise _write_error(exc, path, "append") from exc
                os.fsync(fd)
            except OSError as exc:
                raise _write_error(exc, path, "audit append") from exc
            finally:
                os.close(fd)  # releases the flock

    def audit(self, project_id: int) -> list[dict]:
        return _read_jsonl(self._path(project_id, AUDIT_FILE))

    def last_audit(self, project_id: int, status: str | None = None) -> dict | None:
        for record in reversed(self.audit(project_id)):
            if status is None or record.get("status") == status:
                return record
        return None

    def save_state(self, project_id: int, name: str, obj: Any) -> None:
        atomic_write_bytes(self._path(project_id, "state", f"{name}.pkl"),
                           pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    # ------------------------------------------------------------------ the running round
    def write_progress(self, project_id: int, progress: dict | None) -> None:
        """What the running round is doing (``progress.json``: round, version, step, counts),
        for ``/status`` while it runs; None removes it (the round ended)."""
        path = self._path(project_id, "progress.json")
        if progress is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return
        with _replacing(path, "progress", durable=False) as fh:  # advisory: no fsync per step
            fh.write(json.dumps(progress, separators=(",", ":")).encode())

    def progress(self, project_id: int) -> dict | None:
        """The running round's last :meth:`write_progress`, or None."""
        try:
            with open(self._path(project_id, "progress.json"), "rb") as fh:
                return _record(fh.read())
        except OSError:
            return None

    def load_state(self, project_id: int, name: str) -> Any | None:
        """The pickled state ``name``; None when absent. A state that cannot be unpickled
        (truncated, written by an incompatible version: any exception) is quarantined and
        treated as absent."""
        path = self._path(project_id, "state", f"{name}.pkl")
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log_unreadable(path, exc)
            return None
        with fh:
            ino = os.fstat(fh.fileno()).st_ino
            try:
                return pickle.load(fh)
            except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, AttributeError...
                reason = f"unpickling failed: {type(exc).__name__}: {exc}"
        quarantine_file(path, reason, ino)
        return None
