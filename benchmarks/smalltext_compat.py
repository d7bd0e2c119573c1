"""small-text 1.4.1's own test suite run against al_engine, one component family at a time.

small-text's published unit and integration tests for query strategies, stopping criteria,
initialization, the scikit-learn classifiers and the active learner (not its pytorch or
transformers integration tests) are taken from its source distribution on the package registry:
``pip download small-text==1.4.1 --no-binary :all: --no-deps`` into ``.compat-cache/``
(gitignored, reused when present), checked against :data:`SDIST_SHA256` and unpacked. If that is
impossible the run fails with the reason; nothing is skipped.

Each family of :data:`al_engine.compat.names.FAMILIES` (``query_strategies``,
``stopping_criteria``, ``initialization``, ``classifiers``, ``active_learner``, ``exceptions``)
runs in its own pytest subprocess, rooted in the unpacked sdist, with the plugin
:mod:`benchmarks.smalltext_compat_plugin` binding our objects to small-text's names; small-text's
datasets, fixtures and factories stay in place. The ``exceptions`` family runs the tests of all
other families with only the exception classes substituted. One more run with nothing
substituted (the baseline) tells which tests pass with small-text itself here.

Which tests count (the pass rate is passed / counted), in this order:

1. skipped in the family run: not counted;
2. not passing with small-text itself in this environment (the baseline; e.g. tests that
   download 20 Newsgroups, or expect hnswlib to be missing): not counted, listed;
3. tests that never instantiated or called a substituted object and passed (they exercise
   small-text's own helpers only): not counted;
4. in ``EXCLUDED`` (``benchmarks/smalltext_compat_excluded.py``: an explicit list of the
   tests that assert small-text's private attributes, mocks of its internals or its exact
   ``__str__``/``__repr__`` text, each with its reason, the rule in that module's docstring):
   not counted, listed;
5. every other test counts, passed or not. A test missing from the family run (its module
   failed to import) counts as an error.

    .venv/bin/python benchmarks/smalltext_compat.py                    # every family
    .venv/bin/python benchmarks/smalltext_compat.py --family classifiers --out /tmp/c

Writes ``benchmarks/results/smalltext_compat.json`` and ``.md`` (``--out`` to change): per
family the counts and pass rate, the overall pass rate, every failing test with a one-line
reason and where it was raised, and every excluded test with why.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import REPO, RESULTS, command_line, log, machine, md_preamble, md_table, utc_now, write_results
from smalltext_compat_excluded import excluded_why, stale_exclusions

VERSION = "1.4.1"
SDIST = f"small_text-{VERSION}.tar.gz"
SDIST_SHA256 = "13e3bcdf5d0b405f9b3aed15ce99b317fa408f5f17b7278d5d1fd4d0c5837857"
CACHE = REPO / ".compat-cache"
FAMILY_SECONDS = 900          # a whole family's subprocess
MEMORY_BYTES = 2 << 30        # address-space limit of a family's subprocess

_UNIT, _INTEGRATION = "tests/unit/small_text", "tests/integration"
FAMILY_TESTS: dict[str, tuple[str, ...]] = {
    "query_strategies": (f"{_UNIT}/query_strategies", f"{_INTEGRATION}/small_text/query_strategies"),
    "stopping_criteria": (f"{_UNIT}/stopping_criteria",),
    "initialization": (f"{_UNIT}/initialization",),
    "classifiers": (f"{_UNIT}/classifiers", f"{_INTEGRATION}/small_text/classifiers",
                    f"{_INTEGRATION}/classifiers"),
    "active_learner": (f"{_UNIT}/test_active_learner.py",
                       f"{_INTEGRATION}/small_text/test_serialization.py"),
}
FAMILY_TESTS["exceptions"] = tuple(p for paths in FAMILY_TESTS.values() for p in paths)

NOT_EXERCISED = "exercises no al_engine object"
#: why a test does not count: skipped, fails in the baseline, in EXCLUDED, no al_engine object
EXCLUSION_KINDS = ("skipped", "baseline", "listed", "not_exercised")


class SdistUnavailable(RuntimeError):
    """small-text's source distribution could not be downloaded or failed its checksum."""


