"""A per-project copy of Label Studio's tasks (ids, texts, labels), kept on ``MODEL_DIR``.

Listing every task of a project costs Label Studio ~1.5 ms per task (a 100k-task project:
2.5 minutes of database reads), so a round must never do it. The mirror lists each task once
and is then kept up to date by bounded reads:

* **hints**: the webhooks since the last round name the tasks whose annotations changed
  (``ANNOTATION_CREATED/UPDATED``: the task; ``ANNOTATIONS_DELETED``: the tasks of those
  annotations, found in the mirror; ``TASKS_DELETED``: the tasks). Hints are never trusted
  data: the named tasks are re-read from Label Studio (:meth:`TaskMirror.apply_hints`, at most
  ``max_tasks`` per round); a hinted annotation that is not visible yet keeps its task pending
  for a few rounds, an id Label Studio does not know is dropped.
* **new tasks**: one keyset page ``id > max_id`` per round (~0.09 s when there is none). The
  first listing of a large project (100k tasks: ~4 minutes of Label Studio time) goes on one
  page per round while annotators are busy, and within a time budget when no newer round is
  waiting (:meth:`TaskMirror.list_new`); rounds rank the tasks mirrored so far meanwhile.
* **reconciliation** at a bounded rate (:meth:`TaskMirror.reconcile`): one page of annotated
  tasks and one page of all tasks per round, cycling over the project, catch what no webhook
  told (an annotation made while the backend was down, an edited text, a deleted task).

Files under ``<MODEL_DIR>/<project>/mirror/``: ``tasks.log`` (append-only JSON lines
``{"i": id, "t": text}``; ``{"i": id, "n": 1}`` a task without the text field; ``{"i": id,
"x": 1}`` a deleted task; compacted when mostly garbage) and ``state.json`` (labels, cursors,
pending hints; rewritten atomically). Only rounds write it, under the project's round lock, so
embedded rounds and RQ workers share it; an open mirror is cached per process and re-reads
only what another process appended.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from backend.labelconfig import LabelConfig
from backend.labels import task_label, task_text
from backend.store import atomic_write_bytes

log = logging.getLogger("studio_al.mirror")

#: Tasks per keyset page of the task listing (~0.4 s of Label Studio time at 100k tasks).
LIST_PAGE = 250
#: Tasks per page of the annotated-task listing (with annotations and predictions).
ANNOTATED_PAGE = 100
#: Pause between two listing pages, so that annotators' writes get Label Studio's database.
PAGE_PAUSE_S = 0.05
#: Rounds a hinted annotation may stay invisible before the hint is dropped.
HINT_ATTEMPTS = 3
#: Most pending task ids kept (beyond: the oldest are dropped; reconciliation catches up).
MAX_PENDING = 5000


@dataclass
class Hints:
    """What the webhooks since the last round say changed (validated ids only)."""

    task_ids: set[int] = field(default_factory=set)
    expected: dict[int, int] = field(default_factory=dict)  # annotation id -> task id
    deleted_annotations: set[int] = field(default_factory=set)
    deleted_tasks: set[int] = field(default_factory=set)
    config_changed: bool = False

    @classmethod
    def from_events(cls, events: Iterable[dict]) -> "Hints":
        h = cls()
        for ev in events:
            action = ev.get("action")
            ann = ev.get("annotation") if isinstance(ev.get("annotation"), dict) else {}
            tid = ev.get("task_id") if isinstance(ev.get("task_id"), int) else ann.get("task")
            if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
                if isinstance(tid, int):
                    h.task_ids.add(tid)
                    if isinstance(ann.get("id"), int):
                        h.expected[ann["id"]] = tid
            elif action == "ANNOTATIONS_CREATED":
                h.task_ids.update(t for t in ev.get("task_ids") or [] if isinstance(t, int))
            elif action == "ANNOTATIONS_DELETED":
                h.deleted_annotations.update(a for a in ev.get("annotation_ids") or []
                                             if isinstance(a, int))
            elif action == "TASKS_DELETED":
                h.deleted_tasks.update(t for t in ev.get("task_ids") or [] if isinstance(t, int))
            elif action == "PROJECT_UPDATED" and ev.get("config_changed"):
                h.config_changed = True
        for aid in h.deleted_annotations:
            h.expected.pop(aid, None)
        return h


class TaskMirror:
    """The mirror of one project (see the module docstring). Open with :meth:`open`."""

    def __init__(self, directory: str):
        self.directory = directory
        self.field: str | None = None
        self.texts: dict[int, str] = {}
        self.no_text: set[int] = set()
        self.labels: dict[int, Any] = {}        # task -> label name, or list of names
        self.label_ann: dict[int, int] = {}     # task -> annotation id giving its label
        self.ann_task: dict[int, int] = {}      # every annotation id seen -> its task
        self.max_id = 0
        self.complete = False                   # every task up to max_id listed once
        self.annotated_complete = False         # the annotated tasks were listed once
        self.annotated_cursor = 0
        self.data_cursor = 0
        self.pending: dict[int, int] = {}       # task -> rounds it waited for a hint
        self.expected: dict[int, list[int]] = {}  # annotation id -> [task, attempts]
        self.changed_texts: set[int] = set()    # tasks whose text changed since the last round
        self.events_upto = 0                    # last webhook event applied as a hint
        self.recent: list[list] = []            # [received_at, annotator] of recent annotations
        self.reconciled_at = 0.0
        self._log_size = 0
        self._log_ino = None
        self._garbage = 0
        self._lines: list[bytes] = []
        self._dirty = False

    # ------------------------------------------------------------------ files
    @property
    def _log(self) -> str:
        return os.path.join(self.directory, "tasks.log")

    @property
    def _state(self) -> str:
        return os.path.join(self.directory, "state.json")

    _cache: dict[str, "TaskMirror"] = {}
    _cache_lock = threading.Lock()

    @classmethod
    def open(cls, directory: str) -> "TaskMirror":
        """The mirror in ``directory``: this process's cached copy, brought up to date with
        what another process appended, or read from disk."""
        with cls._cache_lock:
            mirror = cls._cache.get(directory)
        if mirror is None or not mirror._refresh():
            mirror = cls(directory)
            mirror._load()
        with cls._cache_lock:
            cls._cache[directory] = mirror
        return mirror

    def _refresh(self) -> bool:
        """Catch up with the files; False when a full reload is needed."""
        try:
            st = os.stat(self._log)
        except FileNotFoundError:
            return self._log_ino is None and not os.path.exists(self._state)
        if st.st_ino != self._log_ino or st.st_size < self._log_size:
            return False
        if st.st_size > self._log_size:
            self._read_log(self._log_size)
        self._read_state()
        return True

    def _load(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        self._read_log(0)
        self._read_state()

    def _read_log(self, offset: int) -> None:
        try:
            fh = open(self._log, "rb")
        except FileNotFoundError:
            return
        with fh:
            self._log_ino = os.fstat(fh.fileno()).st_ino
            fh.seek(offset)
            pos = offset
            for line in fh:
                if not line.endswith(b"\n"):
                    break  # a torn last line (crash mid-append): ignored and overwritten
                pos += len(line)
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    self._replay(json.loads(line))
            self._log_size = pos

    def _replay(self, rec: dict) -> None:
        tid = int(rec["i"])
        if tid in self.texts or tid in self.no_text:
            self._garbage += 1
        self.texts.pop(tid, None)
        self.no_text.discard(tid)
        if "t" in rec:
            self.texts[tid] = str(rec["t"])
        elif "n" in rec:
            self.no_text.add(tid)
        else:
            self._garbage += 1

    def _read_state(self) -> None:
        try:
            with open(self._state, "rb") as fh:
                s = json.load(fh)
        except (FileNotFoundError, ValueError):
            return
        if not isinstance(s, dict):
            return
        self.field = s.get("field")
        self.labels = {int(k): v for k, v in (s.get("labels") or {}).items()}
        self.label_ann = {int(k): int(v) for k, v in (s.get("label_ann") or {}).items()}
        self.ann_task = {int(k): int(v) for k, v in (s.get("ann_task") or {}).items()}
        self.max_id = int(s.get("max_id") or 0)
        self.complete = bool(s.get("complete"))
        self.annotated_complete = bool(s.get("annotated_complete"))
        self.annotated_cursor = int(s.get("annotated_cursor") or 0)
        self.data_cursor = int(s.get("data_cursor") or 0)
        self.pending = {int(k): int(v) for k, v in (s.get("pending") or {}).items()}
        self.expected = {int(k): [int(v[0]), int(v[1])] for k, v in
                         (s.get("expected") or {}).items()}
        self.events_upto = int(s.get("events_upto") or 0)
        self.recent = [list(x) for x in s.get("recent") or []]
        self.reconciled_at = float(s.get("reconciled_at") or 0.0)

    def save(self) -> None:
        """Append the new log lines (fsync'd) and rewrite ``state.json`` atomically."""
        os.makedirs(self.directory, exist_ok=True)
        if self._lines:
            data = b"".join(self._lines)
            with open(self._log, "ab") as fh:
                if fh.tell() != self._log_size:  # a torn tail left by a crash: cut it off
                    fh.truncate(self._log_size)
                    fh.seek(self._log_size)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
                self._log_ino = os.fstat(fh.fileno()).st_ino
            self._log_size += len(data)
            self._lines = []
            if self._garbage > max(1000, len(self.texts)):
                self._compact()
        if self._dirty:
            state = {"field": self.field, "labels": {str(k): v for k, v in self.labels.items()},
                     "label_ann": {str(k): v for k, v in self.label_ann.items()},
                     "ann_task": {str(k): v for k, v in self.ann_task.items()},
                     "max_id": self.max_id, "complete": self.complete,
                     "annotated_complete": self.annotated_complete,
                     "annotated_cursor": self.annotated_cursor, "data_cursor": self.data_cursor,
                     "pending": {str(k): v for k, v in self.pending.items()},
                     "expected": {str(k): v for k, v in self.expected.items()},
                     "events_upto": self.events_upto, "recent": self.recent,
                     "reconciled_at": self.reconciled_at}
            atomic_write_bytes(self._state, json.dumps(state, separators=(",", ":")).encode())
            self._dirty = False

    def _compact(self) -> None:
        lines = [json.dumps({"i": t, "t": x}, separators=(",", ":")).encode() + b"\n"
                 for t, x in self.texts.items()]
        lines += [json.dumps({"i": t, "n": 1}).encode() + b"\n" for t in self.no_text]
        data = b"".join(lines)
        atomic_write_bytes(self._log, data)
        st = os.stat(self._log)
        self._log_ino, self._log_size, self._garbage = st.st_ino, st.st_size, 0

    def reset(self, text_field: str) -> None:
        """Forget everything (the label config's text field changed)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.__init__(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        self.field = text_field
        self._dirty = True

    # ------------------------------------------------------------------ updates
    def _set_text(self, tid: int, text: str | None) -> None:
        if text is None:
            if tid in self.no_text:
                return
            self.texts.pop(tid, None)
            self.no_text.add(tid)
            self._lines.append(json.dumps({"i": tid, "n": 1}).encode() + b"\n")
            return
        old = self.texts.get(tid)
        if old == text:
            return
        if old is not None:
            self.changed_texts.add(tid)
        self.no_text.discard(tid)
        self.texts[tid] = text
        self._lines.append(json.dumps({"i": tid, "t": text}, separators=(",", ":")).encode()
                           + b"\n")

    def _remove(self, tid: int) -> None:
        if tid in self.texts or tid in self.no_text:
            self.texts.pop(tid, None)
            self.no_text.discard(tid)
            self._lines.append(json.dumps({"i": tid, "x": 1}).encode() + b"\n")
        self._unlabel(tid)
        self.pending.pop(tid, None)

    def _unlabel(self, tid: int) -> None:
        if self.labels.pop(tid, None) is not None or self.label_ann.pop(tid, None) is not None:
            self._dirty = True

    def _update_task(self, task: dict, cfg: LabelConfig) -> None:
        """Text and label of a task read from Label Studio with its annotations."""
        tid = int(task["id"])
        self._set_text(tid, task_text(task, cfg))
        for a in task.get("annotations") or []:
            if isinstance(a.get("id"), int):
                self.ann_task[a["id"]] = tid
                self.expected.pop(a["id"], None)
        label, ann_id = task_label(task, cfg)
        if label is None:
            self._unlabel(tid)
        elif self.labels.get(tid) != label or self.label_ann.get(tid) != ann_id:
            self.labels[tid], self.label_ann[tid] = label, ann_id
        self._dirty = True

    # ------------------------------------------------------------------ sync steps
    def apply_hints(self, client, pid: int, cfg: LabelConfig, hints: Hints,
                    max_tasks: int = 200) -> dict:
        """Re-read the tasks the hints name (this round's first, then older pending ones; at
        most ``max_tasks``). Returns ``{"reread", "deleted", "waiting", "dropped"}``."""
        for aid, tid in hints.expected.items():
            if aid not in self.ann_task:
                self.expected.setdefault(aid, [tid, 0])
        fresh = set(hints.task_ids) | set(hints.deleted_tasks)
        fresh |= {self.ann_task[a] for a in hints.deleted_annotations if a in self.ann_task}
        fresh |= {t for t, _ in self.expected.values()}
        order = sorted(fresh) + sorted(set(self.pending) - fresh)
        batch = order[:max_tasks]
        for tid in order[max_tasks:]:
            self.pending.setdefault(tid, 0)
        report = {"reread": len(batch), "deleted": 0, "waiting": 0, "dropped": 0}
        if not batch:
            return report
        got = {t["id"]: t for t in client.fetch_tasks_by_id(pid, batch)}
        for tid in batch:
            self.pending.pop(tid, None)
            if tid in got:
                self._update_task(got[tid], cfg)
            elif tid in self.texts or tid in self.no_text or tid in self.labels:
                self._remove(tid)
                report["deleted"] += 1
        for aid, (tid, attempts) in list(self.expected.items()):
            if tid in got or tid not in self.texts:
                attempts += 1
                if attempts >= HINT_ATTEMPTS or tid not in self.texts:
                    del self.expected[aid]  # forged, or gone: reconciliation has the last word
                    report["dropped"] += 1
                    continue
                self.expected[aid] = [tid, attempts]
                self.pending[tid] = attempts
                report["waiting"] += 1
        if len(self.pending) > MAX_PENDING:
            for tid in sorted(self.pending)[:len(self.pending) - MAX_PENDING]:
                del self.pending[tid]
        self._dirty = True
        return report

    def list_new(self, client, pid: int, cfg: LabelConfig, budget_s: float,
                 max_pages: int | None = None) -> dict:
        """List tasks with ``id > max_id`` page by page until a short page (then the mirror
        is complete), ``budget_s`` is spent or ``max_pages`` were read. One page at least."""
        t0 = time.monotonic()
        listed = pages = 0
        while True:
            page = client.list_tasks(pid, after_id=self.max_id, limit=LIST_PAGE)
            pages += 1
            for task in page:
                self._set_text(int(task["id"]), task_text(task, cfg))
                self.max_id = max(self.max_id, int(task["id"]))
            listed += len(page)
            if len(page) < LIST_PAGE:
                self.complete = True
                break
            if time.monotonic() - t0 >= budget_s or (max_pages and pages >= max_pages):
                break
            time.sleep(PAGE_PAUSE_S)
        self._dirty = True
        return {"listed": listed, "pages": pages, "complete": self.complete}

    def list_annotated(self, client, pid: int, cfg: LabelConfig, budget_s: float,
                       max_pages: int | None = None) -> dict:
        """Read annotated tasks page by page from ``annotated_cursor`` (wrapping at the
        end): labels of tasks returned are refreshed, and a mirrored label of a task in the
        covered id range that Label Studio no longer lists as annotated is dropped."""
        t0 = time.monotonic()
        read = pages = 0
        while True:
            low = self.annotated_cursor
            page = client.list_annotated_tasks(pid, after_id=low, limit=ANNOTATED_PAGE)
            pages += 1
            read += len(page)
            for task in page:
                self._update_task(task, cfg)
            high = max((int(t["id"]) for t in page), default=None)
            done = len(page) < ANNOTATED_PAGE
            seen = {int(t["id"]) for t in page}
            for tid in [t for t in self.labels if t > low and (done or t <= high) and t not in seen]:
                self._unlabel(tid)
            if done:
                self.annotated_cursor, self.annotated_complete = 0, True
            else:
                self.annotated_cursor = high
            self._dirty = True
            if done or time.monotonic() - t0 >= budget_s or (max_pages and pages >= max_pages):
                break
            time.sleep(PAGE_PAUSE_S)
        return {"annotated_read": read, "annotated_pages": pages}

    def reconcile(self, client, pid: int, cfg: LabelConfig) -> dict:
        """One page of annotated tasks and one page of all tasks from their cursors: edited
        texts and deleted tasks in the covered id range are brought in line."""
        report = self.list_annotated(client, pid, cfg, budget_s=0.0, max_pages=1)
        low = self.data_cursor
        page = client.list_tasks(pid, after_id=low, limit=LIST_PAGE)
        seen = set()
        for task in page:
            tid = int(task["id"])
            seen.add(tid)
            self._set_text(tid, task_text(task, cfg))
        done = len(page) < LIST_PAGE
        high = max(seen, default=low)
        gone = [t for t in list(self.texts) + list(self.no_text)
                if t > low and (done or t <= high) and t not in seen and t <= self.max_id]
        for tid in gone:
            self._remove(tid)
        self.data_cursor = 0 if done else high
        self._dirty = True
        return {**report, "reconciled": len(page), "removed": len(gone)}

    def note_events(self, events: list[dict], upto: int, now: float, window: float) -> None:
        """Remember the annotation times and annotators of ``events`` (for the head size)
        and that hints up to ``upto`` were applied."""
        for ev in events:
            if ev.get("action") == "ANNOTATION_CREATED" and \
                    isinstance(ev.get("received_at"), (int, float)):
                user = (ev.get("annotation") or {}).get("completed_by")
                self.recent.append([float(ev["received_at"]),
                                    user if isinstance(user, int) else None])
        self.recent = [r for r in self.recent if r[0] >= now - window][-2000:]
        self.events_upto = max(self.events_upto, int(upto))
        self._dirty = True

    @property
    def lists_before_training(self) -> bool:
        """A round lists one page before it trains only to see new tasks (the mirror is
        complete) or to have a first page to rank; the first listing of a large project goes
        on after the push, so that annotators never wait for it."""
        return self.complete or len(self.texts) < LIST_PAGE

    # ------------------------------------------------------------------ reading
    def snapshot(self) -> tuple[np.ndarray, list[str], list[Any], list[int]]:
        """``(ids, texts, labels, annotation_ids)``: every task with a text, ordered by id;
        labels aligned (None = unlabeled); the annotation ids giving the labels."""
        ids = np.fromiter(sorted(self.texts), dtype=np.int64, count=len(self.texts))
        texts = [self.texts[t] for t in ids.tolist()]
        labels = [self.labels.get(t) for t in ids.tolist()]
        ann = [self.label_ann[t] for t in ids.tolist() if t in self.labels and t in self.label_ann]
        return ids, texts, labels, ann
