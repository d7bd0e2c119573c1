"""The dashboard's accuracy estimate against the true test accuracy, in simulated sessions.

A simulated annotation session per dataset and seed runs the backend's loop: each round the
default query strategy (``diverse_mini_batch`` over TF-IDF + ``linear_svc``, the backend's
default without the ``neural`` extra; random order before the first label) ranks the pool,
:func:`al_engine.accuracy.place_probes` puts random probes into the head with probability
``share`` per slot, exactly as a backend round does, and the annotator labels the first
``batch`` tasks of the head. At 20/50/100/200 labels the session records

* the estimate (:func:`al_engine.accuracy.probe_accuracy`: cross-fitted accuracy on the labeled
  probes, 95% Wilson interval) and whether the interval covers the truth;
* the truth: the accuracy, on the dataset's test split, of the model trained on every label,
  and its accuracy on the still-unlabeled pool (what the probes sample; a test split can be
  easier or harder than the pool: TREC's is easier);
* for comparison, 5-fold cross-validation on the same labels (what the dashboard showed before:
  biased, because the labels were chosen actively).

    .venv/bin/python benchmarks/estimate_calibration.py            # 6 datasets, 10 seeds
    .venv/bin/python benchmarks/estimate_calibration.py --dataset trec --seeds 2 --no-write

Writes ``benchmarks/results/estimate_calibration.{json,md}``. Pools are capped at 5,000 tasks
and test splits at 2,000 (seeded subsamples) to keep the run short.
"""
from __future__ import annotations

import argparse
import sys
import time

from _common import DATA, RESULTS, command_line, log, md_preamble, md_table, publish, utc_now

DATASETS = ("sms_spam", "trec", "ag_news", "sst2", "20newsgroups", "reuters21578")
CHECKPOINTS = (20, 50, 100, 200)
POOL_CAP, TEST_CAP = 5000, 2000


def load(name: str, seed: int = 0):
    """TF-IDF features of a dataset's pool and test split (seeded caps)."""
    import numpy as np
    from al_engine.simulate import featurize_pair, load_pair
    train, test = load_pair(DATA / f"{name}.train.jsonl", DATA / f"{name}.test.jsonl")
    rng = np.random.default_rng(seed)
    if len(train) > POOL_CAP:
        train = train[np.sort(rng.choice(len(train), POOL_CAP, replace=False))]
    if len(test) > TEST_CAP:
        test = test[np.sort(rng.choice(len(test), TEST_CAP, replace=False))]
    return featurize_pair(train, test)


def _strategy(multi_label: bool):
    from al_engine.registry import make_query_strategy
    return make_query_strategy("random" if multi_label else "diverse_mini_batch")


def session(train, test, share: float, batch: int, seed: int, checkpoints=CHECKPOINTS
            ) -> tuple[list, dict]:
    """One simulated session: a row per checkpoint, and the first stop of each criterion."""
    import numpy as np
    from al_engine.accuracy import place_probes
    from al_engine.registry import make_classifier
    k, multi = len(train.target_labels), train.is_multi_label

    def factory():
        return make_classifier("linear_svc", num_classes=k, multi_label=multi)

    rng = np.random.default_rng(seed)
    strategy = _strategy(multi)
    labeled = np.zeros(0, dtype=np.int64)
    probe = np.zeros(0, dtype=bool)
    rows, clf = [], None
    stops = _Stops(k, multi, test)
    while labeled.size < max(checkpoints):
        unlabeled = np.setdiff1d(np.arange(len(train)), labeled)
        if clf is None:
            head = rng.permutation(unlabeled)
        else:
            top = np.asarray(strategy.query(clf, train, unlabeled, labeled, train.y[labeled],
                                            n=batch), dtype=np.int64)
            head = np.concatenate([top, unlabeled[~np.isin(unlabeled, top)]])
        order, probes = place_probes(head, share, batch, rng)
        take = order[:batch]
        labeled = np.concatenate([labeled, take])
        probe = np.concatenate([probe, np.isin(take, probes)])
        ys = train.y[labeled]
        if (np.unique(ys).size if np.ndim(ys) == 1 else 2) >= 2:
            clf = factory().fit(train[labeled])
            stops.feed(clf, train, labeled, probe, factory, seed)
        if labeled.size in checkpoints and clf is not None:
            rest = np.setdiff1d(np.arange(len(train)), labeled)
            rows.append(_checkpoint(factory, clf, train[labeled], probe, test, train[rest],
                                    seed))
    return rows, stops.first


