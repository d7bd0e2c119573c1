"""Do annotators notice the backend? A timed annotation session on a real Label Studio 1.23.2.

    .venv/bin/python benchmarks/bench_annotation_session.py --tasks 100000 --db sqlite --minutes 10 \\
        [--baseline-minutes 3] [--annotators 2] [--think 2.0] [--strategy breaking_ties] \\
        [--out benchmarks/results/annotation_session] [--backend-env AL_PUSH_MAX=200 ...]

1. Label Studio (``tests/e2e/harness.start_label_studio``: fresh data dir / database), a project
   with a Text + Choices config over the labels of ``benchmarks.corpus.source_corpus(N)`` (real
   texts labelled by their source corpus), the N tasks imported in chunks of 10,000 (timed).
2. ``--annotators`` extra Label Studio users, each with its own API token, so that each has its
   own ``/next`` queue and task locks. Label Studio 1.23.2 open source has no API that creates a
   user with credentials (``POST /api/users`` makes one without a password and nobody can read
   another user's token), so ``harness.LS.create_user`` does what a browser does with an invite
   link: ``GET /api/invite`` (admin) gives the organization's invite token; ``GET
   /user/signup/?token=T`` sets the ``csrftoken`` cookie; ``POST /user/signup/?token=T`` with
   the form fields ``email``, ``password``, ``csrfmiddlewaretoken`` (= the cookie) creates the user
   in the organization and logs it in (302); that session reads the user's legacy token with
   ``GET /api/current-user/token``. (``label-studio init --username E --password P --user-token
   T`` on the data dir would also work, but needs Label Studio's environment and a Django start.)
   Note: in open source ``project.annotators()`` counts only team/project members, which nothing
   in the OSS API creates, so ``/next`` serves each user the FIRST unlocked task of the
   uncertainty order (tasks locked by another annotator are skipped), not a random one of the
   first annotators + 1.
3. Baseline (``--baseline-minutes``, no ML backend): every annotator loops ``GET /next`` (timed),
   thinks ``--think`` s (+-25 % jitter, seeded), ``POST /api/tasks/{id}/annotations`` with the
   true label (timed). Every call is recorded (``<out>_<tasks>_<db>_calls.jsonl``).
4. Backend phase: our backend (``harness.start_backend``: gunicorn ``studio-al serve``) is
   connected with ``POST /api/ml``; unless ``--no-train-on-connect``, "Start training" (``POST
   /api/ml/{id}/train``) follows at once, as an admin would, so the first round learns the
   baseline annotations. The same annotators run for ``--minutes``. A monitor samples ``GET
   /api/projects/{id}/model-versions`` every 5 s (the predictions Label Studio stores) and reads
   the backend's audit log ``<MODEL_DIR>/<project>/audit.jsonl``; a poller reads ``GET
   {backend}/status?project=ID`` every 0.25 s (cheap, does not touch Label Studio) and notes
   when each version becomes the serving ``model_version``. A version's live time is the audit's
   ``live_at`` when present, else that first sighting, else ``started_at + queue_reordered_s``.
5. Quiet end: the annotators stop (each finishes the task it holds, so no lock is left), then
   we wait (bounded, ``--quiet-timeout``) until the backend is idle and its serving version's
   audit record used every annotation created; then ``GET /next`` as one annotator must serve
   ``queued_tasks[0]`` of the backend's status (that task is then annotated, releasing the lock).
6. ``<out>_<tasks>_<db>.json`` and ``.md``: sizes, timings, ``/next`` latency baseline vs backend,
   5xx counts (seen by our clients, and ``Internal Server Error`` lines in Label Studio's log,
   which include the backend's own calls), annotation -> live version delays, predictions
   stored, rounds, and the targets:
   - ``/next`` p99 (backend phase) <= max(1 s, 2 x baseline p99);
   - zero HTTP 5xx from Label Studio in any phase after the setup (clients and log);
   - median annotation -> first live version that used it <= 5 s (never covered counts as
     infinitely late);
   - max predictions stored <= 3 x K + 50, K = the largest push of one round in the audit
     (field ``k``, else ``head``, else ``pushed``);
   - every annotation used by the final version; ``/next`` serves the backend's top task.

Exit status 0 only when every target is met. SIGTERM / Ctrl-C write partial results; Label
Studio and the backend are always stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
# _common first: it makes benchmarks.* and tests.* importable
from _common import (IMPORT_CHUNK, add_label_studio_args, command_line, create_project,
                     import_texts, machine, md_preamble, md_table, utc_now, write_results)

from benchmarks.corpus import source_corpus
from tests.e2e import harness
from tests.e2e.flows import choices_result

MONITOR_EVERY_S = 5.0
STATUS_EVERY_S = 0.25
PROGRESS_EVERY_S = 30.0
HTTP_TIMEOUT = 120.0
TARGET_NEXT_P99_FLOOR_S = 1.0
TARGET_ANN_TO_VERSION_MEDIAN_S = 5.0
# Label Studio's dev server logs every request ("django.server", even at --log-level WARNING,
# each line twice: two handlers); Django also logs "Internal Server Error: /path" for a 500
LS_ACCESS_RE = re.compile(r'^(\[[^\]]+\]) .*"(GET|POST|PATCH|PUT|DELETE|HEAD) (\S+) HTTP/[\d.]+" (\d{3}) ', re.M)
LS_5XX_RE = re.compile(r"(Internal Server Error|Service Unavailable|Bad Gateway|Gateway Timeout|"
                       r"Not Implemented|HTTP Version Not Supported): (/\S*)")


log = harness.log  # progress lines in the harness's format


def now() -> float:
    return time.time()


def endpoint_of(path: str) -> str:
    """``/api/tasks/123/annotations`` -> ``/api/tasks/{id}/annotations`` (for 5xx tallies)."""
    path = path.split("?")[0]
    return re.sub(r"/\d+(?=/|$)", "/{id}", path)


class Calls:
    """Every HTTP call of the clients, thread-safe, appended to a JSON Lines file as it happens."""

    def __init__(self, path: Path) -> None:
        self.rows: list[dict] = []
        self.lock = threading.Lock()
        self.fh = open(path, "w")

    def add(self, **row: Any) -> dict:
        with self.lock:
            self.rows.append(row)
            self.fh.write(json.dumps(row) + "\n")
            self.fh.flush()
        return row

    def select(self, phase: str | None = None, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [r for r in self.rows if (phase is None or r["phase"] == phase)
                    and (kind is None or r["kind"] == kind)]

    def close(self) -> None:
        with self.lock:
            self.fh.close()


def timed(session: requests.Session, method: str, url: str, **kw) -> tuple[requests.Response | None,
                                                                           float, float, str | None]:
    """(response or None, epoch at start, seconds, error text)."""
    t_epoch, t0 = now(), time.perf_counter()
    try:
        r = session.request(method, url, timeout=kw.pop("timeout", HTTP_TIMEOUT), **kw)
        return r, t_epoch, time.perf_counter() - t0, None
    except requests.RequestException as exc:
        return None, t_epoch, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:300]


def stats(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "p50": None, "p90": None, "p95": None, "p99": None, "max": None, "mean": None}
    a = np.asarray(values, dtype=float)
    q = lambda p: round(float(np.percentile(a, p)), 4)  # noqa: E731
    return {"count": int(a.size), "p50": q(50), "p90": q(90), "p95": q(95), "p99": q(99),
            "max": round(float(a.max()), 4), "mean": round(float(a.mean()), 4)}


class Session:
    """The whole benchmark state; ``run`` drives the phases, ``report`` writes the files."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stop_annotators = threading.Event()  # finish the task in hand, then stop
        self.abort = threading.Event()            # interrupted: stop now
        self.stop_monitor = threading.Event()
        self.phase = "setup"
        self.tmp = Path(tempfile.mkdtemp(prefix="bench_annotation_session_"))
        self.model_dir = self.tmp / "model_store"
        out = Path(args.out)
        self.out_base = out.parent / f"{out.name}_{args.tasks}_{args.db}"
        self.out_base.parent.mkdir(parents=True, exist_ok=True)
        self.calls = Calls(Path(str(self.out_base) + "_calls.jsonl"))
        self.ls_srv = self.backend = None
        self.ls: harness.LS | None = None
        self.pid: int | None = None
        self.truth: dict[str, str] = {}
        self.annotators: list[dict] = []
        self.created: list[dict] = []        # {"id", "task", "t_done", "phase", "who"}
        self.created_lock = threading.Lock()
        self.first_seen: dict[str, float] = {}   # version -> epoch first seen serving in /status
        self.last_status: dict = {}
        self.status_errors = 0
        self.audit: dict[str, dict] = {}     # version -> audit record (last line for that version)
        self.audit_order: list[str] = []
        self._audit_pos = 0
        self._audit_buf = ""
        self.pred_samples: list[dict] = []
        self.ls_log_marks: dict[str, tuple[int, int]] = {}
        self.threads: list[threading.Thread] = []
        self.result: dict[str, Any] = {
            "date": utc_now(), "command": command_line(__file__),
            "machine": machine(loadavg_at_start=os.getloadavg()),
            "label_studio": harness.LS_VERSION, "db": args.db, "tasks": args.tasks,
            "annotators": args.annotators, "think_s": args.think, "strategy": args.strategy,
            "seed": args.seed, "backend_env": dict(kv.split("=", 1) for kv in args.backend_env),
            "train_on_connect": not args.no_train_on_connect,
            "planned": {"baseline_min": args.baseline_minutes, "backend_min": args.minutes},
            "phases": {}, "complete": False,
        }
        self.loadavg_max = list(os.getloadavg())

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        a, ph = self.args, self.result["phases"]
        t = time.perf_counter()
        recs = source_corpus(a.tasks, harness.DATA_DIR, seed=a.seed)
        labels = sorted({r["label"] for r in recs})
        self.truth = {r["text"]: r["label"] for r in recs}
        self.result["labels"] = labels
        self.result["label_counts"] = {name: sum(r["label"] == name for r in recs) for name in labels}
        ph["corpus_s"] = round(time.perf_counter() - t, 2)
        log(f"corpus: {len(recs)} texts, labels {labels} ({ph['corpus_s']} s)")

        self.ls_srv = harness.start_label_studio(self.tmp / "ls-data", db=a.db)
        ph["label_studio_start_s"] = round(self.ls_srv.started_in, 2)
        self.ls = harness.LS(self.ls_srv.url, logfile=self.ls_srv.logfile)

        t = time.perf_counter()
        self.pid = create_project(self.ls, f"annotation session {a.tasks} tasks", labels)["id"]

        def progress(done: int, seconds: float) -> None:
            self._check_abort()
            log(f"imported {done}/{len(recs)} tasks (chunk {seconds} s)")
        chunks = import_texts(self.ls, self.pid, recs, progress=progress)
        ph["import_s"] = round(time.perf_counter() - t, 2)
        ph["import_chunks_s"] = chunks
        log(f"project {self.pid}: {len(recs)} tasks imported in {ph['import_s']} s")

        t = time.perf_counter()
        for i in range(a.annotators):
            email = f"annotator{i + 1}@example.com"
            uid, token = self.ls.create_user(email, "annotator12345")
            s = requests.Session()
            s.headers["Authorization"] = f"Token {token}"
            self.annotators.append({"who": email, "user_id": uid, "session": s,
                                    "rng": random.Random(a.seed * 1000 + i)})
        ph["create_users_s"] = round(time.perf_counter() - t, 2)
        self.result["annotator_users"] = [{"email": x["who"], "id": x["user_id"]} for x in self.annotators]
        log(f"created {a.annotators} annotator users in {ph['create_users_s']} s")

    # ------------------------------------------------------------------ annotators
    def annotator_loop(self, ann: dict, phase: str) -> None:
        s, who, rng = ann["session"], ann["who"], ann["rng"]
        url = self.ls.url
        while not (self.stop_annotators.is_set() or self.abort.is_set()):
            r, t0, dur, err = timed(s, "GET", f"{url}/api/projects/{self.pid}/next")
            code = None if r is None else r.status_code
            task_id = None
            if r is not None and code == 200:
                try:
                    task = r.json()
                    task_id, text = task["id"], task["data"]["text"]
                except (ValueError, KeyError, TypeError) as exc:
                    err, code = f"bad /next body: {exc}", code
                    task_id = None
            self.calls.add(phase=phase, kind="next", who=who, t=round(t0, 4), dur=round(dur, 4),
                           status=code, task=task_id, error=err if err or code != 200 else None,
                           body=None if code == 200 or r is None else r.text[:200])
            if task_id is None:
                if code == 404:  # no task left for this user
                    log(f"{who}: /next answered 404 (queue empty); stopping this annotator")
                    return
                self.abort.wait(1.0)
                continue
            label = self.truth.get(text)
            if label is None:
                log(f"{who}: task {task_id} has a text not in the corpus; skipping it")
                continue
            think = self.args.think * (1 + rng.uniform(-0.25, 0.25))
            # a stop request ends the thinking early: the task in hand is still annotated (no lock left)
            end = time.monotonic() + think
            while time.monotonic() < end and not (self.stop_annotators.is_set() or self.abort.is_set()):
                time.sleep(min(0.1, max(end - time.monotonic(), 0)))
            for attempt in range(30):
                if self.abort.is_set():
                    return
                r, t0, dur, err = timed(s, "POST", f"{url}/api/tasks/{task_id}/annotations",
                                        json={"result": choices_result([label])})
                code = None if r is None else r.status_code
                ann_id = None
                if code == 201:
                    try:
                        ann_id = r.json()["id"]
                    except (ValueError, KeyError):
                        err = "201 without an annotation id"
                self.calls.add(phase=phase, kind="annotate", who=who, t=round(t0, 4), dur=round(dur, 4),
                               status=code, task=task_id, annotation=ann_id, attempt=attempt,
                               error=err if err or code != 201 else None,
                               body=None if code == 201 or r is None else r.text[:200])
                if ann_id is not None:
                    with self.created_lock:
                        self.created.append({"id": ann_id, "task": task_id, "t_done": t0 + dur,
                                             "phase": phase, "who": who})
                    break
                if code is not None and 400 <= code < 500:
                    log(f"{who}: POST annotation on task {task_id} -> {code} {r.text[:200]}; giving up on it")
                    break
                self.abort.wait(1.0)
            else:
                log(f"{who}: POST annotation on task {task_id} failed 30 times; the task stays locked")

    def run_annotators(self, phase: str, minutes: float, mark: int | None = None) -> dict:
        self.phase = phase
        self.stop_annotators.clear()
        mark = self._ls_log_offset() if mark is None else mark
        t_start, t0 = now(), time.monotonic()
        threads = [threading.Thread(target=self.annotator_loop, args=(ann, phase), daemon=True,
                                    name=f"{phase}-{ann['who']}") for ann in self.annotators]
        for th in threads:
            th.start()
        deadline = t0 + minutes * 60
        next_progress = t0 + PROGRESS_EVERY_S
        try:
            while time.monotonic() < deadline and any(th.is_alive() for th in threads):
                time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))
                self._check_abort()
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_EVERY_S
                    self.progress(phase, time.monotonic() - t0, minutes * 60)
        finally:
            self.stop_annotators.set()
            t_stop = now()
            for th in threads:  # each finishes the task in hand (think cut short, POST retried <= 30 s)
                th.join(timeout=HTTP_TIMEOUT * 2 + 60)
            self.ls_log_marks[phase] = (mark, self._ls_log_offset())
        info = {"started_at": round(t_start, 3), "stopped_at": round(t_stop, 3),
                "ended_at": round(now(), 3), "duration_s": round(t_stop - t_start, 2),
                "wind_down_s": round(now() - t_stop, 2)}
        self.progress(phase, t_stop - t_start, minutes * 60, final=True)
        return info

    def progress(self, phase: str, elapsed: float, planned: float, final: bool = False) -> None:
        la = os.getloadavg()
        self.loadavg_max = [max(x, y) for x, y in zip(self.loadavg_max, la)]
        nxt = [c["dur"] for c in self.calls.select(phase, "next")]
        n_ann = sum(1 for c in self.created if c["phase"] == phase)
        n5 = sum(1 for c in self.calls.select(phase) if (c["status"] or 0) >= 500)
        p99 = stats(nxt)["p99"]
        extra = ""
        if phase == "backend":
            stored = self.pred_samples[-1]["total"] if self.pred_samples else None
            extra = (f", serving {self.last_status.get('model_version')}, rounds {len(self.audit_order)}, "
                     f"LS stores {stored} predictions")
        log(f"[{phase}{' done' if final else ''}] {elapsed:.0f}/{planned:.0f} s: {len(nxt)} /next "
            f"(p99 {p99} s), {n_ann} annotations, {n5} 5xx{extra}; load {la[0]:.1f}")

    # ------------------------------------------------------------------ monitor
    def read_audit(self) -> None:
        path = self.model_dir / str(self.pid) / "audit.jsonl"
        if not path.exists():
            return
        with open(path) as fh:
            fh.seek(self._audit_pos)
            chunk = fh.read()
            self._audit_pos = fh.tell()
        self._audit_buf += chunk
        lines = self._audit_buf.split("\n")
        self._audit_buf = lines.pop()  # a line still being written
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            v = rec.get("version")
            if v is None:
                continue
            if v not in self.audit:
                self.audit_order.append(v)
            rec["_seen_at"] = now()
            self.audit[v] = rec

    def monitor_loop(self) -> None:
        """Every 5 s: the predictions Label Studio stores (model-versions: cheap) and the audit log."""
        s = requests.Session()
        s.headers.update(self.ls.s.headers)
        while not self.stop_monitor.is_set():
            r, t0, dur, err = timed(s, "GET", f"{self.ls.url}/api/projects/{self.pid}/model-versions")
            code = None if r is None else r.status_code
            row = {"t": round(t0, 3), "dur": round(dur, 4), "status": code}
            if code == 200:
                try:
                    per = {str(k): int(v) for k, v in r.json().items()}
                    row.update(total=sum(per.values()), per_version=per)
                    self.pred_samples.append(row)
                except (ValueError, TypeError, AttributeError):
                    pass
            self.calls.add(phase=self.phase, kind="model_versions", who="monitor", t=row["t"],
                           dur=row["dur"], status=code, error=err if err or code != 200 else None)
            try:
                self.read_audit()
            except OSError as exc:
                log(f"monitor: reading the audit log failed: {exc}")
            self.stop_monitor.wait(MONITOR_EVERY_S)

    def status_loop(self) -> None:
        """Every 0.25 s: the backend's serving version (does not touch Label Studio)."""
        s = requests.Session()
        while not self.stop_monitor.is_set():
            try:
                r = s.get(f"{self.backend.url}/status", params={"project": self.pid}, timeout=10)
                if r.status_code == 200:
                    st = r.json()
                    v = st.get("model_version")
                    if v and v not in self.first_seen:
                        self.first_seen[v] = now()
                    self.last_status = st
            except (requests.RequestException, ValueError):
                self.status_errors += 1
            self.stop_monitor.wait(STATUS_EVERY_S)

    def start_monitors(self) -> None:
        for target in (self.monitor_loop, self.status_loop):
            th = threading.Thread(target=target, daemon=True, name=target.__name__)
            th.start()
            self.threads.append(th)

    # ------------------------------------------------------------------ backend phase
    def connect_backend(self) -> None:
        a, ph = self.args, self.result["phases"]
        extra_env = dict(kv.split("=", 1) for kv in a.backend_env)
        self.backend = harness.start_backend(self.ls_srv.url, self.model_dir, a.strategy, extra_env=extra_env)
        ph["backend_start_s"] = round(self.backend.started_in, 2)
        t = time.perf_counter()
        ml = self.ls.req("POST", "/api/ml", json={"url": self.backend.url, "project": self.pid,
                                                  "title": "studio-al"}, expect=201)
        ph["connect_s"] = round(time.perf_counter() - t, 2)
        ph["connected_at"] = round(now(), 3)
        if ml.get("state") != "CO":
            raise RuntimeError(f"ML backend not connected: {ml}")
        if not a.no_train_on_connect:
            t = time.perf_counter()
            self.ls.req("POST", f"/api/ml/{ml['id']}/train", json={}, expect=(200, 201))
            ph["train_request_s"] = round(time.perf_counter() - t, 2)
        log(f"backend {self.backend.url} connected in {ph['connect_s']} s (ML backend {ml['id']})")
        self.start_monitors()

    # ------------------------------------------------------------------ quiet end
    def quiet_end(self) -> None:
        self.phase = "quiet"
        mark = self._ls_log_offset()
        q: dict[str, Any] = {}
        self.result["quiet"] = q
        # Label Studio may serve one task to two annotators (concurrent /next calls can both pass
        # the lock check); the backend then learns the task's latest annotation: that one counts
        want = self.latest_ids()
        t0 = time.monotonic()
        rec = None
        # stop early when the backend is idle and nothing changes for --settle-idle seconds
        # (e.g. its last round failed and no new event will start another)
        fingerprint, unchanged_since = None, time.monotonic()
        next_progress = t0 + PROGRESS_EVERY_S
        while time.monotonic() - t0 < self.args.quiet_timeout:
            self._check_abort()
            self.read_audit()
            st = self.last_status
            job = st.get("job") or {}
            v = st.get("model_version")
            rec = self.audit.get(v)
            busy = job.get("state") not in ("idle", "failed", None) or job.get("rerun_pending")
            if rec and rec.get("status") == "ok" and not busy and \
                    want <= set((rec.get("labels") or {}).get("annotation_ids") or []):
                break
            fp = (busy, v, len(self.audit_order), job.get("runs"), job.get("state"))
            if fp != fingerprint:
                fingerprint, unchanged_since = fp, time.monotonic()
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                used_now = set(((rec or {}).get("labels") or {}).get("annotation_ids") or [])
                log(f"[quiet] waiting {time.monotonic() - t0:.0f} s: serving {v}, job {job.get('state')}, "
                    f"{len(self.audit_order)} rounds, {len(want - used_now)} annotation(s) not yet used")
            if not busy and time.monotonic() - unchanged_since >= self.args.settle_idle:
                q["gave_up"] = (f"backend idle ({job.get('state')}) and unchanged for "
                                f"{self.args.settle_idle:.0f} s")
                rec = None
                break
            time.sleep(0.5)
        else:
            rec = None
            q["gave_up"] = f"--quiet-timeout {self.args.quiet_timeout:.0f} s"
        q["wait_s"] = round(time.monotonic() - t0, 2)
        q["settled"] = rec is not None
        self.read_audit()
        final_v = self.last_status.get("model_version")
        final = self.audit.get(final_v) or {}
        used = set((final.get("labels") or {}).get("annotation_ids") or [])
        missing = sorted(want - used)
        self.result["final"] = {"version": final_v, "audit_status": final.get("status"),
                                "annotations_created": len(self.created),
                                "annotations_expected": len(want), "annotations_used": len(want & used),
                                "missing": missing[:50], "n_missing": len(missing),
                                "all_used": bool(want) and not missing}
        if not q["settled"]:
            log(f"quiet end: backend not settled after {q['wait_s']} s ({q.get('gave_up')}; serving {final_v}, "
                f"{len(missing)} annotation(s) not used, job {self.last_status.get('job')})")
        else:
            log(f"quiet end: backend settled after {q['wait_s']} s on {final_v}")
        # /next as one annotator must serve the backend's top task
        queued = list(self.last_status.get("queued_tasks") or [])
        ann = self.annotators[0]
        r, t, dur, err = timed(ann["session"], "GET", f"{self.ls.url}/api/projects/{self.pid}/next")
        code = None if r is None else r.status_code
        served = r.json().get("id") if code == 200 else None
        self.calls.add(phase="quiet", kind="next", who=ann["who"], t=round(t, 4), dur=round(dur, 4),
                       status=code, task=served, error=err)
        q.update(top=queued[0] if queued else None, served=served, queued_head=queued[:10],
                 served_position=queued.index(served) if served in queued else None,
                 next_s=round(dur, 4), version=final_v, next_status=code,
                 match=bool(queued) and served == queued[0])
        log(f"quiet /next served {served}; backend top {q['top']} -> match {q['match']}")
        if served is not None:  # release the lock: annotate it
            text = r.json().get("data", {}).get("text")
            rr, t, dur, err = timed(ann["session"], "POST", f"{self.ls.url}/api/tasks/{served}/annotations",
                                    json={"result": choices_result([self.truth.get(text, self.result["labels"][0])])})
            self.calls.add(phase="quiet", kind="annotate", who=ann["who"], t=round(t, 4), dur=round(dur, 4),
                           status=None if rr is None else rr.status_code, task=served, error=err)
        self.ls_log_marks["quiet"] = (mark, self._ls_log_offset())

    # ------------------------------------------------------------------ helpers
    def latest_ids(self) -> set[int]:
        """Per annotated task, the newest of our annotations (the one a round should learn)."""
        latest: dict[int, int] = {}
        for c in self.created:
            latest[c["task"]] = max(latest.get(c["task"], 0), c["id"])
        return set(latest.values())

    def _check_abort(self) -> None:
        if self.abort.is_set():
            raise KeyboardInterrupt("aborted")

    def _ls_log_offset(self) -> int:
        try:
            return self.ls_srv.logfile.stat().st_size
        except (OSError, AttributeError):
            return 0

    def ls_log_5xx(self, phase: str) -> dict:
        start, end = self.ls_log_marks.get(phase, (0, 0))
        if end <= start or self.ls_srv is None:
            return {"count": 0, "by_endpoint": {}, "requests_logged": 0, "error_lines": {}, "database_locked": 0}
        with open(self.ls_srv.logfile, "rb") as fh:
            fh.seek(start)
            text = fh.read(end - start).decode(errors="replace")
        access, seen = 0, set()
        by: dict[str, int] = {}
        for m in LS_ACCESS_RE.finditer(text):
            if m.group(0) in seen:  # the same line from the second handler
                continue
            seen.add(m.group(0))
            access += 1
            if m.group(4).startswith("5"):
                key = f"{m.group(2)} {endpoint_of(m.group(3))} {m.group(4)}"
                by[key] = by.get(key, 0) + 1
        errors: dict[str, int] = {}
        for m in LS_5XX_RE.finditer(text):
            key = f"{m.group(1)}: {endpoint_of(m.group(2))}"
            errors[key] = errors.get(key, 0) + 1
        locked = {line for line in text.splitlines() if "database is locked" in line and line.startswith("[")}
        return {"count": sum(by.values()) if access else sum(errors.values()),
                "by_endpoint": by if access else errors, "requests_logged": access,
                "error_lines": errors, "database_locked": len(locked)}

    def live_time(self, v: str) -> tuple[float | None, str | None]:
        rec = self.audit.get(v) or {}
        if isinstance(rec.get("live_at"), (int, float)):
            return float(rec["live_at"]), "audit live_at"
        if v in self.first_seen:
            return self.first_seen[v], "first seen in /status"
        if rec.get("status") == "ok" and rec.get("queue_reordered_s") is not None and rec.get("started_at"):
            return float(rec["started_at"]) + float(rec["queue_reordered_s"]), "started_at + queue_reordered_s"
        return None, None

    # ------------------------------------------------------------------ analysis
    def analyse(self) -> None:
        res = self.result
        phases = [p for p in ("baseline", "backend", "quiet") if self.calls.select(p)]
        res["next"] = {p: stats([c["dur"] for c in self.calls.select(p, "next")]) for p in phases}
        res["annotate_post"] = {p: stats([c["dur"] for c in self.calls.select(p, "annotate")]) for p in phases}
        for p in phases:
            calls = self.calls.select(p)
            res["next"][p]["errors"] = sum(1 for c in calls if c["kind"] == "next" and c["status"] != 200)
        b, k = res["next"].get("baseline") or {}, res["next"].get("backend") or {}
        res["next"]["ratio_backend_over_baseline"] = {
            q: (round(k[q] / b[q], 2) if b.get(q) and k.get(q) is not None else None)
            for q in ("p50", "p95", "p99", "max")}
        res["http_5xx"] = {}
        for p in ("baseline", "backend", "quiet"):
            by: dict[str, int] = {}
            timeouts = 0
            for c in self.calls.select(p):
                if c["status"] is None:
                    timeouts += 1
                elif c["status"] >= 500:
                    key = f"{c['kind']} {c['status']}"
                    by[key] = by.get(key, 0) + 1
            res["http_5xx"][p] = {"clients": sum(by.values()), "clients_by_call": by,
                                  "client_errors_no_response": timeouts, "ls_log": self.ls_log_5xx(p)}

        # rounds and live times
        rounds = []
        for v in self.audit_order:
            rec = self.audit[v]
            live, src = self.live_time(v) if rec.get("status") == "ok" else (None, None)
            kval = {f: rec.get(f) for f in ("k", "head", "pushed") if rec.get(f) is not None}
            rounds.append({
                "version": v, "status": rec.get("status"), "reason": rec.get("reason"),
                "error": rec.get("error"), "n_labeled": rec.get("n_labeled"),
                "n_unlabeled": rec.get("n_unlabeled"),
                "n_annotation_ids": len((rec.get("labels") or {}).get("annotation_ids") or []),
                "started_at": rec.get("started_at"), "finished_at": rec.get("finished_at"),
                "live_at": round(live, 3) if live else None, "live_source": src,
                # cross-check of live_at: when the 0.25 s /status poll first saw the version serving
                "status_seen_minus_live_s": round(self.first_seen[v] - live, 3)
                if live and v in self.first_seen else None,
                "start_to_live_s": round(live - rec["started_at"], 3) if live and rec.get("started_at") else None,
                "push": {f: (len(x) if isinstance(x, list) else x) for f, x in kval.items()},
                "timings": rec.get("timings"), "cold_start": rec.get("cold_start"),
                "missing_annotations": rec.get("missing_annotations")})
        res["rounds"] = rounds
        res["rounds_summary"] = {"total": len(rounds), "ok": sum(r["status"] == "ok" for r in rounds),
                                 "failed": sum(r["status"] != "ok" for r in rounds),
                                 "round_total_s": stats([(r["timings"] or {}).get("total") for r in rounds
                                                         if (r["timings"] or {}).get("total") is not None]),
                                 "start_to_live_s": stats([r["start_to_live_s"] for r in rounds
                                                           if r["start_to_live_s"] is not None])}
        first_live = next((r for r in rounds if r["live_at"]), None)
        connected = res["phases"].get("connected_at")
        if first_live and connected:
            res["phases"]["connect_to_first_live_s"] = round(first_live["live_at"] - connected, 2)

        # annotation -> first live version that used it (versions go live in order: the min)
        live_of = [(r["live_at"], set((self.audit[r["version"]].get("labels") or {}).get("annotation_ids") or []))
                   for r in rounds if r["live_at"]]
        latest = self.latest_ids()
        by_task: dict[int, list[dict]] = {}
        for c in self.created:
            by_task.setdefault(c["task"], []).append(c)
        dups = {t: cs for t, cs in by_task.items() if len(cs) > 1}
        res["duplicate_tasks"] = {
            "count": len(dups), "by_phase": {p: sum(1 for cs in dups.values() if cs[-1]["phase"] == p)
                                             for p in ("baseline", "backend")},
            "examples": [{"task": t, "annotations": [(c["who"], c["id"], c["phase"]) for c in cs]}
                         for t, cs in list(dups.items())[:10]]}
        delays, never, superseded = [], [], 0
        for c in self.created:
            if c["phase"] != "backend":
                continue
            if c["id"] not in latest:  # another annotator's later annotation of the same task counts
                superseded += 1
                continue
            ts = [t for t, ids in live_of if c["id"] in ids]
            if ts:
                delays.append(max(min(ts) - c["t_done"], 0.0))  # clock granularity: never negative
            else:
                never.append(c["id"])
        s = stats(delays)
        n = len(delays) + len(never)
        all_d = delays + [float("inf")] * len(never)
        median_all = float(np.median(all_d)) if all_d else None
        res["annotation_to_version"] = {
            "annotations": n, "superseded_excluded": superseded, "covered": len(delays),
            "never_covered": len(never),
            "never_covered_ids": never[:50], "median_s": s["p50"], "p90_s": s["p90"], "max_s": s["max"],
            "median_incl_never_s": None if median_all is None or median_all == float("inf")
            else round(median_all, 4), "median_incl_never_is_inf": median_all == float("inf")}

        # predictions stored
        k_vals, k_field = [], None
        for field_name in ("k", "head", "pushed"):
            vals = [r["push"][field_name] for r in rounds if isinstance(r["push"].get(field_name), int)]
            if vals:
                k_vals, k_field = vals, field_name
                break
        per_max: dict[str, int] = {}
        for smp in self.pred_samples:
            for v, c in smp["per_version"].items():
                per_max[v] = max(per_max.get(v, 0), c)
        best = max(self.pred_samples, key=lambda x: x["total"], default=None)
        res["predictions"] = {
            "samples": len(self.pred_samples), "max_total": best["total"] if best else None,
            "max_total_at": best["t"] if best else None,
            "max_total_versions": best["per_version"] if best else None,
            "max_per_version": per_max, "max_versions_stored": max((len(x["per_version"])
                                                                     for x in self.pred_samples), default=None),
            "model_versions_call_s": stats([x["dur"] for x in self.pred_samples]),
            "k_max": max(k_vals) if k_vals else None, "k_field": k_field}
        res["status_poll_errors"] = self.status_errors

        # targets
        t: dict[str, dict] = {}
        base_p99 = b.get("p99")
        limit = max(TARGET_NEXT_P99_FLOOR_S, 2 * base_p99) if base_p99 is not None else TARGET_NEXT_P99_FLOOR_S
        t["next_p99"] = {"value": k.get("p99"), "limit": round(limit, 4),
                         "met": k.get("p99") is not None and k["p99"] <= limit}
        n5 = sum(res["http_5xx"][p]["clients"] + res["http_5xx"][p]["ls_log"]["count"]
                 for p in ("baseline", "backend", "quiet"))
        t["zero_5xx"] = {"value": n5, "limit": 0, "met": n5 == 0}
        atv = res["annotation_to_version"]
        med = atv["median_incl_never_s"]
        t["annotation_to_version_median"] = {
            "value": "inf" if atv["median_incl_never_is_inf"] else med,
            "limit": TARGET_ANN_TO_VERSION_MEDIAN_S,
            "met": atv["annotations"] > 0 and med is not None and med <= TARGET_ANN_TO_VERSION_MEDIAN_S}
        kmax, stored = res["predictions"]["k_max"], res["predictions"]["max_total"]
        t["predictions_stored"] = {
            "value": stored, "limit": (3 * kmax + 50) if kmax is not None else None, "k": kmax,
            "k_field": k_field,
            "met": kmax is not None and stored is not None and stored <= 3 * kmax + 50}
        fin = res.get("final") or {}
        t["every_annotation_used"] = {"value": f"{fin.get('annotations_used')}/{fin.get('annotations_expected')}",
                                      "met": bool(fin.get("all_used"))}
        qq = res.get("quiet") or {}
        t["next_serves_top"] = {"value": {"served": qq.get("served"), "top": qq.get("top")},
                                "met": bool(qq.get("match"))}
        res["targets"] = t
        res["all_targets_met"] = all(x["met"] for x in t.values())

    # ------------------------------------------------------------------ driver
    def run(self) -> None:
        a = self.args
        self.setup()
        if a.baseline_minutes > 0:
            log(f"baseline: {a.annotators} annotators for {a.baseline_minutes} min, no backend")
            self.result["phases"]["baseline"] = self.run_annotators("baseline", a.baseline_minutes)
        self.phase = "backend"  # connecting is part of it (5xx tallies, Label Studio log)
        mark = self._ls_log_offset()
        self.ls_log_marks["backend"] = (mark, mark)  # widened as the phase goes
        self.connect_backend()
        log(f"backend phase: {a.annotators} annotators for {a.minutes} min")
        self.result["phases"]["backend"] = self.run_annotators("backend", a.minutes, mark=mark)
        self.quiet_end()
        self.result["complete"] = True

    def shutdown(self) -> None:
        self.abort.set()
        self.stop_annotators.set()
        self.stop_monitor.set()
        for th in self.threads:
            th.join(timeout=15)
        if self.backend:
            self.backend.stop()
        if self.ls_srv:
            self.ls_srv.stop()  # also drops the PostgreSQL database
        self.calls.close()

    def report(self) -> Path:
        try:
            if self.pid is not None:
                self.read_audit()
        except OSError:
            pass
        try:
            self.analyse()
        except Exception as exc:  # noqa: BLE001 - partial data must still be written
            self.result["analysis_error"] = f"{type(exc).__name__}: {exc}"
        self.result["machine"]["loadavg_at_end"] = os.getloadavg()
        self.result["machine"]["loadavg_max_sampled"] = [round(x, 2) for x in self.loadavg_max]
        self.result["files"] = {"calls": str(self.out_base) + "_calls.jsonl"}
        if self.args.keep:
            self.result["files"].update(tmp=str(self.tmp), backend_log=str(self.model_dir / "backend.log"),
                                        ls_log=str(self.tmp / "ls-data" / "ls.log"))
        return write_results(self.out_base, self.result, markdown(self.result))


