"""Store: atomic writes, restart survival, no partial models, thread safety."""
import errno
import json
import logging
import os
import shutil
import threading
import time

import pytest

from backend import store as store_mod
from backend.ranking import Ranking
from backend.store import Store, StoreWriteError, atomic_write_bytes


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
    s.write_version(3, v, {"model": [1, 2]},
                    Ranking.build([7], [0.0], [["x"]], [0.9], ["x"], False))
    s.set_current(3, v)
    s.append_audit(3, {"version": v, "status": "ok", "events_upto": 2})
    s.save_state(3, "stopping", {"rounds": 1})

    s2 = Store(str(tmp_path))  # a new process
    assert s2.projects() == [3]
    assert s2.load_project(3)["hostname"] == "http://ls"
    assert s2.last_event_seq(3) == 2 and s2.append_event(3, {"action": "C"}) == 3
    assert s2.current(3) == v and s2.versions(3) == [v]
    assert s2.load_model(3, v) == {"model": [1, 2]}
    assert [e.as_dict() for e in s2.load_ranking(3, v).lookup([7])] == [
        {"task": 7, "score": 0.0, "labels": ["x"], "confidence": 0.9}]
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
        s.write_version(1, n, None, Ranking.build([], [], None, None, ["x"], False))
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


# ---------------------------------------------------------------------------------------------
# Durability: failed writes, torn tails, descriptors, compaction, corrupt files
def _lines(path):
    """Every line of a JSON-lines file, each parsed (fails on a torn or glued line)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn tail: {data[-80:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def _half_then_fail(monkeypatch, err=errno.ENOSPC, fail_truncate=False):
    """os.write writes half of its buffer, then the next call fails with ``err`` (a disk that
    fills up in the middle of a line)."""
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:len(data) // 2]))
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(store_mod.os, "write", write)
    if fail_truncate:
        def ftruncate(fd, size):
            raise OSError(errno.EIO, "I/O error")
        monkeypatch.setattr(store_mod.os, "ftruncate", ftruncate)
    return calls


def test_failed_append_is_rolled_back_and_typed(tmp_path, monkeypatch, caplog):
    s = Store(str(tmp_path))
    assert s.append_event(1, {"action": "A"}) == 1
    path = tmp_path / "1" / "events.jsonl"
    before = path.read_bytes()
    calls = _half_then_fail(monkeypatch)
    with caplog.at_level(logging.ERROR, "studio_al.store"):
        with pytest.raises(StoreWriteError) as info:
            s.append_event(1, {"action": "B"})
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, OSError)
    assert len(calls) == 2  # the half line was written, then the disk was full
    assert path.read_bytes() == before  # the half line is gone
    assert "event=append_failed" in caplog.text and "rolled_back=yes" in caplog.text
    monkeypatch.undo()
    # the sequence cache is still right: the failed event did not consume a number
    assert s.last_event_seq(1) == 1
    assert s.append_event(1, {"action": "C"}) == 2
    assert [(e["seq"], e["action"]) for e in _lines(path)] == [(1, "A"), (2, "C")]
    assert Store(str(tmp_path)).append_event(1, {"action": "D"}) == 3  # another process


def test_failed_rollback_leaves_a_tail_that_the_next_append_repairs(tmp_path, monkeypatch,
                                                                     caplog):
    s = Store(str(tmp_path))
    s.append_event(1, {"action": "A"})
    path = tmp_path / "1" / "events.jsonl"
    _half_then_fail(monkeypatch, errno.EFBIG, fail_truncate=True)
    with pytest.raises(StoreWriteError):
        s.append_event(1, {"action": "B"})
    assert not path.read_bytes().endswith(b"\n")  # the truncate failed too: torn tail
    monkeypatch.undo()
    with caplog.at_level(logging.WARNING, "studio_al.store"):
        assert s.append_event(1, {"action": "C"}) == 2
    assert "event=torn_tail_repaired" in caplog.text
    assert [(e["seq"], e["action"]) for e in _lines(path)] == [(1, "A"), (2, "C")]


def test_torn_tail_of_a_crash_is_cut_before_appending(tmp_path, caplog):
    s = Store(str(tmp_path))
    s.append_event(1, {"action": "A"})
    path = tmp_path / "1" / "events.jsonl"
    with open(path, "ab") as fh:  # another process died in the middle of its append
        fh.write(b'{"seq":2,"received_at":1.0,"act')
    assert s.last_event_seq(1) == 1 and [e["action"] for e in s.events(1)] == ["A"]
    with caplog.at_level(logging.WARNING, "studio_al.store"):
        assert s.append_event(1, {"action": "B"}) == 2  # same process, cached descriptor
    assert "event=torn_tail_repaired" in caplog.text and "dropped_bytes=31" in caplog.text
    assert [(e["seq"], e["action"]) for e in _lines(path)] == [(1, "A"), (2, "B")]
    # a file that is nothing but a torn line
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "events.jsonl").write_bytes(b'{"seq":1,"rec')
    assert Store(str(tmp_path)).append_event(2, {"action": "X"}) == 1
    assert [e["action"] for e in _lines(tmp_path / "2" / "events.jsonl")] == ["X"]


def test_failed_audit_append_is_rolled_back(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    s.append_audit(1, {"status": "ok", "round": 1})
    path = tmp_path / "1" / "audit.jsonl"
    before = path.read_bytes()
    _half_then_fail(monkeypatch)
    with pytest.raises(StoreWriteError):
        s.append_audit(1, {"status": "ok", "round": 2, "pad": "x" * 500})
    assert path.read_bytes() == before
    monkeypatch.undo()
    with open(path, "ab") as fh:
        fh.write(b'{"status":"ok","rou')  # and a crash mid-append is repaired
    s.append_audit(1, {"status": "failed", "round": 3})
    assert [r["round"] for r in _lines(path)] == [1, 3]


def test_failed_fsync_is_a_store_write_error(tmp_path, monkeypatch):
    s = Store(str(tmp_path))
    s.append_event(1, {"action": "A"})

    def fsync(fd):
        raise OSError(errno.EIO, "I/O error")
    monkeypatch.setattr(store_mod.os, "fsync", fsync)
    with pytest.raises(StoreWriteError) as info:
        s.append_event(1, {"action": "B"})
    assert info.value.errno == errno.EIO
    monkeypatch.undo()
    assert s.append_event(1, {"action": "C"}) == 3  # not wedged: the next fsync runs


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_event_log_descriptors_are_bounded(tmp_path):
    s = Store(str(tmp_path))
    before = _open_fds()
    for p in range(1, 201):
        assert s.append_event(p, {"action": "A", "project": p}) == 1
    assert s.open_event_logs() <= store_mod.MAX_OPEN_EVENT_LOGS == 64
    assert _open_fds() - before <= 64
    for p in range(1, 201):  # evicted projects reopen and keep counting
        assert s.append_event(p, {"action": "B", "project": p}) == 2
    assert _open_fds() - before <= 64
    assert s.projects() == list(range(1, 201))
    for p in (1, 100, 200):
        assert [(e["seq"], e["project"]) for e in _lines(tmp_path / str(p) / "events.jsonl")] \
            == [(1, p), (2, p)]
    s.close()
    assert _open_fds() <= before and s.open_event_logs() == 0


def test_eviction_under_concurrent_appends_never_writes_to_a_closed_or_wrong_fd(tmp_path):
    """8 threads append to 40 projects through 4 descriptors: evictions happen while other
    threads write and fsync; every event lands in its own project's file, exactly once."""
    s = Store(str(tmp_path), max_open_logs=4)
    before = _open_fds()
    got, lock, errors = {}, threading.Lock(), []

    def worker(w):
        try:
            for i in range(60):
                p = 1 + (w * 7 + i * 3) % 40
                seq = s.append_event(p, {"action": "X", "project": p, "w": w, "i": i})
                with lock:
                    got.setdefault(p, []).append(seq)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(len(v) for v in got.values()) == 480
    for p, seqs in got.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
        lines = _lines(tmp_path / str(p) / "events.jsonl")
        assert [e["seq"] for e in lines] == sorted(seqs)
        assert {e["project"] for e in lines} == {p}
    assert s.open_event_logs() <= 4 and _open_fds() - before <= 4


