"""The store under hostile disks, with the real gunicorn backend (``studio-al serve``):

* disk full (``RLIMIT_FSIZE``: writes past the limit fail with EFBIG, Python ignores
  SIGXFSZ): every acknowledged webhook is a complete line of events.jsonl, every refused one
  is answered 5xx JSON and leaves nothing behind, no line is ever glued to another;
* few descriptors (``RLIMIT_NOFILE=256``) and 600 projects: the event-log descriptors stay
  bounded, the server keeps answering;
* corrupt files at boot (non-object JSON lines, project.json ``[]`` or truncated, a truncated
  state pickle): the server boots and serves, the corrupt whole files are quarantined.
"""
from __future__ import annotations

import json
import os
import pickle
import resource
from pathlib import Path

import pytest

from backend.labelconfig import parse_label_config
from backend.store import Store
from tests.reliability.harness import LABEL_CONFIG, Backend, base_env, texts, wait_for

pytestmark = pytest.mark.slow


def _limit(kind: int, value: int):
    def preexec():
        resource.setrlimit(kind, (value, value))
    return preexec


def _lines(path: Path) -> list[dict]:
    """Every line of a JSON-lines file parsed as an object: fails on a torn tail or on two
    records glued into one line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn tail in {path.name}: {data[-120:]!r}"
    out = []
    for line in data.splitlines():
        rec = json.loads(line)
        assert isinstance(rec, dict), line
        out.append(rec)
    return out


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except FileNotFoundError:
            continue
    return out


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _webhook(n: int, project: int = 1) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": project,
            "annotation": {"id": n, "task": n}}


def _assert_store_error(r) -> None:
    """A refused write: 503 (app.py maps StoreWriteError) or, until then, the generic 500
    JSON naming the typed error. Never an HTML page, never a 2xx."""
    assert r.status_code in (500, 503), (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.text
    if r.status_code == 500:
        assert r.json()["error"] == "internal error: StoreWriteError", r.text


def test_disk_full_never_acknowledges_a_lost_or_glued_event(tmp_path):
    store = tmp_path / "store"
    limit = 2048  # bytes per file: events.jsonl of project 1 is full after ~14 webhooks
    backend = Backend(base_env(MODEL_DIR=str(store)), tmp_path / "web.log",
                      preexec_fn=_limit(resource.RLIMIT_FSIZE, limit))
    try:
        backend.setup(1)
        acked, refused = [], []
        for n in range(1, 41):
            r = backend.post("/webhook", _webhook(n))
            if r.ok:
                acked.append(n)
            else:
                _assert_store_error(r)
                refused.append(n)
        # a full file does not wedge the server: another project's log still takes events
        backend.setup(2)
        r = backend.post("/webhook", _webhook(1000, project=2))
        assert r.status_code == 200, r.text
        assert backend.get("/health").status_code == 200
        assert backend.get("/status", project=1).json()["events"] == len(acked)
    finally:
        backend.proc.stop()
    log = backend.proc.log_path.read_text(errors="replace")

    assert len(acked) >= 5 and len(refused) >= 5, (acked, refused)
    assert acked == list(range(1, len(acked) + 1))  # once full, every later one is refused
    events_path = store / "1" / "events.jsonl"
    events = _lines(events_path)  # a failed append left no partial line behind
    assert [e["annotation"]["id"] for e in events] == acked  # every acked one, nothing else
    assert [e["seq"] for e in events] == list(range(1, len(acked) + 1))
    assert events_path.stat().st_size <= limit
    assert "event=append_failed" in log and "errno=EFBIG" in log and "rolled_back=yes" in log
    assert [e["annotation"]["id"] for e in _lines(store / "2" / "events.jsonl")] == [1000]
    if (store / "1" / "audit.jsonl").exists():  # rounds (failed: no Label Studio) append too
        _lines(store / "1" / "audit.jsonl")

    # Space again (no limit in this process): the next append continues the sequence on a
    # clean line, where the old code glued it to the torn half-line of the failed write.
    assert Store(str(store)).append_event(1, _webhook(99)) == len(acked) + 1
    assert [e["seq"] for e in _lines(events_path)] == list(range(1, len(acked) + 2))


def test_few_descriptors_and_600_projects(tmp_path, report):
    """600 project ids (the app may forget unconnected ones: its policy, not asserted here):
    every request answers 2xx under RLIMIT_NOFILE=256 and no process of the server holds
    200 descriptors; the old store kept one event-log descriptor per project id forever."""
    store = tmp_path / "store"
    backend = Backend(base_env(MODEL_DIR=str(store)), tmp_path / "web.log",
                      preexec_fn=_limit(resource.RLIMIT_NOFILE, 256))
    try:
        for p in range(1, 601):
            backend.setup(p)
            r = backend.post("/webhook", _webhook(p, project=p))
            assert r.status_code == 200, (p, r.status_code, r.text)
        assert backend.get("/health").status_code == 200
        r = backend.get("/status")
        assert r.status_code == 200, r.text
        listed = sorted(int(p) for p in r.json()["projects"])
        assert listed and listed[-1] == 600
        backend.setup(1)  # (again, if it was forgotten meanwhile)
        before = backend.get("/status", project=1).json()["events"]
        r = backend.post("/webhook", _webhook(601, project=1))
        assert r.status_code == 200, r.text
        assert backend.get("/status", project=1).json()["events"] == before + 1
        fds = {pid: _fds(pid) for pid in _tree(backend.proc.pid)}
        report("store_fds_600_projects", processes=len(fds), max_fds=max(fds.values()),
               fds=sorted(fds.values()), projects_on_disk=len(listed))
        assert all(n < 200 for n in fds.values()), fds
    finally:
        backend.proc.stop()
    log = backend.proc.log_path.read_text(errors="replace")
    assert "EMFILE" not in log and "Too many open files" not in log
    assert [e["annotation"]["id"] for e in _lines(store / "1" / "events.jsonl")][-1] == 601
    for p in Store(str(store)).projects():  # what the app kept (and rounds may recreate)
        if p != 1 and (store / str(p) / "events.jsonl").exists():
            assert [e["annotation"]["id"] for e in _lines(store / str(p) / "events.jsonl")] \
                == [p]


def _project_config(project: int, hostname: str | None = None, token: str | None = None
                    ) -> dict:
    return {"project": project, "label_config": LABEL_CONFIG,
            "parsed": parse_label_config(LABEL_CONFIG).to_dict(), "hostname": hostname,
            "access_token": token, "extra_params": None, "updated_at": 0.0}


def _quarantined(path: Path) -> list[Path]:
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name + ".corrupt-"))


def test_corrupt_files_at_boot(tmp_path, fake_ls):
    rows = texts(40)
    fake_ls.add_tasks(1, [t for t, _ in rows])
    ann = fake_ls.annotate(1, [{"task": t, "choice": rows[t - 1][1]} for t in range(1, 21)])
    store = tmp_path / "store"
    s = Store(str(store))
    # project 1: good config and records, with non-object lines among them, a torn state
    # (written raw: the fixture must not depend on the store under test)
    s.save_project(1, _project_config(1))
    event = {"action": "ANNOTATION_CREATED", "project": 1, "handled": "train"}
    _raw(store / "1" / "events.jsonl",
         {"seq": 1, "received_at": 1.0, **event, "annotation": {"id": ann[0], "task": 1}},
         b'[1]\n"x"\n3\n',
         {"seq": 2, "received_at": 2.0, **event, "annotation": {"id": ann[-1], "task": 20}})
    _raw(store / "1" / "audit.jsonl",
         {"status": "failed", "round": 1, "error": "before the crash"}, b'[1]\n"x"\n3\n')
    s.save_state(1, "stopping", {"rounds": 3, "task_ids": list(range(100))})
    state = store / "1" / "state" / "stopping.pkl"
    state.write_bytes(state.read_bytes()[:30])
    # project 2: project.json is valid JSON but not an object; project 3: truncated
    for p, content in ((2, b"[]"), (3, b'{"project": 3, "label_con')):
        _raw(store / str(p) / "events.jsonl", {"seq": 1, "received_at": 1.0, "project": p,
                                               "action": "PROJECT_UPDATED",
                                               "handled": "recorded"})
        (store / str(p) / "project.json").write_bytes(content)

    env = base_env(MODEL_DIR=str(store), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    try:
        assert backend.get("/health").status_code == 200
        r = backend.get("/status")
        assert r.status_code == 200, r.text
        projects = r.json()["projects"]
        assert sorted(projects) == ["1", "2", "3"]
        assert projects["1"]["set_up"] is True and projects["1"]["events"] == 2
        assert projects["2"]["set_up"] is False and projects["2"]["events"] == 1
        assert projects["3"]["set_up"] is False and projects["3"]["events"] == 1
        for p in (1, 2, 3):
            assert backend.get("/status", project=p).status_code == 200
        assert backend.get("/dashboard").status_code == 200
        for p in (2, 3):  # quarantined at boot, kept beside for inspection
            assert not (store / str(p) / "project.json").exists()
            assert len(_quarantined(store / str(p) / "project.json")) == 1
        # once project 1 is connected, its rounds train and read the torn stopping state:
        # quarantined, and the round goes on with a fresh stopping criterion
        backend.connect(fake_ls, 1)
        r = backend.post("/webhook", {"action": "ANNOTATION_CREATED", "project": 1,
                                      "annotation": {"id": ann[-1], "task": 20}})
        assert r.status_code == 200, r.text
        wait_for(lambda: _quarantined(state), 120, "the torn stopping.pkl to be quarantined",
                 interval=0.2)
        wait_for(lambda: [r for r in _lines_skipping(store / "1" / "audit.jsonl")
                          if r.get("status") == "ok" and r.get("stopping")], 120,
                 "a trained round", interval=0.2)
        ok = [r for r in _lines_skipping(store / "1" / "audit.jsonl") if r.get("status") == "ok"
              and r.get("stopping")]
        assert ok[0]["stopping"]["rounds"] == 1  # a fresh criterion, not the torn one's 3
        assert ok[0]["events_upto"] >= 2  # the events around the junk lines were read
        # a project whose config was quarantined can be set up again
        backend.setup(2)
        assert backend.get("/status", project=2).json()["set_up"] is True
        r = backend.post("/webhook", _webhook(5, project=3))  # not set up any more
        assert r.status_code == 200, r.text
    finally:
        backend.proc.stop()
    log = backend.proc.log_path.read_text(errors="replace")
    assert log.count("event=file_quarantined") == 3, log  # 2 project.json + 1 state, once each
    assert "event=jsonl_lines_skipped" in log
    assert [r for r in _lines_skipping(store / "1" / "audit.jsonl")][0]["error"] == \
        "before the crash"
    assert (_quarantined(state)[0]).read_bytes() == pickle.dumps(
        {"rounds": 3, "task_ids": list(range(100))}, protocol=pickle.HIGHEST_PROTOCOL)[:30]


def _raw(path: Path, *records) -> None:
    """Append records (dicts as JSON lines, bytes as they are) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        for r in records:
            fh.write(r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n")


def _lines_skipping(path: Path) -> list[dict]:
    """The objects of a JSON-lines file that holds deliberate junk lines."""
    out = []
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out
