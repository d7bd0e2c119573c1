"""Labels saved by active learning, per shared dataset: the default pipeline against random
order and against small-text 1.4.1's usual set-up, in one run.

For every dataset of ``../shared/data`` (SMS spam, TREC-6, AG News, SST-2, 20 Newsgroups,
Reuters multi-label), every seed and every set-up below: 20 initial labels chosen without
labels, then rounds of 20 up to 500 labels; accuracy on the dataset's test split after each
round (subset accuracy for Reuters).

Set-ups (``--setups``, default the four of ``CORE``; the first one is the candidate default):

* ``emb_typiclust_diverse`` (the default pipeline): MiniLM sentence embeddings + logistic
  regression (C=10), TypiClust cold start, DiverseMiniBatch (its default ``beta=100``: the
  100·n smallest margins, weighted k-means into n clusters);
* ``emb_typiclust_diverse30`` / ``emb_typiclust_diverse10``: same with ``beta=30`` (the
  previous default) / Zhdanov's ``beta=10``;
* ``emb_typiclust_density``: DiverseMiniBatch (``beta=30``) weighted by information density
  (``density_power=1``);
* ``emb_typiclust_switch10``: TypiClust picks (labeled texts count as covered) until 10
  labels per class, then DiverseMiniBatch (the low-/high-budget switch of Hacohen et al.);
* ``emb_typiclust_bt``: same, plain breaking ties;
* ``emb_random_bt``: same classifier, random cold start, breaking ties;
* ``emb_random``: same classifier, random order (the baseline the goal is measured against);
* ``smalltext_bt``: small-text 1.4.1 itself: TF-IDF + ConfidenceEnhancedLinearSVC +
  BreakingTies + ``random_initialization``;
* ``tfidf_random``: TF-IDF + our ConfidenceEnhancedLinearSVC, random order.

Multi-label data (Reuters) use the backend's multi-label uncertainty (min |p - 0.5|) instead
of breaking ties / DiverseMiniBatch (single-label strategies), and small-text's BreakingTies on
the per-label probabilities.

Reported per dataset and set-up (mean +- std over seeds): accuracy at 100 and 500 labels,
area under the learning curve (mean accuracy over 20..500 labels), and the labels the set-up
needs to reach the accuracy random order reaches at 500 labels (first round whose seed-mean
accuracy is at least that; "> 500" when it never is), with its ratio to 500.

Also: the cold start alone (accuracy after the first 20 labels, emb + logistic regression)
for random, TypiClust and k-means centres.

    .venv/bin/python benchmarks/label_efficiency.py                  # everything, 5 seeds
    .venv/bin/python benchmarks/label_efficiency.py --dataset trec --seeds 2 --budget 100

Sentence embeddings are cached on disk (``--cache``, default ``benchmarks/.cache``): the first
run embeds ~80k texts (about 20 minutes on 2 cores), later runs none.
Writes ``benchmarks/results/label_efficiency.{json,md}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

DATASETS = {  # name -> (pool split, test split)
    "sms_spam": ("train", "test"), "trec": ("train", "test"), "ag_news": ("train", "test"),
    "sst2": ("train", "test"), "reuters21578": ("train", "test"), "20newsgroups": ("train", "test"),
}
SETUPS = ("emb_typiclust_diverse", "emb_typiclust_diverse30", "emb_typiclust_diverse10",
          "emb_typiclust_density", "emb_typiclust_switch10", "emb_typiclust_bt", "emb_random_bt",
          "emb_random", "smalltext_bt", "tfidf_random")
#: what one command runs: the default, plain top-n with the same cold start, random order and
#: small-text's usual set-up (the variants take ``--setups``)
CORE = ("emb_typiclust_diverse", "emb_typiclust_bt", "emb_random", "smalltext_bt")
BASELINE = "emb_random"
COLD_STARTS = ("random", "typiclust", "kmeans_centres")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ data
def load(name: str, cache: str) -> dict:
    from al_engine.data import LabelEncoding
    from al_engine.features import TfidfFeaturizer
    from al_engine.features_neural import SentenceEmbeddingFeaturizer
    from al_engine.simulate import read_jsonl
    pool_split, test_split = DATASETS[name]
    tr_texts, tr_labels = read_jsonl(DATA / f"{name}.{pool_split}.jsonl")
    te_texts, te_labels = read_jsonl(DATA / f"{name}.{test_split}.jsonl")
    multi = isinstance(tr_labels[0], list)
    enc = LabelEncoding(multi_label=multi).fit(list(tr_labels) + list(te_labels))
    encode = (lambda labels: enc.encode_multi(labels)[0]) if multi else enc.encode
    t0 = time.perf_counter()
    emb = SentenceEmbeddingFeaturizer(cache_dir=cache).fit()
    x_emb, t_emb = emb.transform(tr_texts), emb.transform(te_texts)
    tfidf = TfidfFeaturizer().fit(tr_texts)
    log(f"{name}: pool {len(tr_texts)}, test {len(te_texts)}, {len(enc.classes_)} classes, "
        f"multi-label {multi}, features {time.perf_counter() - t0:.1f} s")
    return {"name": name, "multi": multi, "classes": list(enc.classes_),
            "y": encode(tr_labels), "y_test": encode(te_labels),
            "emb": x_emb, "emb_test": t_emb, "texts": tr_texts,
            "tfidf": tfidf.transform(tr_texts), "tfidf_test": tfidf.transform(te_texts)}


# ------------------------------------------------------------------ our loop
def _classifier(kind: str, ds: dict):
    from sklearn.linear_model import LogisticRegression
    from al_engine.classifiers.sklearn import ConfidenceEnhancedLinearSVC, SklearnClassifier
    est = (LogisticRegression(C=10.0, max_iter=1000, random_state=0) if kind == "emb"
           else ConfidenceEnhancedLinearSVC())
    return SklearnClassifier(est, num_classes=len(ds["classes"]), multi_label=ds["multi"])


def cold_start(kind: str, x: np.ndarray, n: int, seed: int) -> np.ndarray:
    from al_engine.coldstart import KMeansCentres, TypiClust
    if kind == "random":
        return np.random.default_rng(seed).choice(x.shape[0], size=n, replace=False)
    cls = TypiClust if kind == "typiclust" else KMeansCentres
    return cls(seed=seed).select(x, n)


class _TypicalFirst:
    """Experiment: TypiClust picks (labeled rows count as covered) while fewer than
    ``per_class * n_classes`` labels exist, then ``then``."""

    def __init__(self, then, x, n_classes: int, seed: int, per_class: int):
        self.then, self.x, self.n_classes, self.seed = then, x, n_classes, seed
        self.per_class = per_class

    def query(self, clf, pool, unl, labeled, y, n=10):
        from al_engine.coldstart import TypiClust
        if labeled.size < self.per_class * self.n_classes:
            return TypiClust(seed=self.seed + int(labeled.size)).select(self.x, n, labeled)
        return self.then.query(clf, pool, unl, labeled, y, n=n)


def _strategy(setup: str, multi: bool, seed: int, ds: dict | None = None):
    from al_engine.query.diverse import DiverseMiniBatch
    from al_engine.query.random import RandomSampling
    from al_engine.query.uncertainty import BreakingTies
    if setup.endswith("_random"):
        return RandomSampling(seed=seed)
    if multi:
        return "multi_label_uncertainty"
    if setup.endswith("_switch10"):
        return _TypicalFirst(DiverseMiniBatch(seed=seed), ds["emb"], len(ds["classes"]), seed,
                             per_class=10)
    if setup.endswith("_diverse30"):
        return DiverseMiniBatch(seed=seed, beta=30)
    if setup.endswith("_diverse"):
        return DiverseMiniBatch(seed=seed)
    if setup.endswith("_density"):
        return DiverseMiniBatch(seed=seed, beta=30, density_power=1.0)
    if setup.endswith("_diverse10"):
        return DiverseMiniBatch(seed=seed, beta=10)
    return BreakingTies()


def run_ours(setup: str, ds: dict, seed: int, initial: int, batch: int, budget: int) -> dict:
    from al_engine.data import Dataset
    from al_engine.simulate import _metrics
    from backend.training import multi_label_uncertainty_order
    kind = "emb" if setup.startswith("emb") else "tfidf"
    x, x_test = ds[kind], ds[f"{kind}_test"]
    y = ds["y"]
    pool = Dataset(x=x, y=y)
    test = Dataset(x=x_test, y=ds["y_test"])
    init = "typiclust" if "typiclust" in setup else "random"
    labeled = np.asarray(cold_start(init, ds["emb"], initial, seed), dtype=np.int64)
    strategy = _strategy(setup, ds["multi"], seed, ds)
    curve, t_query = [], 0.0
    while True:
        clf = _classifier(kind, ds).fit(pool[labeled])
        curve.append({"labeled": int(labeled.size),
                      **_metrics(ds["y_test"], clf.predict(test), ds["multi"])})
        if labeled.size >= budget:
            break
        mask = np.ones(len(pool), dtype=bool)
        mask[labeled] = False
        unl = np.flatnonzero(mask)
        t0 = time.perf_counter()
        if strategy == "multi_label_uncertainty":
            proba = clf.predict_proba(pool)
            q = multi_label_uncertainty_order(np.asarray(proba), unl)[:batch]
        else:
            q = strategy.query(clf, pool, unl, labeled, y[labeled], n=min(batch, budget - labeled.size))
        t_query += time.perf_counter() - t0
        labeled = np.concatenate([labeled, np.asarray(q, dtype=np.int64)])
    return {"curve": curve, "query_seconds": t_query, "first": labeled[:initial].tolist()}


def cold_start_alone(ds: dict, seeds: int, initial: int) -> dict:
    """Accuracy (mean, std over seeds) of emb + logistic regression trained on the first
    ``initial`` labels of each cold start."""
    from al_engine.data import Dataset
    from al_engine.simulate import _metrics
    out = {}
    for kind in COLD_STARTS:
        accs = []
        for seed in range(seeds):
            idx = cold_start(kind, ds["emb"], initial, seed)
            clf = _classifier("emb", ds).fit(Dataset(x=ds["emb"][idx], y=ds["y"][idx]))
            accs.append(_metrics(ds["y_test"], clf.predict(Dataset(x=ds["emb_test"])),
                                 ds["multi"])["accuracy"])
        out[kind] = (float(np.mean(accs)), float(np.std(accs)))
    return out


# ------------------------------------------------------------------ small-text itself
def run_smalltext(ds: dict, seed: int, initial: int, batch: int, budget: int) -> dict:
    import small_text as st
    from al_engine.simulate import _metrics
    np.random.seed(seed)          # small-text draws from numpy's global state
    y = ds["y"]
    y_st = sp.csr_matrix(y) if ds["multi"] else np.asarray(y)
    labels = np.arange(len(ds["classes"]))
    train = st.SklearnDataset(ds["tfidf"], y_st, target_labels=labels)
    test = st.SklearnDataset(ds["tfidf_test"],
                             sp.csr_matrix(ds["y_test"]) if ds["multi"] else np.asarray(ds["y_test"]),
                             target_labels=labels)
    factory = st.SklearnClassifierFactory(st.ConfidenceEnhancedLinearSVC(), len(ds["classes"]),
                                          kwargs={"multi_label": ds["multi"]})
    learner = st.PoolBasedActiveLearner(factory, st.BreakingTies(), train)
    init = st.random_initialization(y_st, n_samples=initial)
    learner.initialize_data(init, y_st[init])
    curve, t_query, n = [], 0.0, initial
    while True:
        curve.append({"labeled": n, **_metrics(ds["y_test"], learner.classifier.predict(test), ds["multi"])})
        if n >= budget:
            break
        t0 = time.perf_counter()
        q = learner.query(num_samples=min(batch, budget - n))
        t_query += time.perf_counter() - t0
        learner.update(y_st[q])
        n += len(q)
    return {"curve": curve, "query_seconds": t_query, "first": np.asarray(init).tolist()}


# ------------------------------------------------------------------ summary
def _acc(run: dict) -> np.ndarray:
    return np.array([p["accuracy"] for p in run["curve"]])


def summarize(runs: dict, budget: int) -> dict:
    """Per set-up: seed-mean curve, AUC, accuracy at 100/budget, labels to reach the
    baseline's final accuracy (from the seed-mean curves)."""
    from al_engine.simulate import curve_auc
    labeled = [p["labeled"] for p in next(iter(runs.values()))[0]["curve"]]
    base = np.mean([_acc(r) for r in runs[BASELINE]], axis=0) if BASELINE in runs else None
    target = float(base[-1]) if base is not None else None
    out = {}
    for setup, rs in runs.items():
        acc = np.array([_acc(r) for r in rs])
        mean = acc.mean(axis=0)
        aucs = [curve_auc(labeled, a) for a in acc]
        at = {n: (float(acc[:, labeled.index(n)].mean()), float(acc[:, labeled.index(n)].std()))
              for n in (100, budget) if n in labeled}
        need = None
        if target is not None:
            hit = np.flatnonzero(mean >= target - 1e-12)
            need = int(labeled[hit[0]]) if hit.size else None
        # per-seed labels needed (spread), against the same target
        per_seed = []
        for a in acc:
            hit = np.flatnonzero(a >= target - 1e-12) if target is not None else np.array([])
            per_seed.append(int(labeled[hit[0]]) if hit.size else None)
        out[setup] = {"labeled": labeled, "mean_curve": mean.round(4).tolist(),
                      "auc": (float(np.mean(aucs)), float(np.std(aucs))),
                      "accuracy_at": {str(k): v for k, v in at.items()},
                      "labels_to_baseline_final": need, "labels_to_baseline_final_per_seed": per_seed,
                      "ratio": (need / budget) if need is not None else None,
                      "query_seconds": float(np.mean([r["query_seconds"] for r in rs]))}
    out["_target"] = target
    return out