def test_compaction_keeps_sequence_numbers_monotonic(tmp_path):
    s = Store(str(tmp_path))
    for i in range(10):
        s.append_event(1, {"action": "A", "i": i})
    path = tmp_path / "1" / "events.jsonl"
    assert s.compact_events(1, 6) == 6
    assert [e["seq"] for e in s.events(1)] == [7, 8, 9, 10]
    assert [e["seq"] for e in _lines(path)] == [7, 8, 9, 10]
    assert s.last_event_seq(1) == 10 and s.append_event(1, {"action": "B"}) == 11
    assert s.compact_events(1, 6) == 0  # nothing older left: not rewritten
    assert s.compact_events(1, 11) == 5  # everything consumed
    assert path.read_bytes() == b"" and s.events(1) == []
    assert s.last_event_seq(1) == 11
    s2 = Store(str(tmp_path))  # a new process only has the meta file to go by
    assert s2.last_event_seq(1) == 11 and s2.append_event(1, {"action": "C"}) == 12
    assert s.append_event(1, {"action": "D"}) == 13  # the old store re-opens the new file
    assert [e["seq"] for e in _lines(path)] == [12, 13]
    assert json.loads((tmp_path / "1" / "events.meta.json").read_text())["last_seq"] == 11


def test_compaction_loses_nothing_appended_concurrently(tmp_path):
    """4 threads append (two through a second Store: another process as far as descriptors,
    caches and flocks go) while the main thread compacts again and again."""
    a, b = Store(str(tmp_path)), Store(str(tmp_path))
    seqs, lock, errors, _done = [], threading.Lock(), [], threading.Event()

    def worker(store, w):
        try:
            for i in range(50):
                seq = store.append_event(1, {"action": "X", "w": w, "i": i})
                with lock:
                    seqs.append(seq)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(st, w))
               for w, st in enumerate([a, a, b, b])]
    for t in threads:
        t.start()
    dropped, upto, rounds = 0, 0, 0
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        with lock:
            upto = max(upto, max(seqs, default=0) - 5)  # a round consumed all but the last 5
        dropped += (a if rounds % 2 else b).compact_events(1, upto)
        rounds += 1
    for t in threads:
        t.join(60)
    assert not errors and rounds > 1
    assert sorted(seqs) == list(range(1, 201))
    left = [e["seq"] for e in _lines(tmp_path / "1" / "events.jsonl")]
    assert left == sorted(left)
    assert left == [q for q in range(1, 201) if q > upto]  # every newer event survived
    assert dropped + len(left) == 200  # and every older one was dropped exactly once
    assert a.last_event_seq(1) == b.last_event_seq(1) == 200
    assert a.append_event(1, {"action": "Y"}) == 201 and b.append_event(1, {"action": "Y"}) == 202