# ----------------------------------------------------------------------------- the sdist
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdist(cache: Path = CACHE) -> Path:
    """The unpacked small-text sdist (its root folder), downloaded with pip into ``cache``
    unless a verified copy is there.

    Raises
    ------
    SdistUnavailable
        If pip cannot download it or its sha256 is not :data:`SDIST_SHA256`.
    """
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / SDIST
    if not tarball.exists() or _sha256(tarball) != SDIST_SHA256:
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", f"small-text=={VERSION}",
                   "--no-binary", ":all:", "--no-deps", "--dest", tmp]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            got = Path(tmp) / SDIST
            if proc.returncode != 0 or not got.exists():
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                raise SdistUnavailable(f"cannot download small-text {VERSION}'s source "
                                       f"distribution ({' '.join(cmd)}):\n{tail}")
            if _sha256(got) != SDIST_SHA256:
                raise SdistUnavailable(f"{SDIST} has sha256 {_sha256(got)}, expected {SDIST_SHA256}")
            os.replace(got, tarball)
    root = cache / f"small_text-{VERSION}"
    if not (root / ".unpacked").exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")
            shutil.rmtree(root, ignore_errors=True)
            os.replace(Path(tmp) / root.name, root)
        (root / ".unpacked").write_text(SDIST_SHA256 + "\n")
    return root


# ----------------------------------------------------------------------------- running
def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))