def _pm(pair, digits=3) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def markdown(result: dict) -> str:
    budget = result["budget"]
    lines = ["# Label efficiency: the default pipeline vs random order vs small-text 1.4.1", "",
             f"- date: {result['date']}", f"- command: `{result['command']}`",
             f"- machine: {result['machine']}",
             f"- {result['seeds']} seeds, {result['initial']} initial labels (label-free), rounds "
             f"of {result['batch']} up to {budget}; accuracy on the test split (subset accuracy "
             f"for Reuters); baseline `{BASELINE}` (same classifier as the default, random order)",
             f"- wall time {result['seconds']:.0f} s", ""]
    ratios = []
    for name, s in result["summary"].items():
        lines += [f"## {name}", "",
                  f"Target: the accuracy `{BASELINE}` reaches at {budget} labels = "
                  f"{s['_target']:.3f}.", "",
                  f"| set-up | acc@100 | acc@{budget} | AUC 20..{budget} | labels to target | ratio | per seed | query s/run |",
                  "|---|---|---|---|---|---|---|---|"]
        for setup in result["setups"]:
            r = s[setup]
            at = {k: _pm(v) for k, v in r["accuracy_at"].items()}
            need = r["labels_to_baseline_final"]
            lines.append(f"| {setup} | {at.get('100', '–')} | {at.get(str(budget), '–')} "
                         f"| {_pm(r['auc'])} | {need if need is not None else f'> {budget}'} "
                         f"| {f'{need / budget:.2f}' if need is not None else '> 1'} "
                         f"| {r['labels_to_baseline_final_per_seed']} | {r['query_seconds']:.1f} |")
        ratios.append((name, s[result["setups"][0]]["ratio"]))
        lines.append("")
    if result.get("cold_start"):
        lines += ["## Cold start alone", "",
                  f"Accuracy after the first {result['initial']} labels (emb + logistic regression), "
                  f"mean ± std over seeds:", "", "| dataset | " + " | ".join(COLD_STARTS) + " |",
                  "|---|" + "---|" * len(COLD_STARTS)]
        for name, cs in result["cold_start"].items():
            lines.append(f"| {name} | " + " | ".join(_pm(cs[k]) for k in COLD_STARTS) + " |")
        lines.append("")
    lines += ["## Default vs random order", "", "| dataset | labels ratio (default / random@500) |",
              "|---|---|"]
    for name, ratio in ratios:
        lines.append(f"| {name} | {ratio:.2f} |" if ratio is not None else f"| {name} | > 1 |")
    known = [r for _, r in ratios if r is not None]
    lines += ["", f"Mean ratio over datasets: "
              f"{np.mean([r if r is not None else 1.0 for _, r in ratios]):.2f} "
              f"(a dataset where the default never reaches the target counted as 1.0; "
              f"{len(known)}/{len(ratios)} reached it)", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """One panel per dataset: the seed-mean learning curve of every set-up, the baseline's
    final accuracy as a dotted line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(result["summary"])
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        s = result["summary"][name]
        for setup in result["setups"]:
            r = s[setup]
            ax.plot(r["labeled"], r["mean_curve"], label=setup,
                    lw=2.2 if setup == result["setups"][0] else 1.2)
        if s["_target"] is not None:
            ax.axhline(s["_target"], ls=":", c="grey", lw=1)
        ax.set_title(name)
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", action="append", choices=list(DATASETS))
    ap.add_argument("--setups", nargs="+", default=list(CORE), choices=SETUPS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--initial", type=int, default=20)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--cache", default=str(ROOT / "benchmarks" / ".cache"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_efficiency"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "label_efficiency.png"),
                    help="PNG of the learning curves ('' for none)")
    ap.add_argument("--replot", action="store_true", help="only redraw --plot from --out's JSON")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.replot:
        plot(json.loads(Path(f"{args.out}.json").read_text()), Path(args.plot))
        return 0
    if BASELINE not in args.setups:
        args.setups.append(BASELINE)
    t_start = time.perf_counter()
    summary, cold, raw = {}, {}, {}
    for name in args.dataset or list(DATASETS):
        ds = load(name, args.cache)
        runs = {s: [] for s in args.setups}
        for seed in range(args.seeds):
            for setup in args.setups:
                t0 = time.perf_counter()
                run = (run_smalltext(ds, seed, args.initial, args.batch, args.budget)
                       if setup == "smalltext_bt" else
                       run_ours(setup, ds, seed, args.initial, args.batch, args.budget))
                runs[setup].append(run)
                log(f"{name} seed {seed} {setup}: acc@{args.budget} "
                    f"{run['curve'][-1]['accuracy']:.3f} ({time.perf_counter() - t0:.1f} s)")
        cold[name] = cold_start_alone(ds, args.seeds, args.initial)
        log(f"{name} cold start: " + ", ".join(f"{k} {_pm(v)}" for k, v in cold[name].items()))
        summary[name] = summarize(runs, args.budget)
        raw[name] = runs
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + (argv or sys.argv[1:])),
              "machine": f"{os.cpu_count()} CPUs, {platform.python_version()}",
              "seeds": args.seeds, "initial": args.initial, "batch": args.batch, "budget": args.budget,
              "setups": args.setups, "seconds": time.perf_counter() - t_start,
              "summary": summary, "cold_start": cold, "runs": raw}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1, default=float))
    Path(f"{out}.md").write_text(markdown(result))
    if args.plot:
        plot(result, Path(args.plot))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
