"""What each way of writing predictions costs in a real Label Studio 1.23.2 on 10,000 tasks, and
whether an annotator's ``GET /next`` is held up meanwhile.

Starts Label Studio with the e2e harness (SQLite by default, ``--db postgres`` for a fresh
database on the local PostgreSQL server), imports ``--tasks`` texts, then times:
a bulk import of predictions for every task (one request), the same again while the project
holds those predictions, a 2,000-prediction import, ONE prediction by bulk import and by
``POST /api/predictions``, the project PATCH, and the delete of a 10k version. During the
bulk writes a second client calls ``GET /next`` every 0.5 s: the calls, 5xx answers and the
slowest answer are reported.

    .venv/bin/python benchmarks/bench_ls_write_costs.py [--tasks 10000] [--db sqlite|postgres]
        [--out benchmarks/results/ls_write_costs]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
# _common first: it makes benchmarks.* and tests.* importable
from _common import (add_label_studio_args, command_line, create_project, md_preamble, md_table,
                     utc_now, write_results)

from tests.e2e import harness
from tests.e2e.flows import choices_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_label_studio_args(ap, tasks=10_000, out="ls_write_costs")
    args = ap.parse_args()
    recs = harness.load_jsonl("sst2.train", n=args.tasks)
    labels = sorted({r["label"] for r in recs})
    tmp = Path(tempfile.mkdtemp(prefix="bench_ls_write_"))
    rows: list[dict] = []
    result = {"date": utc_now(), "command": command_line(__file__),
              "tasks": len(recs), "db": args.db, "cpus": os.cpu_count(),
              "loadavg_at_start": os.getloadavg(), "rows": rows}
    srv = None
    try:
        srv = harness.start_label_studio(tmp / "ls", db=args.db)
        ls = harness.LS(srv.url, logfile=srv.logfile)
        pid = create_project(ls, "write costs", labels)["id"]
        ls.req("POST", f"/api/projects/{pid}/import", timeout=900, json=[{"data": {"text": r["text"]}} for r in recs])
        tids = ls.task_ids(pid)

        def preds(ids, version):
            return [{"task": t, "result": choices_result([labels[0]]), "score": i / len(ids),
                     "model_version": version} for i, t in enumerate(ids)]

        def measure(what: str, fn, probe: bool = False) -> None:
            stop, seen = threading.Event(), []

            def poll():
                s = requests.Session()
                s.headers["Authorization"] = f"Token {harness.LS_TOKEN}"
                while not stop.is_set():
                    t = time.perf_counter()
                    r = s.get(f"{srv.url}/api/projects/{pid}/next", timeout=300)
                    seen.append((r.status_code, time.perf_counter() - t))
                    stop.wait(0.5)

            th = threading.Thread(target=poll) if probe else None
            if th:
                th.start()
            t = time.perf_counter()
            fn()
            took = time.perf_counter() - t
            if th:
                stop.set()
                th.join()
            row = {"operation": what, "seconds": round(took, 2)}
            if probe:
                row.update(next_calls=len(seen), next_5xx=sum(c >= 500 for c, _ in seen),
                           next_slowest_s=round(max((d for _, d in seen), default=0.0), 2))
            rows.append(row)
            harness.log(f"{what}: {row}")

        url = f"/api/projects/{pid}/import/predictions"
        measure(f"import {len(tids)} predictions, one request, empty project",
                lambda: ls.req("POST", url, json=preds(tids, "vA"), timeout=900))
        ls.req("PATCH", f"/api/projects/{pid}", json={"model_version": "vA", "sampling": "Uncertainty sampling"})
        measure(f"import {len(tids)} predictions, one request, project holding {len(tids)}",
                lambda: ls.req("POST", url, json=preds(tids, "vB"), timeout=900), probe=True)
        measure("import 2000 predictions, one request",
                lambda: ls.req("POST", url, json=preds(tids[:2000], "vC"), timeout=900), probe=True)
        measure("import 1 prediction (bulk endpoint)", lambda: ls.req("POST", url, json=preds(tids[:1], "vD")))
        measure("POST /api/predictions (1 prediction)",
                lambda: ls.req("POST", "/api/predictions", json=preds(tids[1:2], "vD")[0]))
        measure("PATCH project model_version", lambda: ls.req("PATCH", f"/api/projects/{pid}", json={"model_version": "vD"}))
        measure(f"DELETE model version of {len(tids)} predictions",
                lambda: ls.req("DELETE", f"/api/projects/{pid}/model-versions/", json={"model_version": "vA"},
                               timeout=1800), probe=True)
    finally:
        if srv:
            srv.stop()  # also drops the PostgreSQL database
        result["loadavg_at_end"] = os.getloadavg()
        write_results(args.out, result, markdown(result))
    return 0


def markdown(result: dict) -> str:
    lines = md_preamble(f"Label Studio {harness.LS_VERSION} write costs, {result['tasks']} tasks, "
                        f"{result['db']}", result["date"], result["command"]) + [
        f"- machine: {result['cpus']} CPUs (shared), load average at start "
        f"{result['loadavg_at_start']}, at end {result['loadavg_at_end']}", ""]
    lines += md_table(["operation", "seconds", "GET /next calls meanwhile", "of which 5xx",
                       "slowest /next (s)"],
                      [[r["operation"], r["seconds"], r.get("next_calls", ""), r.get("next_5xx", ""),
                        r.get("next_slowest_s", "")] for r in result["rows"]])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