def run_pytest(sdist: Path, family: str, paths: tuple[str, ...], workdir: Path,
               deselect: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run small-text's tests ``paths`` but ``deselect`` with ``family`` substituted
    (``none``: the baseline); the plugin's per-test records by node id."""
    report = workdir / f"{family}.json"
    cmd = [sys.executable, "-m", "pytest", "-p", "benchmarks.smalltext_compat_plugin",
           "-p", "no:cacheprovider", "--smalltext-family", family, "--smalltext-report",
           str(report), "--rootdir", str(sdist), "-q", "-W", "ignore", *paths]
    cmd += [arg for nodeid in deselect for arg in ("--deselect", nodeid)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(sdist), str(REPO)]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({var: "1" for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    proc = subprocess.run(cmd, cwd=sdist, env=env, capture_output=True, text=True,
                          timeout=FAMILY_SECONDS, preexec_fn=_limit_memory)
    if proc.returncode not in (0, 1) or not report.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"pytest for family {family!r} exited with {proc.returncode}:\n{tail}")
    return {r["nodeid"]: r for r in json.loads(report.read_text())}


def classify(family: str, records: dict[str, dict], baseline: dict[str, dict]) -> list[dict]:
    """One row per test (``records``: the family run, ``baseline``: the baseline's records
    of the same paths): its outcome and, when it does not count, ``why`` (the rules of the
    module docstring)."""
    broken = {k for k, r in records.items() if r["outcome"] == "collection_error"}
    rows = []
    for nodeid in sorted((set(records) | set(baseline)) - (broken - set(baseline))):
        base = baseline.get(nodeid, {"outcome": "absent", "reason": "not in the baseline run"})
        rec = records.get(nodeid) or (_not_collected(nodeid, records) if base["outcome"] == "passed"
                                      else {**base, "outcome": "deselected", "used": []})
        row = {"family": family, "test": nodeid, "outcome": rec["outcome"], "reason": rec["reason"],
               "where": rec["where"], "used": rec["used"], "excluded": None, "why": None}
        listed = excluded_why(nodeid)
        if rec["outcome"] == "skipped":
            row["excluded"], row["why"] = "skipped", rec["reason"]
        elif base["outcome"] != "passed":
            row["excluded"] = "baseline"
            row["why"] = f"does not pass with small-text itself here ({base['outcome']}: {base['reason']})"
        elif not rec["used"] and rec["outcome"] == "passed":
            row["excluded"], row["why"] = "not_exercised", NOT_EXERCISED
        elif listed:
            row["excluded"], row["why"] = "listed", listed
        rows.append(row)
    return rows


def _not_collected(nodeid: str, records: dict[str, dict]) -> dict:
    module = nodeid.split("::")[0]
    reason = records.get(module, {}).get("reason", "not run")
    return {"outcome": "error", "reason": f"module not collected: {reason}", "where": module,
            "used": []}


def summarize(rows: list[dict]) -> dict:
    """Counts of one family's (or all) rows and the pass rate over the counted ones."""
    counted = [r for r in rows if r["excluded"] is None]
    passed = sum(r["outcome"] == "passed" for r in counted)
    return {"tests": len(rows), "counted": len(counted), "passed": passed,
            "failed": sum(r["outcome"] == "failed" for r in counted),
            "error": sum(r["outcome"] == "error" for r in counted),
            **{kind: sum(r["excluded"] == kind for r in rows) for kind in EXCLUSION_KINDS},
            "pass_rate": round(passed / len(counted), 4) if counted else None}


def run(families: list[str], workdir: Path, cache: Path = CACHE) -> dict:
    """Fetch the sdist, run the baseline and every family; the result dict (see
    :func:`main`)."""
    sdist = fetch_sdist(cache)
    paths = tuple(dict.fromkeys(p for f in families for p in FAMILY_TESTS[f]))
    t0 = time.perf_counter()
    log("baseline: small-text unchanged")
    baseline = run_pytest(sdist, "none", paths, workdir)
    seconds = {"baseline": round(time.perf_counter() - t0, 1)}
    rows: list[dict] = []
    for family in families:
        t0 = time.perf_counter()
        log(f"family {family}")
        base = {k: v for k, v in baseline.items() if k.startswith(FAMILY_TESTS[family])}
        failing = tuple(k for k, v in base.items() if v["outcome"] not in ("passed", "collection_error"))
        rows += classify(family, run_pytest(sdist, family, FAMILY_TESTS[family], workdir, failing), base)
        seconds[family] = round(time.perf_counter() - t0, 1)
    per_family = {f: {**summarize([r for r in rows if r["family"] == f]), "seconds": seconds[f]}
                  for f in families}
    return {"smalltext": {"version": VERSION, "sdist_sha256": SDIST_SHA256},
            "families": per_family, "total": summarize(rows), "seconds": seconds,
            "stale_exclusions": stale_exclusions(set(baseline)),
            "failures": [r for r in rows if r["excluded"] is None and r["outcome"] != "passed"],
            "excluded": [r for r in rows if r["excluded"] in ("skipped", "baseline", "listed")],
            "not_exercised": [r["test"] for r in rows if r["excluded"] == "not_exercised"]}


# ----------------------------------------------------------------------------- report
def _short(nodeid: str) -> str:
    return nodeid.removeprefix("tests/")


def markdown(result: dict) -> str:
    lines = md_preamble(f"small-text {VERSION}'s test suite against al_engine",
                        result["date"], result["command"])
    total = result["total"]
    lines += ["", f"**Pass rate: {total['passed']} / {total['counted']} = {total['pass_rate']}** "
              "over the tests that count (rules in `benchmarks/smalltext_compat.py`'s docstring; "
              "substitutions in `al_engine/compat/names.py`).", ""]
    header = ("family", "counted", "passed", "failed", "error", "pass rate", "listed exclusions",
              "fail with small-text", "no al_engine object", "skipped", "seconds")
    rows = [(f, s["counted"], s["passed"], s["failed"], s["error"], s["pass_rate"],
             *(s[k] for k in ("listed", "baseline", "not_exercised", "skipped")), s["seconds"])
            for f, s in [*result["families"].items(),
                         ("**all**", {**total, "seconds": result["seconds"]["baseline"]})]]
    lines += md_table(header, rows, "l" + "r" * 10)
    lines += ["", "**all** sums the family runs (the `exceptions` family reruns the other families' "
              "tests, so a test can count in two families); its last column is the baseline "
              "run's time (small-text unchanged).",
              "", f"## Failing tests ({len(result['failures'])})", ""]
    lines += md_table(("family", "test", "outcome", "reason", "where"),
                      [(r["family"], f"`{_short(r['test'])}`", r["outcome"],
                        r["reason"].replace("|", "\\|")[:200], f"`{r['where']}`")
                       for r in result["failures"]])
    if result["stale_exclusions"]:
        lines += ["", "**Exclusions matching no test:** "
                  + ", ".join(f"`{k}`" for k in result["stale_exclusions"])]
    lines += ["", f"## Excluded tests ({len(result['excluded'])})", ""]
    lines += md_table(("family", "test", "outcome", "why"),
                      [(r["family"], f"`{_short(r['test'])}`", r["outcome"],
                        r["why"].replace("|", "\\|")[:200]) for r in result["excluded"]])
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", action="append", choices=sorted(FAMILY_TESTS),
                    help="run only this family (repeatable); default: all")
    ap.add_argument("--out", default=str(RESULTS / "smalltext_compat"),
                    help="result stem: writes <out>.json and <out>.md")
    ap.add_argument("--cache", default=str(CACHE), help="where the sdist is downloaded")
    args = ap.parse_args(argv)
    families = args.family or list(FAMILY_TESTS)
    try:
        with tempfile.TemporaryDirectory() as workdir:
            result = run(families, Path(workdir), Path(args.cache))
    except SdistUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"date": utc_now(), "command": command_line(__file__, argv),
              "machine": machine(), **result}
    md = markdown(result)
    write_results(args.out, result, md)
    total = result["total"]
    print(f"pass rate {total['passed']}/{total['counted']} = {total['pass_rate']}; "
          f"wrote {args.out}.md and {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
