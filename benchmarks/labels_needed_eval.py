"""The labels-needed estimate (al_engine.estimate) against the truth, on datasets where it is known.

Truth: the TEST-set learning curve of TF-IDF + ConfidenceEnhancedLinearSVC trained on nested
random subsets of the pool (25 sizes from 20 to the whole pool, averaged over 3 random
orders); ``n_true`` = the smallest size whose mean accuracy is within ``tol`` of the
whole-pool accuracy. Estimate: :func:`estimate_labels_needed` from the first ``m`` labels of a
random order (no test data), 3 seeds. Reports the estimate, its ratio to the truth, and the
predicted vs true whole-pool accuracy.

    .venv/bin/python benchmarks/labels_needed_eval.py      # sms_spam, trec, ag_news; ~3 min

Writes ``benchmarks/results/labels_needed.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import DATA, RESULTS, command_line, log, md_table, write_results


def evaluate(name: str, budgets, tolerances, seeds) -> dict:
    from al_engine.estimate import estimate_labels_needed
    from al_engine.registry import make_classifier
    from al_engine.simulate import featurize_pair, load_pair
    train, test = featurize_pair(*load_pair(DATA / f"{name}.train.jsonl", DATA / f"{name}.test.jsonl"))
    k = len(train.target_labels)

    def factory():
        return make_classifier("linear_svc", num_classes=k)

    n_pool = len(train)
    sizes = np.unique(np.round(np.geomspace(20, n_pool, 25)).astype(int))
    acc = np.zeros((3, sizes.size))
    for r in range(3):
        order = np.random.default_rng(100 + r).permutation(n_pool)
        for j, n in enumerate(sizes):
            acc[r, j] = np.mean(factory().fit(train[order[:n]]).predict(test) == test.y)
    curve = acc.mean(axis=0)
    full = float(curve[-1])
    out = {"dataset": name, "pool": n_pool, "classes": k, "full_pool_accuracy": round(full, 4),
           "truth_curve": [[int(n), round(float(a), 4)] for n, a in zip(sizes, curve)], "cells": []}
    for tol in tolerances:
        n_true = int(sizes[np.argmax(curve >= full - tol)])
        for m in budgets:
            ests = []
            for seed in seeds:
                order = np.random.default_rng(seed).permutation(n_pool)
                ests.append(estimate_labels_needed(factory, train[order[:m]], pool_size=n_pool,
                                                   tolerance=tol, seed=seed))
            got = [e.labels_needed for e in ests if e.labels_needed is not None]
            cell = {"tolerance": tol, "labeled": m, "n_true": n_true,
                    "estimates": [e.labels_needed for e in ests],
                    "reasons": [e.reason for e in ests if e.reason],
                    "median_estimate": int(np.median(got)) if got else None,
                    "ratio": round(float(np.median(got)) / n_true, 2) if got else None,
                    "predicted_full_accuracy": [e.accuracy_at_pool for e in ests]}
            out["cells"].append(cell)
            log(f"{name:9s} tol={tol} m={m}: truth {n_true}, estimates {cell['estimates']} "
                  f"(ratio {cell['ratio']}), full-pool acc {full:.3f} predicted "
                  f"{cell['predicted_full_accuracy']}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append")
    p.add_argument("--labeled", type=int, action="append", help="labels the estimate sees (default 200, 400)")
    p.add_argument("--tolerance", type=float, action="append", help="default 0.02, 0.05")
    p.add_argument("--out", default=str(RESULTS / "labels_needed"))
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    res = {"datasets": [evaluate(d, args.labeled or [200, 400], args.tolerance or [0.02, 0.05],
                                 seeds=[0, 1, 2])
                        for d in args.dataset or ["sms_spam", "trec", "ag_news"]]}
    res["seconds_total"] = round(time.perf_counter() - t0, 1)
    lines = ["# Labels-needed estimate vs truth", "",
             "Truth from the test-set learning curve (random nested subsets, 3 orders); estimate from "
             "m random labels only (5-fold CV power-law fit), seeds 0-2. "
             f"Command: `{command_line(__file__, argv)}`", ""]
    lines += md_table(["dataset", "tolerance", "labels seen", "true n", "estimates (3 seeds)",
                       "median / true", "full-pool acc. true", "predicted"],
                      [[d["dataset"], c["tolerance"], c["labeled"], c["n_true"], c["estimates"],
                        c["ratio"], f"{d['full_pool_accuracy']:.3f}", c["predicted_full_accuracy"]]
                       for d in res["datasets"] for c in d["cells"]])
    write_results(args.out, res, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