# ---------------------------------------------------------------------------------------------- markdown
def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def markdown(r: dict) -> str:
    """The ``.md`` report of a session result (partial results too)."""
    ph, m = r.get("phases", {}), r["machine"]
    db = "PostgreSQL" if r["db"] == "postgres" else "SQLite"
    date = r["date"] + ("" if r.get("complete") else
                        f" - **PARTIAL** ({r.get('interrupted', 'not completed')})")
    lines = md_preamble(f"Annotation session on a {r['tasks']}-task Label Studio project ({db})",
                        date, r["command"]) + [
             f"- Label Studio {r['label_studio']} ({db}, `label-studio start`), backend `studio-al serve` "
             f"(gunicorn), strategy `{r['strategy']}`, backend env {r.get('backend_env') or '{}'}",
             f"- machine: {m['cpus']} CPUs, load average at start {_la(m.get('loadavg_at_start'))}, "
             f"max sampled {_la(m.get('loadavg_max_sampled'))}, at end {_la(m.get('loadavg_at_end'))}",
             f"- {r['annotators']} annotators (own Label Studio users), think {r['think_s']} s +-25 %, "
             f"labels {r.get('labels')}",
             f"- setup: corpus {ph.get('corpus_s')} s, Label Studio start {ph.get('label_studio_start_s')} s, "
             f"import {ph.get('import_s')} s in chunks of {IMPORT_CHUNK} ({ph.get('import_chunks_s')}), "
             f"users {ph.get('create_users_s')} s; backend start {ph.get('backend_start_s')} s, "
             f"connect {ph.get('connect_s')} s, train-on-connect {r.get('train_on_connect')}, "
             f"connect -> first live version {ph.get('connect_to_first_live_s')} s",
             f"- phases: baseline {_dur(ph.get('baseline'))}, backend {_dur(ph.get('backend'))}, "
             f"quiet wait {(r.get('quiet') or {}).get('wait_s')} s", ""]
    if "targets" in r:
        lines += ["## Targets", ""]
        lines += md_table(["target", "value", "limit", "met"],
                          [[name, _f(t.get("value")), _f(t.get("limit")), "yes" if t["met"] else "**NO**"]
                           for name, t in r["targets"].items()])
        lines += ["", f"All targets met: **{r['all_targets_met']}**", ""]
    if "next" in r:
        lines += _md_latency(r)
    if "annotation_to_version" in r:
        a = r["annotation_to_version"]
        lines += ["", "## Annotation -> live model version that used it", "",
                  f"{a['annotations']} annotations in the backend phase (not counting "
                  f"{a.get('superseded_excluded', 0)} superseded by a later annotation of the same task); "
                  f"{a['covered']} covered by a live "
                  f"version, {a['never_covered']} never. Delay from the POST returning to that version going "
                  f"live: median {_f(a['median_s'])} s, p90 {_f(a['p90_s'])} s, max {_f(a['max_s'])} s "
                  f"(median counting never-covered as infinite: "
                  f"{'inf' if a['median_incl_never_is_inf'] else _f(a['median_incl_never_s'])} s)."]
    d = r.get("duplicate_tasks")
    if d and d["count"]:
        lines += ["", f"Label Studio served {d['count']} task(s) to two annotators at once (concurrent "
                      f"`/next`; by phase {d['by_phase']}), e.g. {d['examples'][:3]}."]
    if "predictions" in r:
        p = r["predictions"]
        lines += ["", "## Predictions stored in Label Studio", "",
                  f"Max {p['max_total']} predictions at any 5 s sample ({p['samples']} samples; versions then: "
                  f"{p['max_total_versions']}); at most {p['max_versions_stored']} versions at once. "
                  f"Largest push of one round (audit `{p['k_field']}`): {p['k_max']}. "
                  f"`model-versions` call: p50 {_f((p['model_versions_call_s'] or {}).get('p50'))} s, "
                  f"max {_f((p['model_versions_call_s'] or {}).get('max'))} s."]
    lines += _md_quiet_end(r.get("final"), r.get("quiet"))
    if r.get("rounds"):
        lines += _md_rounds(r["rounds"], r["rounds_summary"])
    if r.get("analysis_error"):
        lines += ["", f"Analysis error: `{r['analysis_error']}`"]
    lines += ["", f"Every client call: `{(r.get('files') or {}).get('calls')}`."]
    return "\n".join(lines) + "\n"


