"""An accuracy estimate that is right on average, with its uncertainty: random probes.

Labels chosen by a query strategy are not a sample of the pool: the strategy picks the tasks
the model finds hard (or typical, or diverse), so any accuracy measured on them, cross-
validation included, is biased, in a direction nobody knows. A small share of the tasks queued
for annotation are therefore *probes*: tasks drawn uniformly at random from the unlabeled pool
(:func:`place_probes`). Their labels are a random test sample, so the model's accuracy on them
estimates its accuracy on the pool without bias (:func:`probe_accuracy`), and a Wilson score
interval (:func:`wilson_interval`) says how sure that is.

Every probe is also a training label (nothing is wasted), so the estimate cross-fits: the
probes are split into ``k`` folds and the probes of fold ``j`` are predicted by a model trained
on every label except fold ``j``. That model has ``n/k`` fewer labels than the served one, so
the estimate leans (slightly) pessimistic. Validated against the true test accuracy by
``benchmarks/estimate_calibration.py``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Callable

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import Interval, validate_params
from al_engine.data import is_multi_label_target

METHOD = "random probes, cross-fitted, Wilson interval"


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    .. math::
        \\frac{\\hat p + \\frac{z^2}{2n} \\pm z \\sqrt{\\frac{\\hat p (1-\\hat p)}{n}
        + \\frac{z^2}{4n^2}}}{1 + \\frac{z^2}{n}}

    with :math:`\\hat p = successes / n` and :math:`z` the normal quantile of
    ``(1 + confidence) / 2``. ``n == 0`` gives ``(0.0, 1.0)``.
    """
    from scipy.stats import norm
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if successes == 0 else max(0.0, float(centre - half))
    return low, 1.0 if successes == n else min(1.0, float(centre + half))


@dataclass(frozen=True)
class AccuracyEstimate:
    """The model's accuracy on the pool, estimated from ``n`` labeled probes.

    ``value`` is None without probes. ``majority`` is the accuracy, on the same probes, of
    always answering ``majority_label`` (the most frequent label of the training folds; None
    for multi-label projects): a model whose ``low`` does not exceed it is not yet shown to be
    better than that constant answer.
    """

    value: float | None
    low: float
    high: float
    n: int
    method: str = METHOD
    confidence: float = 0.95
    majority: float | None = None
    majority_label: int | None = None

    @property
    def beats_majority(self) -> bool | None:
        """True when the interval lies above the majority-class accuracy (None: unknown)."""
        if self.value is None or self.majority is None:
            return None
        return self.low > self.majority

    def to_dict(self) -> dict:
        out = asdict(self)
        out["beats_majority"] = self.beats_majority
        for key in ("value", "low", "high", "majority"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 4)
        return out