class _Stops:
    """The dashboard's default stopping criteria fed after every model, as a round does
    (the pool as stopping set); for each, the first time it says stop: labels, test accuracy,
    the majority label's test accuracy, and whether the probe estimate held the stop back."""

    NAMES = ("kappa_average", "classification_change", "overall_uncertainty", "delta_f_score")

    def __init__(self, k: int, multi: bool, test):
        from al_engine.simulate import build_stopping_criteria
        self.criteria, _ = build_stopping_criteria(k, multi, rounds=20, names=self.NAMES)
        self.multi, self.test = multi, test
        self.first: dict[str, dict | None] = {name: None for name in self.criteria}

    def feed(self, clf, train, labeled, probe, factory, seed) -> None:
        import numpy as np
        from al_engine.accuracy import _correct, probe_accuracy
        from al_engine.stopping_set import criterion_step, stop_arguments
        unlabeled = np.setdiff1d(np.arange(len(train)), labeled)
        kwargs = stop_arguments(clf.predict_proba(train), self.multi, unlabeled)
        fired = [name for name, crit in self.criteria.items()
                 if criterion_step(crit, **kwargs)[0] and self.first[name] is None]
        if not fired:
            return
        test = self.test
        acc = float(np.mean(_correct(test.y, clf.predict(test))))
        est = probe_accuracy(factory, train[labeled], probe, seed=seed)
        majority = None
        if not self.multi:
            major = np.bincount(np.asarray(train.y[labeled], dtype=np.int64)).argmax()
            majority = float(np.mean(np.asarray(test.y) == major))
        for name in fired:
            self.first[name] = {"labeled": int(labeled.size), "test_accuracy": acc,
                                "majority_test_accuracy": majority,
                                "held": est.beats_majority is not True,
                                "estimate": est.to_dict()}


def _checkpoint(factory, clf, labeled, probe, test, pool, seed) -> dict:
    import numpy as np
    from al_engine.accuracy import _correct, probe_accuracy
    from al_engine.estimate import cross_validate
    truth = float(np.mean(_correct(test.y, clf.predict(test))))
    truth_pool = float(np.mean(_correct(pool.y, clf.predict(pool))))
    est = probe_accuracy(factory, labeled, probe, seed=seed)
    try:
        cv = float(cross_validate(factory, labeled, seed=seed).mean[-1])
    except Exception:  # noqa: BLE001 - too few labels of a class for 5 folds
        cv = None
    return {"labeled": len(labeled), "truth": truth, "truth_pool": truth_pool,
            "estimate": est.to_dict(), "cv": cv,
            "covered": est.low <= truth <= est.high,
            "covered_pool": est.low <= truth_pool <= est.high}


