"""What each Label Studio 1.23.2 call the backend makes costs on a large project (default
100,000 tasks), measured one at a time on an idle Label Studio (SQLite by default).

The round of ``backend.rounds`` was designed from these figures: which listing to use and with
which page size, single prediction creates vs a bulk import, the cost of a small version delete
and of the project PATCH. Tasks: ``benchmarks/corpus.py`` (real texts of every shared dataset,
labelled by source corpus).

    .venv/bin/python benchmarks/bench_ls_op_costs.py [--tasks 100000] [--db sqlite|postgres]
        [--out benchmarks/results/ls_op_costs]

Writes ``<out>_<tasks>_<db>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# _common first: it makes benchmarks.* and tests.* importable
from _common import (add_label_studio_args, command_line, create_project, import_texts,
                     md_preamble, md_table, utc_now, write_results)

from benchmarks.corpus import source_corpus
from tests.e2e import harness
from tests.e2e.flows import choices_result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_label_studio_args(ap, tasks=100_000, out="ls_op_costs")
    args = ap.parse_args()
    recs = source_corpus(args.tasks, harness.DATA_DIR)
    labels = sorted({r["label"] for r in recs})
    rows: list[dict] = []
    result = {"date": utc_now(), "command": command_line(__file__),
              "tasks": len(recs), "db": args.db, "cpus": os.cpu_count(),
              "loadavg_at_start": os.getloadavg(), "label_studio": harness.LS_VERSION, "rows": rows}
    srv = harness.start_label_studio(Path(tempfile.mkdtemp(prefix="ls_op_costs_")) / "ls", db=args.db)
    ls = harness.LS(srv.url, logfile=srv.logfile)

    def measure(name: str, fn, reps: int = 3, note: str = ""):
        times, out = [], None
        for _ in range(reps):
            t0 = time.perf_counter()
            out = fn()
            times.append(round(time.perf_counter() - t0, 3))
        rows.append({"operation": name, "seconds": times, "note": note})
        harness.log(f"{name}: {times}")
        return out

    try:
        pid = create_project(ls, "op costs", labels)["id"]
        t0 = time.perf_counter()
        import_texts(ls, pid, recs)
        result["import_s"] = round(time.perf_counter() - t0, 1)

        def dm(filters=(), page_size=1000, fields=None, conj="and"):
            query = {"filters": {"conjunction": conj, "items": list(filters)}, "ordering": ["tasks:id"]}
            params = {"project": pid, "page_size": page_size, "page": 1, "resolve_uri": "false",
                      "query": json.dumps(query)}
            if fields:
                params["fields"] = fields
            return ls.req("GET", "/api/tasks", params=params, timeout=600)

        def gt(value):
            return {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": value}

        first = dm(page_size=1)["tasks"][0]["id"]
        measure("GET /api/projects/{id}", lambda: ls.req("GET", f"/api/projects/{pid}"))
        measure("GET /next (sequential sampling)", lambda: ls.req("GET", f"/api/projects/{pid}/next"), 1)
        measure("task listing, page of 1000 (first page)", lambda: dm([gt(0)]))
        measure("task listing, page of 250", lambda: dm([gt(0)], page_size=250))
        measure("task listing, page of 100", lambda: dm([gt(0)], page_size=100))
        measure("task listing, page of 1000 from the middle (keyset)",
                lambda: dm([gt(first + len(recs) // 2)]))
        measure("task listing, empty page (id > max)", lambda: dm([gt(first + len(recs))]))
        measure("50 tasks by id, with annotations (fields=all)", lambda: dm(
            [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": first + i}
             for i in range(50)], page_size=50, conj="or", fields="all"))
        measure("annotated tasks, page of 100 (none annotated)", lambda: dm(
            [gt(0), {"filter": "filter:tasks:total_annotations", "operator": "greater",
                     "type": "Number", "value": 0}], page_size=100, fields="all"))

        def create(n, version, offset=0):
            for i in range(n):
                ls.req("POST", "/api/predictions", json={
                    "task": first + offset + i, "result": choices_result([labels[0]]),
                    "score": i / 100, "model_version": version})
        measure("POST /api/predictions x20 (one request each)", lambda: create(20, "v1"), 1)
        measure("PATCH project (model_version, sampling)", lambda: ls.req(
            "PATCH", f"/api/projects/{pid}", json={"model_version": "v1",
                                                   "sampling": "Uncertainty sampling"}))
        measure("GET model-versions", lambda: ls.req("GET", f"/api/projects/{pid}/model-versions"))
        measure("GET /next (uncertainty sampling, 20 current predictions)",
                lambda: ls.req("GET", f"/api/projects/{pid}/next"), 1)
        measure("POST /api/predictions x20, version v2", lambda: create(20, "v2", 100), 1)
        measure("DELETE a version of 20 predictions", lambda: ls.req(
            "DELETE", f"/api/projects/{pid}/model-versions/", json={"model_version": "v1"}), 1)
        measure("import/predictions, ONE prediction (bulk endpoint)", lambda: ls.req(
            "POST", f"/api/projects/{pid}/import/predictions", timeout=1800,
            json=[{"task": first + 500, "result": choices_result([labels[0]]), "score": 0.5,
                   "model_version": "bulk"}]), 1,
            note="recounts every task of the project (legacy import path)")
    finally:
        srv.stop()
        result["loadavg_at_end"] = os.getloadavg()
        out = f"{args.out}_{len(recs)}_{args.db}"
        write_results(out, result, markdown(result))
        harness.log(f"results: {out}.json/.md")
    return 0


def markdown(result: dict) -> str:
    lines = md_preamble(f"Label Studio {result['label_studio']} call costs, {result['tasks']} tasks, "
                        f"{result['db']}", result["date"], result["command"]) + [
        f"- machine: {result['cpus']} CPUs (shared), load average at start "
        f"{result['loadavg_at_start']}, at end {result['loadavg_at_end']}",
        f"- import of the tasks (10,000 per request): {result.get('import_s')} s",
        "- one call at a time, nobody else using Label Studio", ""]
    lines += md_table(["operation", "seconds (each repetition)", "note"],
                      [[r["operation"], ", ".join(map(str, r["seconds"])), r["note"]]
                       for r in result["rows"]])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