def place_probes(order: np.ndarray, share: float, depth: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Put uniformly random tasks at random slots of the head of a ranking.

    Each of the first ``depth`` slots of ``order`` independently holds a probe with
    probability ``share``; the probes are drawn uniformly without replacement from all of
    ``order`` (the unlabeled pool), the other slots keep the strategy's order (the probes
    taken out). Whatever head annotators label, each labeled slot was a probe with
    probability ``share``, and a probe is a uniform draw whatever slot it took.

    Parameters
    ----------
    order : ndarray of int
        The unlabeled pool in the strategy's order, best first.
    share : float in [0, 1]
    depth : int
        Slots that may hold a probe (the most tasks ever pushed to Label Studio).
    rng : numpy Generator

    Returns
    -------
    new_order : ndarray of int
        A permutation of ``order``.
    probes : ndarray of int
        The probe tasks (values of ``order``), in slot order.
    """
    validate_params({"share": Interval(Real, 0, 1, closed="both"),
                     "depth": Interval(Integral, 0, None, closed="left")},
                    {"share": share, "depth": depth})
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    head = min(int(depth), order.size)
    slots = np.flatnonzero(rng.random(head) < share)
    if slots.size == 0:
        return order.copy(), order[:0].copy()
    probes = rng.choice(order, size=slots.size, replace=False)
    is_probe_slot = np.zeros(order.size, dtype=bool)
    is_probe_slot[slots] = True
    new_order = np.empty_like(order)
    new_order[is_probe_slot] = probes
    new_order[~is_probe_slot] = order[~np.isin(order, probes)]
    return new_order, probes


def _correct(y_true, pred) -> np.ndarray:
    """Per-row exact match (subset accuracy for multi-label indicator rows)."""
    if is_multi_label_target(y_true):
        a = y_true.toarray() if sp.issparse(y_true) else np.asarray(y_true)
        b = pred.toarray() if sp.issparse(pred) else np.asarray(pred)
        return np.all(a.astype(bool) == b.astype(bool), axis=1)
    return np.asarray(y_true).reshape(-1) == np.asarray(pred).reshape(-1)


def _fold_predictions(clf_factory, labeled, train: np.ndarray, test: np.ndarray):
    """Predictions for ``labeled[test]`` by a model fitted on ``labeled[train]``; a training
    part with a single class predicts that class (what any classifier converges to)."""
    y_train = labeled.y[train]
    if not is_multi_label_target(y_train) and np.unique(y_train).size == 1:
        return np.full(test.size, np.asarray(y_train)[0])
    clf = clf_factory()
    clf.fit(labeled[train])
    return clf.predict(labeled[test])


def probe_accuracy(clf_factory: Callable[[], object], labeled, is_probe, n_folds: int = 5,
                   confidence: float = 0.95, seed: int = 0) -> AccuracyEstimate:
    """Cross-fitted accuracy on the labeled probes, with a Wilson interval.

    The probes are dealt at random to ``min(n_folds, n)`` folds; each fold is predicted by a
    fresh classifier fitted on every labeled row except that fold's probes (active labels
    included). With ``c`` probes predicted correctly out of ``n``:
    ``value = c / n`` and ``(low, high)`` = :func:`wilson_interval` ``(c, n, confidence)``.

    Parameters
    ----------
    clf_factory : callable
        Returns a fresh, unfitted engine classifier.
    labeled : Dataset
        Every labeled row (features set, or featurizable by the classifier).
    is_probe : array of bool, shape (len(labeled),)
        Which rows are probes (drawn uniformly from the unlabeled pool when queued).
    n_folds : int, default=5
    confidence : float, default=0.95
    seed : int, default=0

    Returns
    -------
    AccuracyEstimate
    """
    validate_params({"n_folds": Interval(Integral, 2, None, closed="left"),
                     "confidence": Interval(Real, 0, 1, closed="neither")},
                    {"n_folds": n_folds, "confidence": confidence})
    is_probe = np.asarray(is_probe, dtype=bool).reshape(-1)
    if is_probe.size != len(labeled):
        raise ValueError(f"is_probe has {is_probe.size} entries for {len(labeled)} labeled rows")
    probes = np.flatnonzero(is_probe)
    n = int(probes.size)
    if n == 0:
        return AccuracyEstimate(value=None, low=0.0, high=1.0, n=0, confidence=confidence)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % min(n_folds, n)
    correct = np.zeros(n, dtype=bool)
    majority_correct = np.zeros(n, dtype=bool)
    multi = is_multi_label_target(labeled.y)
    everyone = np.arange(len(labeled))
    for j in np.unique(fold):
        test = probes[fold == j]
        train = everyone[~np.isin(everyone, test)]
        pred = _fold_predictions(clf_factory, labeled, train, test)
        correct[fold == j] = _correct(labeled.y[test], pred)
        if not multi:
            major = np.bincount(np.asarray(labeled.y[train], dtype=np.int64)).argmax()
            majority_correct[fold == j] = np.asarray(labeled.y[test]) == major
    c = int(correct.sum())
    low, high = wilson_interval(c, n, confidence)
    major_label = None if multi else int(np.bincount(np.asarray(labeled.y, dtype=np.int64))
                                         .argmax())
    return AccuracyEstimate(value=c / n, low=low, high=high, n=n, confidence=confidence,
                            majority=None if multi else float(majority_correct.mean()),
                            majority_label=major_label)