def summarize(name: str, runs: list[list[dict]], share: float) -> list[dict]:
    """MAE, coverage and width per checkpoint over seeds."""
    import numpy as np
    out = []
    for m in CHECKPOINTS:
        cells = [r for run in runs for r in run if r["labeled"] == m]
        have = [c for c in cells if c["estimate"]["value"] is not None]
        err = [abs(c["estimate"]["value"] - c["truth"]) for c in have]
        cv_err = [abs(c["cv"] - c["truth"]) for c in cells if c["cv"] is not None]
        cv_bias = [c["cv"] - c["truth"] for c in cells if c["cv"] is not None]
        out.append({
            "dataset": name, "share": share, "labeled": m, "runs": len(cells),
            "with_estimate": len(have),
            "probes_mean": round(float(np.mean([c["estimate"]["n"] for c in cells])), 1)
            if cells else None,
            "truth_mean": round(float(np.mean([c["truth"] for c in cells])), 4) if cells else None,
            "mae": round(float(np.mean(err)), 4) if err else None,
            "coverage": round(float(np.mean([c["covered"] for c in cells])), 3) if cells else None,
            "mae_pool": round(float(np.mean([abs(c["estimate"]["value"] - c["truth_pool"])
                                             for c in have])), 4) if have else None,
            "coverage_pool": round(float(np.mean([c["covered_pool"] for c in cells])), 3)
            if cells else None,
            "pool_mean": round(float(np.mean([c["truth_pool"] for c in cells])), 4)
            if cells else None,
            "width_mean": round(float(np.mean([c["estimate"]["high"] - c["estimate"]["low"]
                                               for c in cells])), 3) if cells else None,
            "cv_mae": round(float(np.mean(cv_err)), 4) if cv_err else None,
            "cv_bias": round(float(np.mean(cv_bias)), 4) if cv_bias else None})
    return out


#: a stop "at chance": the model's test accuracy is at most this far above the majority label's
CHANCE_MARGIN = 0.02


def summarize_stops(name: str, share: float, runs: list, stops: list[dict]) -> list[dict]:
    """Per criterion: how often it fired within the session, when, how far below the
    session's last accuracy, and how often at chance accuracy (and then held back)."""
    import numpy as np
    last = [run[-1]["truth"] for run in runs if run]
    out = []
    for crit in sorted({c for s in stops for c in s}):
        fires = [s[crit] for s in stops if s.get(crit)]
        chance = [f for f in fires if f["majority_test_accuracy"] is not None and
                  f["test_accuracy"] <= f["majority_test_accuracy"] + CHANCE_MARGIN]
        out.append({
            "dataset": name, "share": share, "criterion": crit, "sessions": len(stops),
            "fired": len(fires),
            "median_labels": int(np.median([f["labeled"] for f in fires])) if fires else None,
            "accuracy_at_stop": round(float(np.mean([f["test_accuracy"] for f in fires])), 4)
            if fires else None,
            "accuracy_at_end": round(float(np.mean(last)), 4) if last else None,
            "at_chance": len(chance), "at_chance_shown_as_stop": sum(not f["held"]
                                                                    for f in chance),
            "held": sum(f["held"] for f in fires)})
    return out