def _md_latency(r: dict) -> list[str]:
    """``/next`` and annotation POST latency per phase, and the 5xx tallies."""
    ratio = r["next"].get("ratio_backend_over_baseline") or {}
    lines = ["## `GET /next` latency (s)", ""]
    lines += md_table(["phase", "count", "errors", "p50", "p95", "p99", "max"],
                      [[p, s["count"], s.get("errors"), _f(s["p50"]), _f(s["p95"]), _f(s["p99"]),
                        _f(s["max"])] for p in ("baseline", "backend", "quiet")
                       if (s := r["next"].get(p))])
    lines.append("| backend / baseline | | | "
                 + " | ".join(_f(ratio.get(q), 2) for q in ("p50", "p95", "p99", "max")) + " |")
    lines += ["", "`POST /api/tasks/{id}/annotations` (s):", ""]
    lines += md_table(["phase", "count", "p50", "p95", "p99", "max"],
                      [[p, s["count"], _f(s["p50"]), _f(s["p95"]), _f(s["p99"]), _f(s["max"])]
                       for p, s in (r.get("annotate_post") or {}).items()])
    lines += ["", "## HTTP 5xx from Label Studio", "",
              "Clients = our annotators and monitor; Label Studio's log = its access log (every caller, "
              "including the backend), or its `Internal Server Error` lines if it has no access log.", ""]
    lines += md_table(["phase", "seen by our clients", "no response",
                       "5xx in Label Studio's log (of requests logged)", "by endpoint (log)",
                       "'database is locked' errors in log"],
                      [[p, f"{h['clients']} {h['clients_by_call'] or ''}", h["client_errors_no_response"],
                        f"{h['ls_log']['count']} (of {h['ls_log'].get('requests_logged')})",
                        h["ls_log"]["by_endpoint"] or "", h["ls_log"]["database_locked"]]
                       for p, h in (r.get("http_5xx") or {}).items()])
    return lines


