"""Pool-based active-learning simulation: a labeled pool plays the oracle.

Used by ``studio-al simulate`` and by the benchmarks. One run = one (strategy, classifier,
seed): initialize with ``initial`` labels, then ``rounds`` times query ``batch`` positions,
reveal their true labels, retrain, and evaluate on the test set. In every run each stopping
criterion is fed the model's predictions on the pool after every round, and the first round
at which it would have stopped is recorded.

    studio-al simulate --train ../shared/data/trec.train.jsonl \\
        --test ../shared/data/trec.test.jsonl --strategy random --strategy breaking_ties \\
        --seeds 3 --initial 20 --batch 20 --rounds 10 --out results/trec

writes ``results.json`` (shape below), ``summary.md`` (tables) and ``learning_curves_*.png``::

    {"config": {...}, "dataset": {...},
     "runs": [{"strategy", "seed", "classifier", "auc", "auc_macro_f1",
               "rounds": [{"labeled", "accuracy", "macro_f1", "seconds", "query_seconds",
                           "queried": [...]}, ...],
               "stopping": {criterion: round or null}, "stopping_skipped": {criterion: reason},
               "stopping_values": {criterion: [statistic per round]},
               "labels_needed": {...} or null}],
     "summary": [...], "stopping_table": [...]}
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import NON_NEGATIVE_INT, POSITIVE_INT, validate_params
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError

log = logging.getLogger(__name__)

#: the five stopping criteria evaluated in every run
STOPPING_CRITERIA = ("kappa_average", "delta_f_score", "classification_change",
                     "overall_uncertainty", "max_iterations")


# ------------------------------------------------------------------ data
def read_jsonl(path: str | Path) -> tuple[list[str], list]:
    """Texts and labels from a JSON Lines file of ``{"text", "label"}`` or ``{"text", "labels"}``."""
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "text" not in row or not ("label" in row or "labels" in row):
                raise ValueError(f"{path}:{lineno}: each line needs 'text' and 'label' or 'labels'")
            texts.append(row["text"])
            labels.append(row["labels"] if "labels" in row else row["label"])
    if not texts:
        raise ValueError(f"{path}: no records")
    return texts, labels


def load_pair(train_path, test_path) -> tuple[Dataset, Dataset]:
    """Train and test datasets with a shared label encoding (train's label set)."""
    train_texts, train_labels = read_jsonl(train_path)
    test_texts, test_labels = read_jsonl(test_path)
    train = Dataset.from_texts(train_texts, train_labels)
    test = Dataset.from_texts(test_texts, test_labels, target_labels=train.target_labels,
                              multi_label=train.is_multi_label)
    return train, test


def load_split(path, test_fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
    """One file split into train and test: stratified for single-label data (each class with
    at least two documents gives ``round(fraction * size)``, at least one, to the test set)."""
    if not 0.0 < test_fraction < 1.0:
        raise InvalidParameterError(f"test_split must be in (0, 1), got {test_fraction}")
    texts, labels = read_jsonl(path)
    data = Dataset.from_texts(texts, labels)
    rng = np.random.default_rng(seed)
    n = len(data)
    if data.is_multi_label:
        te = rng.permutation(n)[:max(1, int(round(test_fraction * n)))]
    else:  # per class, the first round(fraction * size) of a random order (at least one)
        perm = rng.permutation(n)
        order = perm[np.argsort(data.y[perm], kind="stable")]
        counts = np.bincount(data.y)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n) - np.repeat(starts, counts)
        take = np.repeat(np.maximum(1, np.round(test_fraction * counts)).astype(int), counts)
        te = order[(rank < take) & np.repeat(counts >= 2, counts)]
    mask = np.zeros(n, dtype=bool)
    mask[te] = True
    tr, te = np.flatnonzero(~mask), np.flatnonzero(mask)
    return data[np.sort(tr)], data[np.sort(te)]


def featurize_pair(train: Dataset, test: Dataset, classifier: str = "linear_svc",
                   classifier_params: dict | None = None) -> tuple[Dataset, Dataset]:
    """Featurize the pool once (featurizer fitted on the pool's texts, unsupervised) and the
    test set with it, so that many runs share the features. Classifiers without a
    featurizer get the datasets back unchanged."""
    from al_engine.registry import make_classifier
    probe = make_classifier(classifier, num_classes=len(train.target_labels),
                            multi_label=train.is_multi_label, **(classifier_params or {}))
    if not hasattr(probe, "featurize") or train.x is not None:
        return train, test
    return probe.featurize(train), probe.featurize(test)


# ------------------------------------------------------------------ metrics
def _metrics(y_true, y_pred, multi_label: bool) -> dict:
    """Accuracy (subset accuracy for multi-label) and macro-F1 (per label for multi-label)."""
    from sklearn.metrics import accuracy_score, f1_score
    if multi_label:
        y_true = sp.csr_matrix(y_true)
        y_pred = sp.csr_matrix(y_pred, shape=y_true.shape)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}


