"""Store: atomic writes, restart survival, no partial models, thread safety."""
import json
import os
import threading

import pytest

from backend import store as store_mod
from backend.store import Store, atomic_write_bytes


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_bytes(str(path), b"old")

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_bytes(str(path), b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # temp file cleaned up


def test_restart_survival(tmp_path):
    s = Store(str(tmp_path))
    s.save_project(3, {"label_config": "<View/>", "hostname": "http://ls"})
    assert s.append_event(3, {"action": "A"}) == 1
    assert s.append_event(3, {"action": "B"}) == 2
    v = s.new_version_name(3, now=0)
    assert v == "studio-al-0001-19700101T000000"
    s.write_version(3, v, {"model": [1, 2]}, {7: {"score": 0.0, "labels": ["x"],
                                                  "confidence": 0.9}})
    s.set_current(3, v)
    s.append_audit(3, {"version": v, "status": "ok", "events_upto": 2})
    s.save_state(3, "stopping", {"rounds": 1})

    s2 = Store(str(tmp_path))  # a new process
    assert s2.projects() == [3]
    assert s2.load_project(3)["hostname"] == "http://ls"
    assert s2.last_event_seq(3) == 2 and s2.append_event(3, {"action": "C"}) == 3
    assert s2.current(3) == v and s2.versions(3) == [v]
    assert s2.load_model(3, v) == {"model": [1, 2]}
    assert s2.load_ranking(3, v) == {"7": {"score": 0.0, "labels": ["x"], "confidence": 0.9}}
    assert s2.last_audit(3)["version"] == v and s2.load_state(3, "stopping") == {"rounds": 1}
    assert s2.new_version_name(3, now=0) == "studio-al-0002-19700101T000000"


def test_torn_last_line_is_skipped(tmp_path):
    s = Store(str(tmp_path))
    s.append_event(1, {"action": "A"})
    with open(tmp_path / "1" / "events.jsonl", "ab") as fh:
        fh.write(b'{"seq": 2, "act')  # crash mid-append
    s2 = Store(str(tmp_path))
    assert [e["action"] for e in s2.events(1)] == ["A"]
    assert s2.append_event(1, {"action": "B"}) == 2


def test_incomplete_version_cannot_become_current(tmp_path):
    s = Store(str(tmp_path))
    os.makedirs(tmp_path / "1" / "versions" / "studio-al-0001-x")
    (tmp_path / "1" / "versions" / "studio-al-0001-x" / "model.pkl").write_bytes(b"partial")
    with pytest.raises(FileNotFoundError, match="incomplete"):
        s.set_current(1, "studio-al-0001-x")
    assert s.current(1) is None and s.versions(1) == []


def test_save_project_skips_unchanged(tmp_path):
    s = Store(str(tmp_path))
    assert s.save_project(1, {"a": 1}) is True
    mtime = os.stat(tmp_path / "1" / "project.json").st_mtime_ns
    assert s.save_project(1, {"a": 1}) is False
    assert os.stat(tmp_path / "1" / "project.json").st_mtime_ns == mtime


def test_prune_keeps_newest_and_current(tmp_path):
    s = Store(str(tmp_path))
    names = [f"studio-al-000{i}-t" for i in range(1, 5)]
    for n in names:
        s.write_version(1, n, None, {})
    s.set_current(1, names[0])
    assert s.prune_versions(1, keep=2) == [names[1]]
    assert s.versions(1) == [names[0], names[2], names[3]]


def test_invalid_version_names(tmp_path):
    s = Store(str(tmp_path))
    for bad in ["", "../x", ".hidden"]:
        with pytest.raises(ValueError):
            s.version_dir(1, bad)


def test_concurrent_appends_get_unique_sequence_numbers(tmp_path):
    s = Store(str(tmp_path))
    seqs, lock = [], threading.Lock()

    def worker():
        for _ in range(25):
            seq = s.append_event(1, {"action": "X"})
            with lock:
                seqs.append(seq)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(seqs) == list(range(1, 101))
    lines = (tmp_path / "1" / "events.jsonl").read_text().splitlines()
    assert sorted(json.loads(l)["seq"] for l in lines) == list(range(1, 101))