def test_events_since_is_bounded(tmp_path):
    s = Store(str(tmp_path))
    for i in range(30):
        s.append_event(1, {"action": "A", "i": i})
    with open(tmp_path / "1" / "events.jsonl", "ab") as fh:
        fh.write(b'[1]\n"x"\n{"seq": 99, "act')
    assert [e["seq"] for e in s.events_since(1, 10, limit=5)] == [11, 12, 13, 14, 15]
    assert [e["seq"] for e in s.events_since(1, 27, limit=100)] == [28, 29, 30]
    assert s.events_since(1, 30) == [] and s.events_since(1, 0, limit=0) == []
    assert s.events_since(2, 0) == []


def test_non_object_lines_are_skipped(tmp_path, caplog):
    s = Store(str(tmp_path))
    s.append_event(1, {"action": "A"})
    s.append_audit(1, {"status": "ok", "events_upto": 1})
    for name in ("events.jsonl", "audit.jsonl"):
        with open(tmp_path / "1" / name, "ab") as fh:
            fh.write(b'[1]\n"x"\n3\nnull\n\xff\xfe\n{"seq": "7"}\n')
    with caplog.at_level(logging.WARNING, "studio_al.store"):
        assert [e["action"] for e in s.events(1)] == ["A"]
        assert s.events(1) and s.events(1)  # logged once per file, not per read
        assert s.last_event_seq(1) == 1
        assert s.audit(1)[0]["status"] == "ok" and len(s.audit(1)) == 2  # {"seq":"7"} is an object
        assert s.last_audit(1, "ok")["events_upto"] == 1
    assert caplog.text.count("event=jsonl_lines_skipped") == 2
    assert s.append_event(1, {"action": "B"}) == 2
    assert [e["action"] for e in s.events(1)] == ["A", "B"]


def _corrupt_files(path):
    return sorted(p.name for p in path.parent.iterdir()
                  if p.name.startswith(path.name + ".corrupt-"))


@pytest.mark.parametrize("content", [b"[]", b'"x"', b"3", b'{"project": 3, "label_con', b"",
                                     b"\xff\xfe"])