def _md_quiet_end(fin: dict | None, q: dict | None) -> list[str]:
    if not (fin or q):
        return []
    lines = ["", "## Quiet end", ""]
    if fin:
        lines.append(f"- final version {fin['version']} ({fin['audit_status']}): used "
                     f"{fin['annotations_used']}/{fin.get('annotations_expected')} annotations (the newest "
                     f"per task; {fin['annotations_created']} created)"
                     + (f"; missing ids {fin['missing'][:10]}" if fin['n_missing'] else ""))
    if q:
        lines.append(f"- backend settled: {q.get('settled')} after {q.get('wait_s')} s"
                     + (f" (gave up: {q['gave_up']})" if q.get("gave_up") else "") + "; `/next` served "
                     f"{q.get('served')} ({_f(q.get('next_s'))} s), backend top {q.get('top')} "
                     f"(position in queued_tasks: {q.get('served_position')}) -> match {q.get('match')}")
    return lines


def _md_rounds(rounds: list[dict], rs: dict) -> list[str]:
    """The rounds table (the first 20 and the last 19 when there are more than 40)."""
    lines = ["", "## Rounds", "",
             f"{rs['total']} rounds ({rs['ok']} ok, {rs['failed']} failed); round total p50 "
             f"{_f(rs['round_total_s']['p50'])} s, max {_f(rs['round_total_s']['max'])} s; start -> live p50 "
             f"{_f(rs['start_to_live_s']['p50'])} s, max {_f(rs['start_to_live_s']['max'])} s.", ""]
    table = md_table(
        ["version", "status", "labeled", "annotations used", "start->live s", "live source", "push",
         "timings (s)"],
        [[row["version"], f"{row['status']}{' ' + str(row['error'])[:80] if row['error'] else ''}",
          row["n_labeled"], row["n_annotation_ids"], _f(row["start_to_live_s"]),
          row["live_source"] or "-", row["push"] or "-",
          ", ".join(f"{k} {v}" for k, v in (row.get("timings") or {}).items())]
         for row in rounds])
    if len(rounds) > 40:  # header, separator, the first 20, the last 19
        table = table[:22] + ["| ... | | | | | | | |"] + table[-19:]
    return lines + table


