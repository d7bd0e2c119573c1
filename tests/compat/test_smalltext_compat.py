"""small-text 1.4.1's own test suite against al_engine: ``benchmarks/smalltext_compat.py``
runs it (downloading small-text's source distribution into ``.compat-cache/`` on first use;
without the package registry this test fails, it is never skipped) and this test holds the
measured pass rates as floors, overall and per component family.

The floors are the rates measured when the harness landed; raise them as the compatibility
work lands (the goal, issue 16, is 0.95 overall). On failure every failing small-text test is
printed with its one-line reason. About 1.5 minutes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: measured 235 / 237 = 0.9916 (2026-12-03, both compatibility branches merged; query_strategies
#: 121/123: the two DAL tests left are documented differences, see the results file)
MIN_PASS_RATE = 0.99
MIN_FAMILY_PASS_RATE = {"query_strategies": 0.98, "stopping_criteria": 1.0, "initialization": 1.0,
                        "classifiers": 1.0, "active_learner": 1.0, "exceptions": 1.0}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("compat") / "smalltext_compat"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "smalltext_compat.py"),
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the harness failed:\n{proc.stderr[-4000:]}"
    return json.loads(out.with_suffix(".json").read_text())


def _failures(result: dict, family: str | None = None) -> str:
    return "\n".join(f"  {r['family']}: {r['test']}: {r['reason']} [{r['where']}]"
                     for r in result["failures"] if family in (None, r["family"]))


def test_every_family_ran_and_every_exclusion_matches_a_test(result):
    assert set(result["families"]) == set(MIN_FAMILY_PASS_RATE)
    assert all(s["counted"] > 0 for s in result["families"].values()), result["families"]
    assert result["stale_exclusions"] == []


def test_overall_pass_rate_holds(result):
    total = result["total"]
    assert total["pass_rate"] >= MIN_PASS_RATE, (
        f"{total['passed']}/{total['counted']} = {total['pass_rate']} < {MIN_PASS_RATE}; "
        f"failing:\n{_failures(result)}")


@pytest.mark.parametrize("family", sorted(MIN_FAMILY_PASS_RATE))
def test_family_pass_rate_holds(result, family):
    stats = result["families"][family]
    assert stats["pass_rate"] >= MIN_FAMILY_PASS_RATE[family], (
        f"{family}: {stats['passed']}/{stats['counted']} = {stats['pass_rate']} < "
        f"{MIN_FAMILY_PASS_RATE[family]}; failing:\n{_failures(result, family)}")