def test_corrupt_project_json_is_quarantined(tmp_path, caplog, content):
    s = Store(str(tmp_path))
    path = tmp_path / "3" / "project.json"
    path.parent.mkdir()
    path.write_bytes(content)
    with caplog.at_level(logging.ERROR, "studio_al.store"):
        assert s.load_project(3) is None
        assert s.load_project(3) is None
    assert caplog.text.count("event=file_quarantined") == 1
    assert not path.exists()
    [moved] = _corrupt_files(path)
    assert moved.startswith("project.json.corrupt-20") and moved.endswith("Z")
    assert (path.parent / moved).read_bytes() == content  # kept for inspection
    assert s.projects() == [3]
    assert s.save_project(3, {"a": 1}) is True and s.load_project(3) == {"a": 1}


def test_quarantine_leaves_a_good_file_written_meanwhile(tmp_path):
    path = tmp_path / "f.json"
    path.write_bytes(b"[")
    ino = os.stat(path).st_ino
    atomic_write_bytes(str(path), b"{}")  # replaced by a good one after it was read
    assert store_mod.quarantine_file(str(path), "test", ino) is None
    assert path.read_bytes() == b"{}" and _corrupt_files(path) == []


class _Gone:
    pass


@pytest.mark.parametrize("kind", ["truncated", "garbage", "missing_class", "missing_module",
                                  "value_error"])
def test_unreadable_state_is_quarantined(tmp_path, caplog, kind):
    s = Store(str(tmp_path))
    s.save_state(1, "stopping", {"rounds": 3, "ids": list(range(100))})
    path = tmp_path / "1" / "state" / "stopping.pkl"
    good = path.read_bytes()
    path.write_bytes({
        "truncated": good[:len(good) // 2],
        "garbage": b"not a pickle at all",
        "missing_class": b"cbackend.store\nNoSuchThing\n.",  # AttributeError
        "missing_module": b"cno_such_module_xyz\nThing\n.",  # ModuleNotFoundError
        "value_error": b"\x80\x05\x95\x00",  # frame of a bad length / unsupported
    }[kind])
    with caplog.at_level(logging.ERROR, "studio_al.store"):
        assert s.load_state(1, "stopping") is None
        assert s.load_state(1, "stopping") is None
    assert caplog.text.count("event=file_quarantined") == 1
    assert not path.exists() and len(_corrupt_files(path)) == 1
    s.save_state(1, "stopping", {"rounds": 0})
    assert s.load_state(1, "stopping") == {"rounds": 0}


def test_corrupt_meta_is_quarantined_and_the_log_still_counts(tmp_path):
    s = Store(str(tmp_path))
    for _ in range(4):
        s.append_event(1, {"action": "A"})
    s.compact_events(1, 2)
    meta = tmp_path / "1" / "events.meta.json"
    meta.write_bytes(b'{"last_seq": "x"}')
    s2 = Store(str(tmp_path))
    assert s2.last_event_seq(1) == 4 and s2.append_event(1, {"action": "B"}) == 5
    assert not meta.exists() and len(_corrupt_files(meta)) == 1


def test_projects_ignores_non_project_entries_and_scales(tmp_path):
    for name in ("007", "abc", "²", "12x", ".tmp-1"):
        (tmp_path / name).mkdir()
    (tmp_path / "5").write_bytes(b"a file, not a project")
    for p in range(1, 2001):
        (tmp_path / str(p * 10)).mkdir()
    s = Store(str(tmp_path))
    assert s.projects() == [p * 10 for p in range(1, 2001)]


def test_a_deleted_project_directory_is_recreated_not_written_through_a_stale_fd(tmp_path):
    s, other = Store(str(tmp_path)), Store(str(tmp_path))
    s.append_event(1, {"action": "A"})
    other.append_event(1, {"action": "B"})  # the other process holds a descriptor too
    before = _open_fds()
    s.forget_project(1)
    assert not (tmp_path / "1").exists() and _open_fds() == before - 1
    assert s.last_event_seq(1) == 0 and s.load_project(1) is None
    assert other.append_event(1, {"action": "C"}) == 1  # re-opened: not the deleted file
    assert s.append_event(1, {"action": "D"}) == 2
    assert [e["action"] for e in _lines(tmp_path / "1" / "events.jsonl")] == ["C", "D"]
    shutil.rmtree(tmp_path / "1")  # deleted behind the store's back (another process)
    assert s.append_event(1, {"action": "E"}) == 1
    assert [e["action"] for e in _lines(tmp_path / "1" / "events.jsonl")] == ["E"]
