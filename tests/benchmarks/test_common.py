"""The helpers the benchmark scripts share (``benchmarks/_common.py``)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _common as c


def test_pin_threads_sets_every_variable(monkeypatch):
    for var in c.THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    c.pin_threads(3)
    assert {os.environ[var] for var in c.THREAD_VARS} == {"3"}


def test_best_of_runs_up_to_repeats_and_returns_the_last_result():
    seen = []

    def prepare(i):
        seen.append(i)
        return lambda: i * 10
    best, runs, result = c.best_of(prepare, repeats=4)
    assert (runs, result, seen) == (4, 30, [0, 1, 2, 3])
    assert 0 <= best < 1


def test_best_of_stops_after_the_budget_but_not_before_min_runs():
    assert c.best_of(lambda i: (lambda: i), repeats=5, budget=0.0)[1] == 1
    assert c.best_of(lambda i: (lambda: i), repeats=5, budget=0.0, min_runs=2)[1] == 2


def test_peak_mib_sees_numpy_buffers():
    assert c.peak_mib(lambda: np.ones(2 ** 20)) >= 8.0   # 8 MiB of float64
    assert not __import__("tracemalloc").is_tracing()


def test_command_line_is_shell_quoted_and_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["x.py", "--out", "a b"])
    script = tmp_path / "benchmarks" / "x.py"
    cmd = shlex.split(c.command_line(str(script)))
    assert cmd[1:] == ["benchmarks/x.py", "--out", "a b"]
    assert cmd[0] == os.path.relpath(sys.executable)
    assert shlex.split(c.command_line(str(script), ["--n", "1"]))[1:] == ["benchmarks/x.py", "--n", "1"]


def test_utc_now_and_machine():
    assert c.utc_now().endswith("+00:00")
    m = c.machine(numpy="2.0")
    assert m["cpus"] == os.cpu_count() and m["numpy"] == "2.0" and {"python", "platform"} <= set(m)


def test_write_results_writes_json_and_markdown(tmp_path):
    stem = tmp_path / "sub" / "res"
    path = c.write_results(stem, {"a": 1, "p": Path("/x")}, "# t\n")
    assert path == tmp_path / "sub" / "res.json"
    assert json.loads(path.read_text()) == {"a": 1, "p": "/x"}
    assert path.read_text().endswith("}\n")
    assert (tmp_path / "sub" / "res.md").read_text() == "# t\n"
    c.write_results(tmp_path / "only", {"a": 1}, indent=2)
    assert (tmp_path / "only.json").read_text() == '{\n  "a": 1\n}\n'
    assert not (tmp_path / "only.md").exists()


def test_md_table_and_preamble():
    assert c.md_table(["a", "b"], [[1, ""], ["x", None]], align="lr") == [
        "| a | b |", "|---|---:|", "| 1 |  |", "| x | None |"]
    assert c.md_table(["a"], []) == ["| a |", "|---|"]
    with pytest.raises(ValueError):
        c.md_table(["a", "b"], [], align="l")
    assert c.md_preamble("T", "d", "cmd") == ["# T", "", "- date: d", "- command: `cmd`"]


def test_precomputed_classifier_returns_the_arrays_or_their_rows():
    x = np.arange(12.0).reshape(6, 2)
    proba = np.tile([[0.2, 0.8]], (6, 1))
    proba[3] = [0.9, 0.1]
    clf = c.PrecomputedClassifier(x, proba, lambda ds: None if ds is x else ds, num_classes=2)
    assert clf.predict_proba(x) is proba and clf.embed(x) is x
    rows = np.array([3, 5])
    np.testing.assert_array_equal(clf.predict_proba(rows), proba[rows])
    labels, p = clf.predict(rows, return_proba=True)
    np.testing.assert_array_equal(labels, [0, 1])
    emb, p2 = clf.embed(rows, return_proba=True)
    np.testing.assert_array_equal(emb, x[rows])
    np.testing.assert_array_equal(p2, p)


def test_softmax_labeled_split_and_valid_selection():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((5, 3))
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_array_equal(c.softmax_rows(logits), expected)
    idx_l, idx_u = c.labeled_split(np.random.default_rng(1), 20, 5)
    assert list(idx_l) == sorted(idx_l) and len(idx_l) == 5
    assert sorted(np.concatenate([idx_l, idx_u]).tolist()) == list(range(20))
    assert c.valid_selection(idx_u[:3], 3, idx_u)
    assert not c.valid_selection(idx_u[[0, 0, 1]], 3, idx_u)   # duplicates
    assert not c.valid_selection(idx_l[:3], 3, idx_u)          # labeled rows
    assert not c.valid_selection(idx_u[:2], 3, idx_u)          # too few


class FakeLS:
    def __init__(self, short: bool = False):
        self.calls, self.short = [], short

    def req(self, method, path, **kw):
        self.calls.append((method, path, kw))
        if path == "/api/projects":
            return {"id": 7}
        return {"task_count": len(kw["json"]) - self.short}


def test_create_project_and_import_texts_in_chunks():
    ls = FakeLS()
    assert c.create_project(ls, "t", ["a", "b"])["id"] == 7
    assert "<Choice value=\"b\"" in ls.calls[0][2]["json"]["label_config"]
    progress = []
    seconds = c.import_texts(ls, 7, [{"text": str(i)} for i in range(5)], chunk=2,
                             progress=lambda done, s: progress.append(done))
    assert len(seconds) == 3 and progress == [2, 4, 5]
    assert [len(kw["json"]) for _, p, kw in ls.calls if p.endswith("/import")] == [2, 2, 1]
    with pytest.raises(RuntimeError, match="chunk 0"):
        c.import_texts(FakeLS(short=True), 7, [{"text": "x"}])


def test_label_studio_args():
    ap = argparse.ArgumentParser()
    c.add_label_studio_args(ap, tasks=5, out="x")
    a = ap.parse_args([])
    assert (a.tasks, a.db, a.out) == (5, "sqlite", str(c.RESULTS / "x"))
    assert ap.parse_args(["--db", "postgres"]).db == "postgres"


def test_publish_prints_and_writes_unless_told_not_to(tmp_path, capsys):
    c.publish(tmp_path / "r", {"a": 1}, "# r\n", write=False)
    assert "# r" in capsys.readouterr().out and not (tmp_path / "r.json").exists()
    c.publish(tmp_path / "r", {"a": 1}, "# r\n")
    assert "wrote" in capsys.readouterr().out and (tmp_path / "r.md").read_text() == "# r\n"