def curve_auc(labeled: Sequence[float], scores: Sequence[float]) -> float:
    """Normalized area under a learning curve: :math:`\\frac{1}{n_T - n_0}\\int_{n_0}^{n_T} s(n)\\,dn`
    by the trapezoidal rule (the mean score over the labeling budget, in [0, 1])."""
    x = np.asarray(labeled, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if x.size == 1 or x[-1] == x[0]:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0 / (x[-1] - x[0]))


# ------------------------------------------------------------------ stopping
def build_stopping_criteria(num_classes: int, multi_label: bool, rounds: int,
                            names: Sequence[str] = STOPPING_CRITERIA,
                            params: dict | None = None) -> tuple[dict, dict]:
    """Fresh stopping criteria for one run, and the reasons why others were skipped.

    Defaults are small-text's; ``max_iterations`` defaults to ``rounds // 2 + 1`` (it then
    stops at round ``rounds // 2``: half the budget). ``params`` maps a name to its
    keyword arguments.
    """
    from al_engine.registry import available, make_stopping_criterion
    params = params or {}
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise InvalidParameterError(f"stopping_params: {unknown[0]!r} is not among the evaluated "
                                    f"criteria {list(names)}")
    criteria, skipped = {}, {}
    for name in names:
        if name not in available("stopping_criterion"):
            raise InvalidParameterError(f"unknown stopping criterion {name!r}; allowed: "
                                        f"{', '.join(available('stopping_criterion'))}")
        kwargs = dict(params.get(name, {}))
        if name == "max_iterations":
            kwargs.setdefault("max_iterations", rounds // 2 + 1)
        else:
            kwargs.setdefault("num_classes", num_classes)
        if multi_label and name in ("kappa_average", "delta_f_score"):
            skipped[name] = "single-label only"
            continue
        if name == "delta_f_score" and num_classes != 2:
            skipped[name] = f"binary only ({num_classes} classes)"
            continue
        criteria[name] = make_stopping_criterion(name, **kwargs)
    return criteria, skipped


# ------------------------------------------------------------------ one run
def run_simulation(train: Dataset, test: Dataset, strategy: str = "breaking_ties",
                   classifier: str = "linear_svc", initialization: str = "random_stratified",
                   initial: int = 20, batch: int = 20, rounds: int = 10, seed: int = 0,
                   strategy_params: dict | None = None, classifier_params: dict | None = None,
                   progress: bool | Callable[[], None] = True,
                   stopping: Sequence[str] | None = STOPPING_CRITERIA,
                   stopping_params: dict | None = None,
                   estimate: bool = False, estimate_tolerance: float = 0.02) -> dict:
    """Run one simulation and return its learning curve.

    Parameters
    ----------
    train, test : Dataset
        The pool (its true labels are the oracle) and the evaluation set, same label encoding.
        Either may already carry features (see :func:`featurize_pair`).
    strategy, classifier, initialization : str
        Registry names; ``*_params`` are their keyword arguments. Strategies that take a
        ``seed`` (random, subsampling, lightweight coreset, ...) get the run's ``seed`` unless
        given, so that a run is reproducible.
    initial, batch, rounds, seed : int
    progress : bool or callable
        True: a progress bar for this run; a callable is called once per finished round.
    stopping : sequence of str or None
        Stopping criteria to evaluate (None: none), on the whole pool as stopping set
        (:mod:`al_engine.stopping_set`); ``stopping_params``: ``{criterion: {param: value}}``.
    estimate : bool
        Also compute the labels-needed estimate (:mod:`al_engine.estimate`) from the final
        labeled set (no test data involved).

    Returns
    -------
    dict
        ``{"strategy", "classifier", "seed", "rounds": [{"labeled", "accuracy",
        "macro_f1", "seconds", "query_seconds", "queried"}], "auc", "auc_macro_f1",
        "stopping": {criterion: first stopping round or None}, "stopping_skipped",
        "stopping_values": {criterion: [its statistic at each round, None before it has one]},
        "labels_needed"}``; round 0 is the initial model, ``seconds`` is query + retraining.
    """
    from al_engine.registry import make_initialization
    _check_run_sizes(train, initial, batch, rounds)
    learner, new_classifier = _new_learner(train, strategy, classifier, strategy_params,
                                           classifier_params, seed)
    criteria, skipped = build_stopping_criteria(len(train.target_labels), train.is_multi_label,
                                                rounds, stopping or (), stopping_params)
    start = time.perf_counter()
    learner.initialize(make_initialization(initialization, seed=seed), train.y, initial)
    log_ = _RunLog(learner, test, train.is_multi_label, criteria, skipped)
    log_.record(learner.indices_labeled, time.perf_counter() - start, 0.0)
    with _progress(progress, f"{strategy} seed={seed}", rounds) as tick:
        _query_rounds(learner, train.y, batch, rounds, log_, tick)
    run = log_.result(strategy, classifier, seed)
    if estimate:
        from al_engine.estimate import estimate_labels_needed
        est = estimate_labels_needed(new_classifier, learner.training_set(),
                                     pool_size=len(learner.dataset),
                                     tolerance=estimate_tolerance, seed=seed)
        run["labels_needed"] = est.to_dict()
    return run


def _check_run_sizes(train: Dataset, initial, batch, rounds) -> None:
    validate_params({"initial": POSITIVE_INT, "batch": POSITIVE_INT, "rounds": NON_NEGATIVE_INT},
                    {"initial": initial, "batch": batch, "rounds": rounds})
    if initial > len(train):
        raise InvalidParameterError(f"initial={initial} exceeds the pool size {len(train)}")


def _new_learner(train: Dataset, strategy: str, classifier: str, strategy_params,
                 classifier_params, seed: int):
    """``(learner, classifier factory)`` over the pool of ``train`` without its labels; a
    strategy that takes a ``seed`` draws from the run's unless given one."""
    from al_engine.learner import PoolBasedActiveLearner
    from al_engine.registry import accepted_params, make_classifier, make_query_strategy
    num_classes, multi_label = len(train.target_labels), train.is_multi_label
    params = dict(classifier_params or {})

    def new_classifier():
        return make_classifier(classifier, num_classes=num_classes, multi_label=multi_label,
                               **params)

    sparams = dict(strategy_params or {})
    if "seed" not in sparams and \
            "seed" in accepted_params("query_strategy", strategy):
        sparams["seed"] = seed
    pool = Dataset(x=train.x, y=None, texts=train.texts, target_labels=train.target_labels,
                   multi_label=multi_label)
    learner = PoolBasedActiveLearner(new_classifier, make_query_strategy(strategy, **sparams),
                                     pool)
    return learner, new_classifier


@contextmanager
def _progress(progress: bool | Callable[[], None], desc: str, total: int):
    """Yields the per-round callback: a progress bar's (``progress=True``), ``progress``
    itself when callable, else None."""
    if progress is not True:
        yield progress if callable(progress) else None
        return
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, unit="round", file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def _query_rounds(learner, y_oracle, batch: int, rounds: int, run_log: "_RunLog",
                  tick: Callable[[], None] | None) -> None:
    """Up to ``rounds`` times: query ``batch`` positions, reveal their labels from
    ``y_oracle``, retrain (``learner.update``) and record the round."""
    for _ in range(rounds):
        if learner.indices_unlabeled.size < batch:
            log.warning("pool exhausted after %d rounds", len(run_log.rows) - 1)
            break
        t0 = time.perf_counter()
        queried = learner.query(batch)
        t_query = time.perf_counter() - t0
        learner.update(y_oracle[queried])
        run_log.record(queried, time.perf_counter() - t0, t_query)
        if tick is not None:
            tick()


class _RunLog:
    """The learning curve of one run and its stopping criteria, recorded after each model:
    the test-set scores, and every criterion fed the model's probabilities on the pool (the
    stopping set, its unlabeled part as ``indices_stopping``)."""

    def __init__(self, learner, test: Dataset, multi_label: bool, criteria: dict,
                 skipped: dict):
        self.learner, self.test, self.multi_label = learner, test, multi_label
        self.test_features = learner.featurize(test)
        self.criteria, self.skipped = criteria, skipped
        self.rows: list[dict] = []
        self.stopped: dict[str, int | None] = {name: None for name in criteria}
        self.values: dict[str, list] = {name: [] for name in criteria}

    def record(self, queried, seconds: float, query_seconds: float) -> None:
        learner, multi_label = self.learner, self.multi_label
        self.rows.append({"labeled": int(learner.indices_labeled.size),
                          **_metrics(self.test.y, learner.classifier.predict(self.test_features),
                                     multi_label),
                          "seconds": round(seconds, 4), "query_seconds": round(query_seconds, 4),
                          "queried": [int(i) for i in queried]})
        if self.criteria:
            self._feed_criteria()

    def _feed_criteria(self) -> None:
        from al_engine.stopping_set import criterion_step, stop_arguments
        learner = self.learner
        kwargs = stop_arguments(learner.classifier.predict_proba(learner.dataset),
                                self.multi_label, learner.indices_unlabeled)
        for name, criterion in self.criteria.items():
            fired, value = criterion_step(criterion, **kwargs)
            self.values[name].append(None if value is None else round(value, 5))
            if fired and self.stopped[name] is None:
                self.stopped[name] = len(self.rows) - 1

    def result(self, strategy: str, classifier: str, seed: int) -> dict:
        curve = self.rows
        labeled = [r["labeled"] for r in curve]
        return {"strategy": strategy, "classifier": classifier, "seed": int(seed),
                "rounds": curve, "auc": curve_auc(labeled, [r["accuracy"] for r in curve]),
                "auc_macro_f1": curve_auc(labeled, [r["macro_f1"] for r in curve]),
                "stopping": self.stopped, "stopping_skipped": self.skipped,
                "stopping_values": self.values, "labels_needed": None}


# ------------------------------------------------------------------ aggregation
def _mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def summarize(runs: list[dict]) -> list[dict]:
    """Per (classifier, strategy): learning curves mean ± std over seeds, AUC, timings."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["classifier"], run["strategy"]), []).append(run)
    out = []
    for (clf, strategy), group in groups.items():
        length = min(len(r["rounds"]) for r in group)
        acc = np.array([[x["accuracy"] for x in r["rounds"][:length]] for r in group])
        f1 = np.array([[x["macro_f1"] for x in r["rounds"][:length]] for r in group])
        secs = [x["seconds"] for r in group for x in r["rounds"][1:length]]
        auc_m, auc_s = _mean_std([r["auc"] for r in group])
        needed = [r["labels_needed"]["labels_needed"] for r in group
                  if r.get("labels_needed") and r["labels_needed"].get("labels_needed") is not None]
        out.append({
            "classifier": clf, "strategy": strategy, "seeds": [r["seed"] for r in group],
            "labeled": [x["labeled"] for x in group[0]["rounds"][:length]],
            "accuracy_mean": acc.mean(axis=0).round(5).tolist(),
            "accuracy_std": acc.std(axis=0).round(5).tolist(),
            "macro_f1_mean": f1.mean(axis=0).round(5).tolist(),
            "macro_f1_std": f1.std(axis=0).round(5).tolist(),
            "final_accuracy": [round(float(acc[:, -1].mean()), 5), round(float(acc[:, -1].std()), 5)],
            "final_macro_f1": [round(float(f1[:, -1].mean()), 5), round(float(f1[:, -1].std()), 5)],
            "auc": [round(auc_m, 5), round(auc_s, 5)],
            "seconds_per_round": round(float(np.mean(secs)), 4) if secs else None,
            "labels_needed_mean": round(float(np.mean(needed))) if needed else None,
        })
    return out


def stopping_table(runs: list[dict]) -> list[dict]:
    """Per (classifier, strategy, criterion): when it stopped and the accuracy there, versus
    the final and the best accuracy of the same runs (means over seeds; runs in which the
    criterion never fired count as stopping at the last round, ``stopped`` says how many fired).
    A criterion that fired in no run has no stop: ``round``, ``labeled``, ``accuracy_at_stop``,
    ``loss_vs_final`` and ``labels_saved`` are None (shown as "never")."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["classifier"], run["strategy"]), []).append(run)
    rows = []
    for (clf, strategy), group in groups.items():
        names = sorted(set(n for r in group for n in list(r["stopping"]) + list(r["stopping_skipped"])),
                       key=lambda n: (STOPPING_CRITERIA.index(n) if n in STOPPING_CRITERIA else 99, n))
        for name in names:
            row = {"classifier": clf, "strategy": strategy, "criterion": name}
            reasons = [r["stopping_skipped"][name] for r in group if name in r["stopping_skipped"]]
            if reasons:
                rows.append({**row, "skipped": reasons[0]})
                continue
            stop_round, at_stop, final, best, labeled = [], [], [], [], []
            fired = 0
            for r in group:
                accs = [x["accuracy"] for x in r["rounds"]]
                k = r["stopping"].get(name)
                fired += k is not None
                k = len(accs) - 1 if k is None else k
                stop_round.append(k)
                labeled.append(r["rounds"][k]["labeled"])
                at_stop.append(accs[k])
                final.append(accs[-1])
                best.append(max(accs))
            if fired == 0:
                rows.append({**row, "stopped": f"0/{len(group)}", "round": None, "labeled": None,
                             "accuracy_at_stop": None, "final_accuracy": round(float(np.mean(final)), 4),
                             "best_accuracy": round(float(np.mean(best)), 4),
                             "loss_vs_final": None, "labels_saved": None})
                continue
            rows.append({**row, "stopped": f"{fired}/{len(group)}",
                         "round": round(float(np.mean(stop_round)), 2),
                         "labeled": round(float(np.mean(labeled)), 1),
                         "accuracy_at_stop": round(float(np.mean(at_stop)), 4),
                         "final_accuracy": round(float(np.mean(final)), 4),
                         "best_accuracy": round(float(np.mean(best)), 4),
                         "loss_vs_final": round(float(np.mean(final) - np.mean(at_stop)), 4),
                         "labels_saved": round(float(np.mean(
                             [r["rounds"][-1]["labeled"] for r in group]) - np.mean(labeled)), 1)})
    return rows


def _pm(pair) -> str:
    return "–" if pair is None or pair[0] is None else f"{pair[0]:.3f} ± {pair[1]:.3f}"


def markdown_tables(summary: list[dict], stopping: list[dict], title: str = "") -> str:
    """The summary and the stopping table as Markdown."""
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += ["| classifier | strategy | acc. start | acc. final | macro-F1 final | AUC (acc.) | s/round |",
              "|---|---|---|---|---|---|---|"]
    for s in summary:
        start = (s["accuracy_mean"][0], s["accuracy_std"][0])
        lines.append(f"| {s['classifier']} | {s['strategy']} | {_pm(start)} | {_pm(s['final_accuracy'])} "
                     f"| {_pm(s['final_macro_f1'])} | {_pm(s['auc'])} | "
                     f"{s['seconds_per_round'] if s['seconds_per_round'] is not None else '–'} |")
    if stopping:
        lines += ["", "| strategy | criterion | fired | stop round | labels | acc. at stop | final | best |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in stopping:
            if "skipped" in r:
                lines.append(f"| {r['strategy']} | {r['criterion']} | – ({r['skipped']}) | | | | | |")
            elif r["round"] is None:
                lines.append(f"| {r['strategy']} | {r['criterion']} | {r['stopped']} | never | – | – "
                             f"| {r['final_accuracy']:.4f} | {r['best_accuracy']:.4f} |")
            else:
                lines.append(f"| {r['strategy']} | {r['criterion']} | {r['stopped']} | {r['round']} | "
                             f"{r['labeled']} | {r['accuracy_at_stop']:.4f} | {r['final_accuracy']:.4f} "
                             f"| {r['best_accuracy']:.4f} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ experiment
def run_experiment(train: Dataset, test: Dataset, strategies: Sequence[str],
                   classifiers: Sequence[str] = ("linear_svc",), seeds: Sequence[int] = (0,),
                   progress: bool = True, strategy_params: dict | None = None,
                   classifier_params: dict | None = None, **kwargs) -> dict:
    """Every (classifier, strategy, seed) run, plus ``summary`` and ``stopping_table``.

    ``strategy_params`` / ``classifier_params`` map a name to its keyword arguments;
    ``kwargs`` go to :func:`run_simulation` (``initial``, ``batch``, ``rounds``, ...). The
    pool is featurized once per classifier.
    """
    strategy_params, classifier_params = strategy_params or {}, classifier_params or {}
    rounds = kwargs.get("rounds", 10)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(classifiers) * len(strategies) * len(seeds) * rounds,
                   unit="round", file=sys.stderr, dynamic_ncols=True)
    runs = []
    t0 = time.perf_counter()
    try:
        for clf in classifiers:
            tr, te = featurize_pair(train, test, clf, classifier_params.get(clf))
            for strategy in strategies:
                for seed in seeds:
                    if bar is not None:
                        bar.set_description(f"{clf} {strategy} seed={seed}")
                    runs.append(run_simulation(
                        tr, te, strategy=strategy, classifier=clf, seed=seed,
                        strategy_params=strategy_params.get(strategy),
                        classifier_params=classifier_params.get(clf),
                        progress=bar.update if bar is not None else False, **kwargs))
    finally:
        if bar is not None:
            bar.close()
    return {"runs": runs, "summary": summarize(runs), "stopping_table": stopping_table(runs),
            "seconds_total": round(time.perf_counter() - t0, 2)}


def _json_arg(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameterError(f"{flag}: not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise InvalidParameterError(f"{flag}: expected a JSON object")
    return value


def build_parser(prog: str = "studio-al simulate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=(
        "Pool-based active-learning simulations: learning curves, stopping criteria, "
        "labels-needed estimate. Writes DIR/results.json, DIR/summary.md and DIR/*.png."))
    p.add_argument("--train", required=True, help="JSON Lines pool: {\"text\",\"label\"} or {\"text\",\"labels\"}")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--test", help="JSON Lines test set")
    g.add_argument("--test-split", type=float, metavar="FRACTION",
                   help="hold out this fraction of --train as the test set (seed 0, stratified)")
    p.add_argument("--strategy", action="append",
                   help="query strategy (repeatable; default diverse_mini_batch, the backend's)")
    p.add_argument("--classifier", action="append",
                   help="classifier (repeatable; default embedding_logistic_regression with the "
                        "neural extra, else linear_svc: the backend's AL_CLASSIFIER=auto)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds: 0 .. N-1 (default 3)")
    p.add_argument("--initial", type=int, default=20, help="initial labels (default 20)")
    p.add_argument("--init", default="typiclust",
                   help="initialization (default typiclust, label-free as in the backend; "
                        "random_stratified and random_balanced use the true labels)")
    p.add_argument("--batch", type=int, default=20, help="labels per round (default 20)")
    p.add_argument("--rounds", type=int, default=10, help="query rounds (default 10)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--name", help="dataset name for titles (default: the --train file name)")
    p.add_argument("--strategy-params", default="{}", help="JSON: {strategy: {param: value}}")
    p.add_argument("--classifier-params", default="{}", help="JSON: {classifier: {param: value}}")
    p.add_argument("--stopping-params", default="{}", help="JSON: {criterion: {param: value}}")
    p.add_argument("--no-estimate", action="store_true", help="skip the labels-needed estimate")
    p.add_argument("--tolerance", type=float, default=0.02,
                   help="labels-needed estimate: accuracy tolerance (default 0.02)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@dataclass
class _Inputs:
    """What ``studio-al simulate`` read and checked from its command line."""

    train: Dataset
    test: Dataset
    strategies: list[str]
    classifiers: list[str]
    strategy_params: dict
    classifier_params: dict
    stopping_params: dict


def main(argv: Sequence[str] | None = None) -> int:
    """``studio-al simulate`` (see :func:`build_parser`). Exit status 2 on bad input."""
    args = build_parser().parse_args(argv)
    try:
        inputs = _read_inputs(args)
    except (InvalidParameterError, ValueError, OSError) as exc:
        return _usage_error(exc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        part = run_experiment(
            inputs.train, inputs.test, inputs.strategies, classifiers=inputs.classifiers,
            seeds=list(range(args.seeds)), progress=not args.quiet,
            strategy_params=inputs.strategy_params, classifier_params=inputs.classifier_params,
            initialization=args.init, initial=args.initial, batch=args.batch, rounds=args.rounds,
            stopping_params=inputs.stopping_params, estimate=not args.no_estimate,
            estimate_tolerance=args.tolerance)
    except InvalidParameterError as exc:
        return _usage_error(exc)
    result = _results(args, inputs, part["runs"], time.perf_counter() - t0)
    _write_results(out, result, inputs, plots=not args.no_plots)
    return 0


def _usage_error(exc: Exception) -> int:
    print(f"studio-al simulate: error: {exc}", file=sys.stderr)
    return 2


def _read_inputs(args: argparse.Namespace) -> _Inputs:
    """The datasets, names and parameters of the command line, checked before any run."""
    from al_engine.registry import available, default_pipeline
    strategy_params = _json_arg(args.strategy_params, "--strategy-params")
    classifier_params = _json_arg(args.classifier_params, "--classifier-params")
    stopping_params = _json_arg(args.stopping_params, "--stopping-params")
    if args.seeds < 1:
        raise InvalidParameterError(f"--seeds must be >= 1, got {args.seeds}")
    if args.test is not None:
        train, test = load_pair(args.train, args.test)
    else:
        train, test = load_split(args.train, args.test_split)
    strategies = args.strategy or [default_pipeline()["query_strategy"]]
    classifiers = args.classifier or [default_pipeline()["classifier"]]
    for flag, names, kind in (("--strategy", strategies, "query_strategy"),
                              ("--classifier", classifiers, "classifier")):
        for name in names:
            if name not in available(kind):
                raise InvalidParameterError(f"{flag}: unknown {kind.replace('_', ' ')} {name!r}; "
                                            f"allowed: {', '.join(available(kind))}")
    build_stopping_criteria(2 if train.is_multi_label else len(train.target_labels),
                            train.is_multi_label, args.rounds, params=stopping_params)
    return _Inputs(train, test, strategies, classifiers, strategy_params, classifier_params,
                   stopping_params)


def _results(args: argparse.Namespace, inputs: _Inputs, runs: list[dict],
             seconds: float) -> dict:
    """The content of ``results.json`` (shape in the module docstring)."""
    train, test = inputs.train, inputs.test
    return {
        "config": {"train": str(args.train), "test": args.test, "test_split": args.test_split,
                   "strategies": inputs.strategies, "classifiers": inputs.classifiers,
                   "seeds": list(range(args.seeds)), "initialization": args.init,
                   "initial": args.initial, "batch": args.batch, "rounds": args.rounds,
                   "strategy_params": inputs.strategy_params,
                   "classifier_params": inputs.classifier_params,
                   "stopping_params": inputs.stopping_params, "tolerance": args.tolerance},
        "dataset": {"name": args.name or Path(args.train).name.split(".")[0],
                    "train": len(train), "test": len(test),
                    "classes": len(train.target_labels), "multi_label": train.is_multi_label},
        "runs": runs, "summary": summarize(runs), "stopping_table": stopping_table(runs),
        "seconds_total": round(seconds, 2),
    }


def _write_results(out: Path, result: dict, inputs: _Inputs, plots: bool) -> None:
    """``results.json``, ``summary.md``, one learning-curve plot per classifier; the table
    and the output path on stdout."""
    name = result["dataset"]["name"]
    (out / "results.json").write_text(json.dumps(result, indent=1))
    table = markdown_tables(result["summary"], result["stopping_table"], title=name)
    (out / "summary.md").write_text(table)
    if plots and importlib.util.find_spec("matplotlib") is None:
        plots = False
        print("plots skipped: matplotlib is not installed (pip install 'studio-al[plots]'); "
              "the curves are in results.json and summary.md", file=sys.stderr)
    if plots:
        from al_engine.plots import plot_learning_curves
        for clf in inputs.classifiers:
            rows = [s for s in result["summary"] if s["classifier"] == clf]
            plot_learning_curves(rows, out / f"learning_curves_{clf}.png",
                                 title=f"{name} — {clf} ({len(inputs.train)} pool, "
                                       f"{len(inputs.test)} test)")
    print(table)
    print(f"wrote {out / 'results.json'} in {result['seconds_total']:.1f} s")

if __name__ == "__main__":
    sys.exit(main())
