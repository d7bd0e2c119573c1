"""The README's plain install (`pip install .`, no extras) in a fresh venv: `studio-al
simulate` runs to exit 0 without matplotlib (plots skipped with one line) and without torch
(the default pipeline falls back to TF-IDF + linear SVC). Installs from the package registry
configured for pip, as a user would; about a minute."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WORDS = {"sport": "goal match team score league", "tech": "chip code server cloud data"}

pytestmark = pytest.mark.slow


def _rows(n: int, offset: int) -> str:
    out = []
    for i in range(n):
        for label, vocab in WORDS.items():
            words = vocab.split()
            text = " ".join(words[(i + offset + k) % len(words)] for k in range(3)) + " the of"
            out.append(json.dumps({"text": text, "label": label}))
    return "\n".join(out) + "\n"


def _source_copy(dest: Path) -> Path:
    """The package's sources in ``dest``: pip builds in the source tree, and a build/ left in
    the repository would keep modules deleted since (and be installed from)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for package in ("al_engine", "backend"):
        shutil.copytree(REPO / package, dest / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def test_simulate_runs_on_the_plain_install(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    source = _source_copy(tmp_path / "src")
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", str(source)],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    # the point of the test: neither extra is there
    probe = subprocess.run([str(py), "-c", "import importlib.util as u; "
                            "print(u.find_spec('matplotlib') is None, u.find_spec('torch') is None)"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == ["True", "True"], probe.stdout + probe.stderr
    train, test, out = tmp_path / "train.jsonl", tmp_path / "test.jsonl", tmp_path / "out"
    train.write_text(_rows(30, 0))
    test.write_text(_rows(10, 2))
    run = subprocess.run([str(env_dir / "bin" / "studio-al"), "simulate", "--train", str(train),
                          "--test", str(test), "--out", str(out), "--seeds", "1", "--initial", "4",
                          "--batch", "4", "--rounds", "2", "--quiet"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "plots skipped: matplotlib is not installed" in run.stderr
    result = json.loads((out / "results.json").read_text())
    assert {r["classifier"] for r in result["summary"]} == {"linear_svc"}
    assert not list(out.glob("*.png"))
    print(f"plain install: python {sys.version_info[:2]}, simulate exit 0", file=sys.stderr)