def _la(x) -> str:
    return "-" if not x else "/".join(f"{v:.2f}" for v in x)


def _dur(p: dict | None) -> str:
    return "-" if not p else f"{p['duration_s']} s (+{p['wind_down_s']} s wind-down)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_label_studio_args(ap, tasks=100_000, out="annotation_session")
    ap.add_argument("--minutes", type=float, default=10.0, help="backend phase length")
    ap.add_argument("--baseline-minutes", type=float, default=3.0, help="baseline phase length (0: none)")
    ap.add_argument("--annotators", type=int, default=2)
    ap.add_argument("--think", type=float, default=2.0, help="seconds per annotation (+-25%% jitter)")
    ap.add_argument("--strategy", default="breaking_ties")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet-timeout", type=float, default=900.0,
                    help="max seconds to wait for the backend to settle at the end")
    ap.add_argument("--settle-idle", type=float, default=60.0,
                    help="at the end, stop waiting once the backend is idle and unchanged this long")
    ap.add_argument("--backend-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the backend (repeatable), e.g. AL_PUSH_MAX=200")
    ap.add_argument("--no-train-on-connect", action="store_true",
                    help="do not press 'Start training' after connecting the backend")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs (logs, audit)")
    args = ap.parse_args()
    if args.annotators < 1 or args.tasks < 1 or args.minutes <= 0 or args.think < 0:
        ap.error("--annotators, --tasks and --minutes must be positive, --think >= 0")
    for kv in args.backend_env:
        if "=" not in kv:
            ap.error(f"--backend-env {kv!r}: expected KEY=VALUE")

    sess = Session(args)

    def on_term(signum, frame):
        sess.abort.set()
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    try:
        sess.run()
    except KeyboardInterrupt as exc:
        sess.result["interrupted"] = f"interrupted ({exc or 'Ctrl-C'}) during {sess.phase}"
        log(sess.result["interrupted"] + "; writing partial results")
    except Exception as exc:  # noqa: BLE001 - still write what we have
        sess.result["interrupted"] = f"{type(exc).__name__}: {exc} during {sess.phase}"
        log(f"failed: {sess.result['interrupted']}")
        import traceback
        traceback.print_exc()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # do not interrupt the clean-up
        try:
            sess.shutdown()
        finally:
            js = sess.report()
            if not args.keep:
                shutil.rmtree(sess.tmp, ignore_errors=True)
            log(f"results: {js} and {js.with_suffix('.md')}")
    return 0 if sess.result.get("complete") and sess.result.get("all_targets_met") else 1


if __name__ == "__main__":
    sys.exit(main())
