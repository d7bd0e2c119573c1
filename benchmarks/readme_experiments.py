"""Regenerate the README's experiment results: learning curves on SMS spam, TREC-6 and AG News.

Runs ``studio-al simulate`` (``al_engine.simulate.main``) once per dataset with TF-IDF +
ConfidenceEnhancedLinearSVC, 20 stratified initial labels, 10 rounds of 20, seeds 0-2, and the
strategies below; then copies the plots to ``docs/`` and writes ``docs/results.md``.

    .venv/bin/python benchmarks/readme_experiments.py            # all three datasets
    .venv/bin/python benchmarks/readme_experiments.py --dataset trec

Per-dataset outputs (results.json, summary.md, PNG) go to ``benchmarks/results/experiments/``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _common import DATA, REPO, RESULTS
DATASETS = ("sms_spam", "trec", "ag_news")
STRATEGIES = ("random", "least_confidence", "prediction_entropy", "breaking_ties",
              "greedy_coreset", "lightweight_coreset")


def main(argv=None) -> int:
    from al_engine.simulate import main as simulate
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", choices=DATASETS)
    p.add_argument("--strategy", action="append")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--docs", default=str(REPO / "docs"))
    args = p.parse_args(argv)
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    sections = []
    for name in args.dataset or DATASETS:
        out = RESULTS / "experiments" / name
        argv_sim = ["--train", str(DATA / f"{name}.train.jsonl"), "--test", str(DATA / f"{name}.test.jsonl"),
                    "--seeds", str(args.seeds), "--initial", "20", "--batch", "20",
                    "--rounds", str(args.rounds), "--out", str(out), "--name", name, "--quiet",
                    "--classifier", "linear_svc", "--init", "random_stratified"]
        for s in args.strategy or STRATEGIES:
            argv_sim += ["--strategy", s]
        t0 = time.perf_counter()
        if simulate(argv_sim) != 0:
            return 1
        wall = time.perf_counter() - t0
        png = docs / f"learning_curves_{name}.png"
        shutil.copyfile(out / "learning_curves_linear_svc.png", png)
        res = json.loads((out / "results.json").read_text())
        est = [r["labels_needed"] for r in res["runs"]
               if r.get("labels_needed") and r["labels_needed"].get("labels_needed") is not None]
        est_line = (f"Labels-needed estimate after {res['runs'][0]['rounds'][-1]['labeled']} labels "
                    f"(tolerance 2 points of the full-pool accuracy, mean over runs): "
                    f"{round(sum(e['labels_needed'] for e in est) / len(est))} labels "
                    f"({len(est)}/{len(res['runs'])} runs gave an estimate)." if est else
                    "Labels-needed estimate: no run gave one (see results.json for the reason).")
        sections.append(
            f"## {name} ({res['dataset']['train']} pool, {res['dataset']['test']} test, "
            f"{res['dataset']['classes']} classes)\n\n![{name}]({png.name})\n\n"
            + (out / "summary.md").read_text().split("\n", 2)[2]
            + f"\n{est_line} Wall time {wall:.0f} s.\n")
    header = ("# Experiment results\n\nTF-IDF + ConfidenceEnhancedLinearSVC, 20 stratified initial "
              f"labels, {args.rounds} rounds of 20, seeds 0..{args.seeds - 1}; mean ± std over seeds. "
              "Stopping table: round at which each criterion (small-text defaults; max_iterations = "
              "half the budget) would have stopped; runs where it never fired count at the last "
              "round. Regenerate with `.venv/bin/python benchmarks/readme_experiments.py`.\n\n")
    (docs / "results.md").write_text(header + "\n".join(sections))
    print(f"wrote {docs / 'results.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
