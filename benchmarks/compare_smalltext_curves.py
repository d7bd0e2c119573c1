"""Learning curves: ours vs small-text 1.4.1, same configuration, same seeds, in one run.

Configuration (the issue's): TF-IDF features + ConfidenceEnhancedLinearSVC
(``LinearSVC(random_state=0)``), 20 stratified initial labels, 10 rounds of 20. Both sides get
the SAME feature matrix (our TF-IDF, fitted once on the pool; small-text gets it as a
``small_text.SklearnDataset`` since its ``TextDataset`` breaks on numpy 2), the SAME initial
indices per seed (our ``random_stratified`` initialization), and are evaluated on the same
test set. small-text runs its own ``PoolBasedActiveLearner`` with
``SklearnClassifierFactory(ConfidenceEnhancedLinearSVC(...))`` and its own strategies.

Deterministic strategies (least confidence, prediction entropy, breaking ties) should give
identical curves up to ties; ``random`` draws from a different generator on each side
(small-text: the global ``np.random`` seeded with the seed), so it matches only within noise.

    .venv/bin/python benchmarks/compare_smalltext_curves.py                 # TREC, 3 seeds
    .venv/bin/python benchmarks/compare_smalltext_curves.py --dataset sms_spam --dataset ag_news

Writes ``benchmarks/results/curves_vs_smalltext.json`` and ``.md`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import DATA, RESULTS, command_line, log, md_table, write_results

STRATEGIES = ("random", "least_confidence", "prediction_entropy", "breaking_ties")


def smalltext_run(x_train, y_train, x_test, y_test, num_classes, strategy, initial_indices,
                  batch, rounds, seed):
    """One small-text 1.4.1 run; returns per-round test accuracy and queried indices."""
    from sklearn.metrics import accuracy_score, f1_score
    from small_text import (BreakingTies, ConfidenceEnhancedLinearSVC, LeastConfidence,
                            PoolBasedActiveLearner, PredictionEntropy, RandomSampling,
                            SklearnClassifierFactory, SklearnDataset)
    strategies = {"random": RandomSampling, "least_confidence": LeastConfidence,
                  "prediction_entropy": PredictionEntropy, "breaking_ties": BreakingTies}
    np.random.seed(seed)  # small-text's RandomSampling draws from the global state
    train = SklearnDataset(x_train, y_train)
    test = SklearnDataset(x_test, y_test)
    factory = SklearnClassifierFactory(
        ConfidenceEnhancedLinearSVC(linearsvc_kwargs={"random_state": 0}), num_classes)
    learner = PoolBasedActiveLearner(factory, strategies[strategy](), train)
    t0 = time.perf_counter()
    learner.initialize_data(initial_indices, y_train[initial_indices])
    rounds_out = []

    def evaluate(queried, seconds):
        pred = learner.classifier.predict(test)
        rounds_out.append({"labeled": int(learner.indices_labeled.size),
                           "accuracy": float(accuracy_score(y_test, pred)),
                           "macro_f1": float(f1_score(y_test, pred, average="macro", zero_division=0)),
                           "seconds": round(seconds, 4), "queried": [int(i) for i in queried]})

    evaluate(initial_indices, time.perf_counter() - t0)
    for _ in range(rounds):
        t0 = time.perf_counter()
        queried = learner.query(num_samples=batch)
        learner.update(y_train[queried])
        evaluate(queried, time.perf_counter() - t0)
    return rounds_out


def compare_dataset(name: str, seeds, strategies, initial: int, batch: int, rounds: int) -> dict:
    from al_engine.simulate import featurize_pair, load_pair, run_simulation
    train, test = load_pair(DATA / f"{name}.train.jsonl", DATA / f"{name}.test.jsonl")
    train, test = featurize_pair(train, test, "linear_svc")
    k = len(train.target_labels)
    out = {"dataset": name, "pool": len(train), "test": len(test), "classes": k, "cells": []}
    for strategy in strategies:
        ours, ref = [], []
        t_ours = t_ref = 0.0
        for seed in seeds:
            t0 = time.perf_counter()
            run = run_simulation(train, test, strategy=strategy, classifier="linear_svc",
                                 initial=initial, batch=batch, rounds=rounds, seed=seed,
                                 progress=False, stopping=None)
            t_ours += time.perf_counter() - t0
            initial_indices = np.asarray(run["rounds"][0]["queried"], dtype=np.int64)
            t0 = time.perf_counter()
            st = smalltext_run(train.x, train.y, test.x, test.y, k, strategy, initial_indices,
                               batch, rounds, seed)
            t_ref += time.perf_counter() - t0
            ours.append(run["rounds"])
            ref.append(st)
        a = np.array([[r["accuracy"] for r in rs] for rs in ours])
        b = np.array([[r["accuracy"] for r in rs] for rs in ref])
        same_queries = np.mean([[set(x["queried"]) == set(y["queried"]) for x, y in zip(o, s)]
                                for o, s in zip(ours, ref)])
        diff = a.mean(axis=0) - b.mean(axis=0)
        # noise scale: the standard error of the difference of two 3-seed means
        se = np.sqrt(a.var(axis=0, ddof=1) / len(seeds) + b.var(axis=0, ddof=1) / len(seeds)) \
            if len(seeds) > 1 else np.full(diff.shape, np.nan)
        out["cells"].append({
            "strategy": strategy, "seeds": list(seeds), "labeled": [r["labeled"] for r in ours[0]],
            "ours_mean": a.mean(axis=0).round(4).tolist(), "ours_std": a.std(axis=0).round(4).tolist(),
            "smalltext_mean": b.mean(axis=0).round(4).tolist(),
            "smalltext_std": b.std(axis=0).round(4).tolist(),
            "max_abs_diff_of_means": round(float(np.abs(diff).max()), 4),
            "max_diff_over_se": (round(float(np.nanmax(np.abs(diff) / np.maximum(se, 1e-12))), 2)
                                 if np.any(diff != 0) else 0.0),
            "final_ours": round(float(a[:, -1].mean()), 4), "final_smalltext": round(float(b[:, -1].mean()), 4),
            "auc_ours": round(float(np.mean([_auc(rs) for rs in ours])), 4),
            "auc_smalltext": round(float(np.mean([_auc(rs) for rs in ref])), 4),
            "identical_query_sets": round(float(same_queries), 4),
            "seconds_ours": round(t_ours, 2), "seconds_smalltext": round(t_ref, 2),
            "ours_runs": [[r["accuracy"] for r in rs] for rs in ours],
            "smalltext_runs": [[r["accuracy"] for r in rs] for rs in ref],
        })
        c = out["cells"][-1]
        log(f"{name:9s} {strategy:19s} final {c['final_ours']:.4f} vs {c['final_smalltext']:.4f}  "
              f"AUC {c['auc_ours']:.4f} vs {c['auc_smalltext']:.4f}  max|Δmean| "
              f"{c['max_abs_diff_of_means']:.4f}  same query sets {c['identical_query_sets']:.0%}  "
              f"time {t_ours:.1f}s vs {t_ref:.1f}s")
    return out


def _auc(rounds) -> float:
    from al_engine.simulate import curve_auc
    return curve_auc([r["labeled"] for r in rounds], [r["accuracy"] for r in rounds])


def to_markdown(result: dict) -> str:
    cfg = result["config"]
    lines = ["# Learning curves: studio-al vs small-text 1.4.1 (same run)", "",
             f"TF-IDF + ConfidenceEnhancedLinearSVC, {cfg['initial']} stratified initial labels, "
             f"{cfg['rounds']} rounds of {cfg['batch']}, seeds {cfg['seeds']}; same features and "
             f"same initial indices on both sides. Test accuracy, mean ± std over seeds.", "",
             f"Command: `{cfg['command']}`", ""]
    lines += md_table(
        ["dataset", "strategy", "acc. final (ours)", "acc. final (small-text)", "AUC ours",
         "AUC small-text", "max abs diff of mean curves", "identical query sets",
         "time ours / small-text (s)"],
        [[d["dataset"], c["strategy"], f"{c['final_ours']:.4f} ± {c['ours_std'][-1]:.4f}",
          f"{c['final_smalltext']:.4f} ± {c['smalltext_std'][-1]:.4f}", f"{c['auc_ours']:.4f}",
          f"{c['auc_smalltext']:.4f}", f"{c['max_abs_diff_of_means']:.4f}",
          f"{c['identical_query_sets']:.0%}",
          f"{c['seconds_ours']:.1f} / {c['seconds_smalltext']:.1f}"]
         for d in result["datasets"] for c in d["cells"]])
    lines += ["", "Mean curves per round (ours / small-text):", ""]
    for d in result["datasets"]:
        for c in d["cells"]:
            pairs = " ".join(f"{o:.3f}/{s:.3f}" for o, s in zip(c["ours_mean"], c["smalltext_mean"]))
            lines.append(f"- {d['dataset']} {c['strategy']}: {pairs}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", help="name in ../shared/data (default trec)")
    p.add_argument("--strategy", action="append", choices=STRATEGIES)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--initial", type=int, default=20)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--out", default=str(RESULTS / "curves_vs_smalltext"))
    args = p.parse_args(argv)
    seeds = list(range(args.seeds))
    t0 = time.perf_counter()
    result = {"config": {"initial": args.initial, "batch": args.batch, "rounds": args.rounds,
                         "seeds": seeds, "command": command_line(__file__, argv)},
              "datasets": [compare_dataset(name, seeds, args.strategy or STRATEGIES, args.initial,
                                           args.batch, args.rounds)
                           for name in (args.dataset or ["trec"])]}
    result["seconds_total"] = round(time.perf_counter() - t0, 1)
    write_results(args.out, result, to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
