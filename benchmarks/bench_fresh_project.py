"""A fresh project with the default pipeline: how soon is the queue ranked, how soon embedded?

    .venv/bin/python benchmarks/bench_fresh_project.py [--tasks 10000] [--db sqlite] \\
        [--timeout-min 30] [--out benchmarks/results/fresh_project]

A real Label Studio 1.23.2 (the e2e harness), a project of ``--tasks`` real texts
(``benchmarks.corpus.source_corpus``), our backend started with NO ``AL_*`` variable (the
default pipeline: sentence embeddings + logistic regression, DiverseMiniBatch, TypiClust cold
start), connected with ``POST /api/ml`` at t = 0. Polled every 0.5 s until the embeddings are
complete and a round has trained on them (one annotation per label is made as soon as the
first queue is live, as annotators would):

* ``first_queue_s``: Label Studio's project serves a studio-al version (the label-free queue);
* ``embedded``: the ``features`` progress of ``GET /status`` over time;
* ``embeddings_complete_s`` / ``embedding_model_s``: every text embedded / the first round
  whose model was trained on the embeddings.

Writes ``<out>_<tasks>_<db>.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
# _common first: it makes benchmarks.* and tests.* importable
from _common import (add_label_studio_args, command_line, create_project, import_texts, machine,
                     md_preamble, md_table, utc_now, write_results)

from benchmarks.corpus import source_corpus
from tests.e2e import harness
from tests.e2e.flows import choices_result, read_jsonl


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_label_studio_args(ap, tasks=10_000, out="fresh_project")
    ap.add_argument("--timeout-min", type=float, default=30.0)
    args = ap.parse_args(argv)
    for name in [k for k in os.environ if k.startswith("AL_")]:
        os.environ.pop(name)   # the default pipeline, whatever the caller's environment
    tmp = Path(tempfile.mkdtemp(prefix="bench_fresh_project_"))
    recs = source_corpus(args.tasks, harness.DATA_DIR, seed=0)
    labels = sorted({r["label"] for r in recs})
    truth = {r["text"]: r["label"] for r in recs}
    result = {"date": utc_now(), "command": command_line(__file__, argv),
              "tasks": args.tasks, "db": args.db,
              "machine": machine(loadavg_at_start=os.getloadavg()),
              "label_studio": harness.LS_VERSION, "timeline": [], "complete": False}
    ls_srv = backend = None
    try:
        ls_srv = harness.start_label_studio(tmp / "ls-data", db=args.db)
        ls = harness.LS(ls_srv.url, logfile=ls_srv.logfile)
        pid = create_project(ls, "fresh", labels)["id"]
        import_texts(ls, pid, recs)
        harness.log(f"project {pid}: {len(recs)} tasks imported")
        backend = harness.start_backend(ls_srv.url, tmp / "model_store", "diverse_mini_batch",
                                        extra_env={"LOG_LEVEL": "INFO"})
        t0 = time.monotonic()
        ml = ls.req("POST", "/api/ml", json={"url": backend.url, "project": pid, "title": "studio-al"})
        result["connect_state"] = ml.get("state")
        annotated: set[str] = set()
        marks: dict[str, float] = {}
        last_print = 0.0
        while time.monotonic() - t0 < args.timeout_min * 60:
            t = round(time.monotonic() - t0, 2)
            st = requests.get(f"{backend.url}/status", params={"project": pid}, timeout=10)
            st = st.json() if st.status_code == 200 else {}
            proj = ls.req("GET", f"/api/projects/{pid}")
            feats = st.get("features") or {}
            result["timeline"].append({"t": t, "model_version": proj.get("model_version"),
                                       "features": feats, "labeled": st.get("labeled")})
            served = proj.get("model_version") or ""
            # a version a round created and Label Studio serves (not "studio-al-untrained",
            # which /setup answers before any round)
            if served.startswith("studio-al-0") and served == st.get("model_version") \
                    and "first_queue_s" not in marks:
                marks["first_queue_s"] = t
                nxt = ls.req("GET", f"/api/projects/{pid}/next")
                result["first_task_served"] = nxt["id"]
            if "first_queue_s" in marks and len(annotated) < len(labels):
                # one annotation per label, as annotators labeling the queue would make them
                for task in ls.req("GET", "/api/tasks", params={"project": pid, "page_size": 500})["tasks"]:
                    label = truth.get(task["data"]["text"])
                    if label and label not in annotated:
                        ls.req("POST", f"/api/tasks/{task['id']}/annotations",
                               json={"result": choices_result([label])}, expect=201)
                        annotated.add(label)
                marks["annotated_s"] = t
            if feats and feats.get("embedded") == feats.get("total") and "embeddings_complete_s" not in marks:
                marks["embeddings_complete_s"] = t
            if feats.get("used") == "embeddings" and (st.get("labeled") or 0) > 0:
                marks["embedding_model_s"] = t
                result["complete"] = True
                break
            if t - last_print >= 15:
                harness.log(f"t={t:.0f}s version={proj.get('model_version')} features={feats} labeled={st.get('labeled')}")
                last_print = t
            time.sleep(0.5)
        result["marks"] = marks
        audit = read_jsonl(tmp / "model_store" / str(pid) / "audit.jsonl")
        result["rounds"] = [{k: r.get(k) for k in ("round", "status", "cold_start", "strategy_used",
                                                   "features", "k", "n_tasks", "timings")} for r in audit]
    finally:
        for srv in (backend, ls_srv):
            if srv is not None:
                srv.stop()
    write_results(f"{args.out}_{args.tasks}_{args.db}", result, markdown(result))
    print(markdown(result))
    return 0 if result["complete"] else 1


def markdown(r: dict) -> str:
    m = r.get("marks", {})
    lines = md_preamble(f"Fresh {r['tasks']}-task project, default pipeline ({r['db']})",
                        r["date"], r["command"]) + [
        f"- machine: {r['machine']}", f"- Label Studio {r['label_studio']}; backend with no `AL_*` "
        "variable (MiniLM embeddings + logistic regression, diverse_mini_batch, typiclust)", ""]
    lines += md_table(["milestone", "seconds after connecting"], [
        [what, m.get(key, "–")]
        for key, what in (("first_queue_s", "first ranked (label-free) queue live in Label Studio"),
                          ("annotated_s", "one annotation per label made"),
                          ("embeddings_complete_s", "every text embedded"),
                          ("embedding_model_s", "a round trained on the embeddings"))])
    lines += ["", f"Complete: {r['complete']}. Rounds:", ""]
    lines += md_table(["round", "status", "cold start", "strategy", "features", "k", "tasks", "total s"], [
        [x["round"], x["status"], x["cold_start"], x["strategy_used"],
         _features(x.get("features") or {}), x["k"], x["n_tasks"], (x.get("timings") or {}).get("total")]
        for x in r.get("rounds", [])])
    return "\n".join(lines) + "\n"


def _features(f: dict) -> str:
    return f"{f.get('used', '–')} {f.get('embedded', '')}/{f.get('total', '')}"


if __name__ == "__main__":
    sys.exit(main())