def markdown(res: dict, command: str) -> str:
    lines = md_preamble("Accuracy estimate vs true test accuracy", res["date"], command)
    lines += ["", 
        f"Simulated sessions ({res['seeds']} seeds, batch {res['batch']}, probe share "
        f"{res['shares']}): estimate = cross-fitted accuracy on the random probes with a 95% "
        "Wilson interval; truth = test accuracy of the model trained on every label; CV = "
        "5-fold cross-validation on the actively chosen labels (the old dashboard figure). "
        "Coverage counts a session without any probe yet (interval 0-1) as covered; MAE is over "
        "sessions with at least one probe.", ""]
    rows = [[c["dataset"], c["share"], c["labeled"], c["probes_mean"], c["truth_mean"],
             c["pool_mean"], c["mae"], c["coverage"], c["mae_pool"], c["coverage_pool"],
             c["width_mean"], c["cv_mae"], c["cv_bias"]] for c in res["cells"]]
    lines += md_table(["dataset", "share", "labels", "probes (mean)", "test acc. (mean)",
                       "pool acc. (mean)", "MAE vs test", "coverage vs test", "MAE vs pool",
                       "coverage vs pool", "interval width", "CV MAE vs test",
                       "CV bias vs test"], rows)
    lines += ["", "Over all datasets, per checkpoint (coverage: share of sessions whose 95% "
              "interval holds the truth):", ""]
    lines += md_table(["share", "labels", "MAE vs test", "coverage vs test", "MAE vs pool",
                       "coverage vs pool", "CV MAE vs test"],
                      [[o["share"], o["labeled"], o["mae"], o["coverage"], o["mae_pool"],
                        o["coverage_pool"], o["cv_mae"]] for o in res["overall"]])
    lines += ["", "## Stopping criteria in the same sessions", "",
              "The dashboard's criteria with default parameters, fed after every model (the "
              f"pool as stopping set); a session ends at {max(CHECKPOINTS)} labels. *At chance*: "
              f"test accuracy at most {CHANCE_MARGIN} above always answering the majority label. "
              "*Held*: the probe estimate did not show the model beats the majority label, so "
              "the dashboard shows the stop as held (keep labeling).", ""]
    lines += md_table(["dataset", "share", "criterion", "fired / sessions", "median labels",
                       "test acc. at stop", f"test acc. at {max(CHECKPOINTS)}", "at chance",
                       "at chance shown as stop", "held"],
                      [[r["dataset"], r["share"], r["criterion"],
                        f"{r['fired']} / {r['sessions']}", r["median_labels"],
                        r["accuracy_at_stop"], r["accuracy_at_end"], r["at_chance"],
                        r["at_chance_shown_as_stop"], r["held"]] for r in res["stopping"]])
    lines += ["", f"Total {res['seconds_total']} s."]
    return "\n".join(lines) + "\n"


def _overall(cells: list[dict], shares) -> list[dict]:
    import numpy as np
    out = []
    for share in shares:
        for m in CHECKPOINTS:
            cs = [c for c in cells if c["share"] == share and c["labeled"] == m]
            mae = [c["mae"] for c in cs if c["mae"] is not None]
            cv = [c["cv_mae"] for c in cs if c["cv_mae"] is not None]
            mae_pool = [c["mae_pool"] for c in cs if c["mae_pool"] is not None]
            out.append({"share": share, "labeled": m,
                        "mae": round(float(np.mean(mae)), 4) if mae else None,
                        "coverage": round(float(np.mean([c["coverage"] for c in cs])), 3),
                        "mae_pool": round(float(np.mean(mae_pool)), 4) if mae_pool else None,
                        "coverage_pool": round(float(np.mean([c["coverage_pool"] for c in cs])),
                                               3),
                        "cv_mae": round(float(np.mean(cv)), 4) if cv else None})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", choices=DATASETS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--share", type=float, action="append", help="probe share (default 0.1)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--out", default=str(RESULTS / "estimate_calibration"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    shares = args.share or [0.1]
    t0 = time.perf_counter()
    cells, raw, stop_rows = [], {}, []
    for name in args.dataset or DATASETS:
        train, test = load(name)
        for share in shares:
            runs, stops = [], []
            for seed in range(args.seeds):
                rows, first = session(train, test, share, args.batch, seed)
                runs.append(rows)
                stops.append(first)
                log(f"{name} share={share} seed={seed}: " + ", ".join(
                    f"{r['labeled']}: est {r['estimate']['value']} (n={r['estimate']['n']}) "
                    f"truth {r['truth']:.3f}" for r in runs[-1]))
            raw[f"{name}/{share}"] = {"checkpoints": runs, "stops": stops}
            cells += summarize(name, runs, share)
            stop_rows += summarize_stops(name, share, runs, stops)
    res = {"date": utc_now(), "seeds": args.seeds, "batch": args.batch, "shares": shares,
           "cells": cells, "overall": _overall(cells, shares), "stopping": stop_rows,
           "runs": raw,
           "seconds_total": round(time.perf_counter() - t0, 1)}
    publish(args.out, res, markdown(res, command_line(__file__, argv)), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
