"""How many labels are still needed? An estimate without a test set.

The accuracy of a classifier as a function of the number of training labels :math:`n` is
well described by an inverse power law (Figueroa et al., 2012; Mukherjee et al., 2003):

.. math:: f(n) = a - b\\, n^{-c}, \\qquad 0 \\le a \\le 1,\\ b \\ge 0,\\ c > 0,

with :math:`a` the accuracy reachable with unlimited labels. Without a test set, points of
that curve come from the labeled data itself: :func:`cross_validated_curve` trains on nested
subsets of each cross-validation training fold and scores the held-out fold
(:func:`cross_validate` keeps the per-fold scores and macro-F1 too).
:func:`fit_learning_curve` fits :math:`a, b, c`, and :func:`labels_needed` reads off how many
labels make the curve reach :math:`f(N) - \\varepsilon`, the accuracy that labeling the WHOLE
pool of :math:`N` documents would give, minus a tolerance :math:`\\varepsilon`:

.. math:: n^\\ast = \\left(\\frac{b}{a - f(N) + \\varepsilon}\\right)^{1/c}
          = \\left(\\frac{b}{b N^{-c} + \\varepsilon}\\right)^{1/c}.

:func:`estimate_labels_needed` does all three for a labeled dataset and a classifier factory,
and returns a :class:`LabelsNeeded` record (``to_dict()`` is JSON-ready for ``/status``).

Caveat: labels chosen by active learning are harder than average, so cross-validated accuracy
on them is pessimistic; the estimate is meant as an order of magnitude to plan annotation time
(``benchmarks/results/labels_needed.json`` measures its error on datasets where the truth is
known).

References
----------
Figueroa, R. L. et al. Predicting sample size required for classification performance.
BMC Medical Informatics and Decision Making 12:8, 2012.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp

from al_engine.exceptions import InvalidParameterError

#: exponents tried by the fit (a log grid, refined around the best value)
_C_GRID = np.geomspace(0.02, 3.0, 120)


@dataclass(frozen=True)
class LearningCurveFit:
    """The fitted curve :math:`f(n) = a - b n^{-c}` and its weighted residual."""

    a: float
    b: float
    c: float
    rmse: float

    def __call__(self, n) -> np.ndarray:
        n = np.asarray(n, dtype=np.float64)
        return self.a - self.b * n ** (-self.c)

    def inverse(self, score: float) -> float:
        """Smallest :math:`n` with :math:`f(n) \\geq` ``score`` (inf when ``score >= a``)."""
        gap = self.a - score
        if gap <= 0:
            return float("inf")
        if self.b <= 0:
            return 1.0
        return float((self.b / gap) ** (1.0 / self.c))


def _check_points(n, scores, weights):
    n = np.asarray(n, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if n.shape != scores.shape:
        raise InvalidParameterError(f"n and scores differ in length: {n.size} != {scores.size}")
    if n.size < 3:
        raise InvalidParameterError(f"n: need at least 3 points to fit a learning curve, got {n.size}")
    if np.any(n <= 0) or not np.all(np.isfinite(n)):
        raise InvalidParameterError("n must hold positive, finite label counts")
    if not np.all(np.isfinite(scores)):
        raise InvalidParameterError("scores must be finite")
    if weights is None:
        weights = np.ones_like(n)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if weights.shape != n.shape or np.any(weights < 0) or not weights.sum() > 0:
        raise InvalidParameterError("weights must be non-negative, one per point, not all zero")
    return n, scores, weights


def _solve_ab(n, scores, w, c, upper):
    """Weighted least squares for (a, b) at fixed c with b >= 0 and a <= upper."""
    z = n ** (-c)
    sw = w.sum()
    zm, sm = (w * z).sum() / sw, (w * scores).sum() / sw
    var = (w * (z - zm) ** 2).sum()
    b = -(w * (z - zm) * (scores - sm)).sum() / var if var > 0 else 0.0
    b = max(b, 0.0)
    a = sm + b * zm
    if a > upper:  # a on the bound: refit b alone
        a = upper
        zz = (w * z * z).sum()
        b = max((w * z * (a - scores)).sum() / zz, 0.0) if zz > 0 else 0.0
    resid = scores - (a - b * z)
    return a, b, float((w * resid ** 2).sum() / sw)


def fit_learning_curve(n, scores, weights=None, upper: float = 1.0) -> LearningCurveFit:
    """Fit :math:`f(n) = a - b n^{-c}` to points ``(n_i, scores_i)`` by weighted least squares.

    For a fixed :math:`c` the model is linear in :math:`(a, b)`, solved in closed form with
    :math:`b \\ge 0` and :math:`a \\le` ``upper``; :math:`c` is searched on a log grid in
    [0.02, 3] and refined once around the best grid value. Deterministic, no starting point.

    Parameters
    ----------
    n : array-like of shape (m,)
        Label counts (> 0), at least three distinct points.
    scores : array-like of shape (m,)
        Accuracy (or any score in [0, upper]) at each count.
    weights : array-like of shape (m,), optional
        Per-point weights (e.g. the inverse variance); uniform by default.
    upper : float, default=1.0
        Upper bound of the asymptote :math:`a`.

    Returns
    -------
    LearningCurveFit
    """
    n, scores, w = _check_points(n, scores, weights)
    if np.unique(n).size < 3:
        raise InvalidParameterError("n: need at least 3 distinct label counts to fit a learning curve")

    def best(grid):
        fits = [(_solve_ab(n, scores, w, c, upper), c) for c in grid]
        k = int(np.argmin([f[0][2] for f in fits]))
        return fits[k], k

    ((a, b, mse), c), k = best(_C_GRID)
    lo, hi = _C_GRID[max(k - 1, 0)], _C_GRID[min(k + 1, _C_GRID.size - 1)]
    ((a, b, mse), c), _ = best(np.geomspace(lo, hi, 41))
    return LearningCurveFit(a=float(a), b=float(b), c=float(c), rmse=float(np.sqrt(mse)))


def labels_needed(fit: LearningCurveFit, pool_size: int, tolerance: float = 0.02) -> float:
    """Labels :math:`n^\\ast` at which the curve is within ``tolerance`` of :math:`f(N)`.

    :math:`n^\\ast = (b / (b N^{-c} + \\varepsilon))^{1/c}`, capped at ``pool_size`` (see
    the module docstring). A flat curve (:math:`b = 0`) needs 1 label.
    """
    if pool_size < 1:
        raise InvalidParameterError(f"pool_size must be >= 1, got {pool_size}")
    if not tolerance > 0:
        raise InvalidParameterError(f"tolerance must be > 0, got {tolerance}")
    return float(min(fit.inverse(float(fit(pool_size)) - tolerance), pool_size))


# ------------------------------------------------------------------ statistics from labels only
def _folds(y, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` position pairs of a shuffled k-fold split, stratified for class
    ids: the members of each class (in random order) are dealt to the folds in turn,
    continuing where the previous class stopped, so fold sizes differ by at most one."""
    rng = np.random.default_rng(seed)
    m = y.shape[0]
    if sp.issparse(y) or np.ndim(y) == 2:
        order = rng.permutation(m)
    else:
        y = np.asarray(y)
        perm = rng.permutation(m)
        order = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, shuffled within
    fold = np.empty(m, dtype=np.int64)
    fold[order] = np.arange(m) % n_splits
    return [(np.flatnonzero(fold != k), np.flatnonzero(fold == k)) for k in range(n_splits)]


@dataclass(frozen=True)
class CrossValidation:
    """Learning-curve points measured by :func:`cross_validate`.

    Attributes
    ----------
    sizes : ndarray of int, shape (k,)
        Training sizes, log-spaced; the last one is the whole training part of a fold.
    accuracy : ndarray of shape (n_splits, k)
        Held-out accuracy (subset accuracy for multi-label) per fold and size.
    macro_f1 : ndarray of shape (n_splits,)
        Held-out macro-F1 per fold at the last size.
    n : int
        Labeled documents cross-validated.
    """

    sizes: np.ndarray
    accuracy: np.ndarray
    macro_f1: np.ndarray
    n: int

    @property
    def mean(self) -> np.ndarray:
        """Mean accuracy over folds at each size."""
        return self.accuracy.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Standard deviation of the accuracy over folds at each size."""
        return self.accuracy.std(axis=0)


def _curve_sizes(m: int, n_splits: int, n_sizes: int, min_size: int) -> np.ndarray:
    """``n_sizes`` log-spaced training sizes from ``min_size`` to a whole training part."""
    train_size = m - int(np.ceil(m / n_splits))
    lo = min(min_size, train_size)
    return np.unique(np.round(np.geomspace(lo, train_size, n_sizes)).astype(int))


def _comparable(y_true, pred):
    """``y_true`` and ``pred`` in a form scikit-learn's metrics compare (multi-label:
    dense indicator matrices)."""
    if sp.issparse(y_true) or np.ndim(y_true) == 2:
        y_true = y_true.toarray() if sp.issparse(y_true) else np.asarray(y_true)
        pred = sp.csr_matrix(pred).toarray()
    return y_true, pred


def cross_validate(clf_factory: Callable[[], object], labeled, n_sizes: int = 6,
                   n_splits: int = 5, min_size: int = 10, seed: int = 0) -> CrossValidation:
    """Learning-curve points from the labeled data alone.

    For each of ``n_splits`` stratified folds (:func:`_folds`), nested random subsets of
    the training part (sizes evenly spaced on a log scale from ``min_size`` to the whole
    training part) are fitted and scored on the held-out fold. The same function serves
    the labels-needed estimate (:func:`estimate_labels_needed`, validated by
    ``benchmarks/labels_needed_eval.py``) and the backend's per-round quality figures.

    Parameters
    ----------
    clf_factory : callable
        Returns a fresh, unfitted engine classifier.
    labeled : Dataset
        The labeled documents, features set (``x``) or featurizable by the classifier.
    n_sizes, n_splits, min_size, seed : int

    Returns
    -------
    CrossValidation
    """
    from sklearn.metrics import accuracy_score, f1_score
    m = len(labeled)
    if n_splits < 2:
        raise InvalidParameterError(f"n_splits must be >= 2, got {n_splits}")
    if m < 2 * n_splits:
        raise InvalidParameterError(f"labeled: need at least {2 * n_splits} labeled documents for "
                                    f"{n_splits}-fold cross-validation, got {m}")
    sizes = _curve_sizes(m, n_splits, n_sizes, min_size)
    rng = np.random.default_rng(seed)
    acc = np.full((n_splits, sizes.size), np.nan)
    f1 = np.full(n_splits, np.nan)
    for f, (tr, te) in enumerate(_folds(labeled.y, n_splits, seed)):
        order = rng.permutation(tr)
        held = labeled[te]
        for s, size in enumerate(sizes):
            clf = clf_factory()
            clf.fit(labeled[order[:size]])
            y_true, pred = _comparable(held.y, clf.predict(held))
            acc[f, s] = accuracy_score(y_true, pred)
        f1[f] = f1_score(y_true, pred, average="macro", zero_division=0)
    return CrossValidation(sizes=sizes, accuracy=acc, macro_f1=f1, n=m)


def cross_validated_curve(clf_factory: Callable[[], object], labeled, n_sizes: int = 6,
                          n_splits: int = 5, min_size: int = 10,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(sizes, mean, std)`` of :func:`cross_validate`: the training sizes and the mean
    and standard deviation of the held-out accuracy over folds at each size."""
    cv = cross_validate(clf_factory, labeled, n_sizes=n_sizes, n_splits=n_splits,
                        min_size=min_size, seed=seed)
    return cv.sizes, cv.mean, cv.std


@dataclass
class LabelsNeeded:
    """An estimate of the labels still needed (see the module docstring).

    Attributes
    ----------
    labeled : int
        Labels used for the estimate.
    pool_size : int
        :math:`N`, documents that could be labeled (labeled + unlabeled).
    tolerance : float
    labels_needed : int or None
        :math:`n^\\ast`; None when the estimate failed (then ``reason`` says why).
    additional : int or None
        ``max(0, labels_needed - labeled)``.
    accuracy_now, accuracy_at_pool, accuracy_limit : float or None
        :math:`f(\\text{labeled})`, :math:`f(N)` and :math:`a`.
    curve : dict or None
        ``{"a", "b", "c", "rmse"}``.
    points : list of [size, mean accuracy, std]
        The cross-validated points the curve was fitted to.
    method, reason : str
    """

    labeled: int
    pool_size: int
    tolerance: float
    labels_needed: int | None = None
    additional: int | None = None
    accuracy_now: float | None = None
    accuracy_at_pool: float | None = None
    accuracy_limit: float | None = None
    curve: dict | None = None
    points: list = field(default_factory=list)
    method: str = "cross_validated_power_law"
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_from_points(sizes, scores, labeled: int, pool_size: int, tolerance: float = 0.02,
                         std=None) -> LabelsNeeded:
    """:class:`LabelsNeeded` from learning-curve points already measured.

    Points are weighted by their size (later points are less noisy and closer to the
    extrapolation).
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    std = np.zeros_like(scores) if std is None else np.asarray(std, dtype=np.float64)
    result = LabelsNeeded(labeled=int(labeled), pool_size=int(pool_size), tolerance=float(tolerance),
                          points=[[int(s), round(float(v), 5), round(float(d), 5)]
                                  for s, v, d in zip(sizes, scores, std)])
    if pool_size < labeled:
        raise InvalidParameterError(f"pool_size ({pool_size}) must be >= labeled ({labeled})")
    if np.unique(sizes).size < 3:
        result.reason = "fewer than 3 distinct learning-curve points"
        return result
    fit = fit_learning_curve(sizes, scores, weights=sizes / sizes.max())
    n_star = labels_needed(fit, pool_size, tolerance)
    result.labels_needed = int(np.ceil(n_star))
    result.additional = max(0, result.labels_needed - int(labeled))
    result.accuracy_now = round(float(fit(max(labeled, 1))), 5)
    result.accuracy_at_pool = round(float(fit(pool_size)), 5)
    result.accuracy_limit = round(fit.a, 5)
    result.curve = {"a": fit.a, "b": fit.b, "c": fit.c, "rmse": fit.rmse}
    return result


def estimate_labels_needed(clf_factory: Callable[[], object], labeled, pool_size: int,
                           tolerance: float = 0.02, n_splits: int = 5, n_sizes: int = 6,
                           seed: int = 0) -> LabelsNeeded:
    """Estimate how many labels bring accuracy within ``tolerance`` of labeling everything.

    Parameters
    ----------
    clf_factory : callable
        Returns a fresh, unfitted engine classifier (the one being trained).
    labeled : Dataset
        The labeled documents (features set, or featurizable by the classifier).
    pool_size : int
        All documents that could be labeled, labeled ones included.
    tolerance : float, default=0.02
        :math:`\\varepsilon`, in accuracy points (0.02 = two points).
    n_splits, n_sizes, seed : int
        See :func:`cross_validate`.

    Returns
    -------
    LabelsNeeded
        With ``labels_needed=None`` and a ``reason`` when there are too few labels, or when
        the classifier is not yet better than predicting the majority class.

    Examples
    --------
    >>> est = estimate_labels_needed(lambda: make_classifier("linear_svc", num_classes=6),
    ...                              learner.training_set(), pool_size=len(learner.dataset))
    >>> est.additional  # doctest: +SKIP
    640
    """
    m = len(labeled)
    if not tolerance > 0:
        raise InvalidParameterError(f"tolerance must be > 0, got {tolerance}")
    if m < 2 * n_splits:
        return LabelsNeeded(labeled=m, pool_size=int(pool_size), tolerance=float(tolerance),
                            reason=f"need at least {2 * n_splits} labels, have {m}")
    cv = cross_validate(clf_factory, labeled, n_sizes=n_sizes, n_splits=n_splits, seed=seed)
    return estimate_from_cv(cv, labeled.y, pool_size=pool_size, tolerance=tolerance)


def estimate_from_cv(cv: CrossValidation, y, pool_size: int, tolerance: float = 0.02,
                     labeled: int | None = None) -> LabelsNeeded:
    """:class:`LabelsNeeded` from the points of :func:`cross_validate` (the second half of
    :func:`estimate_labels_needed`).

    Parameters
    ----------
    cv : CrossValidation
    y : ndarray of int or indicator matrix
        The labels of the cross-validated documents (for the majority-class check).
    pool_size : int
        All documents that could be labeled, labeled ones included.
    tolerance : float, default=0.02
    labeled : int, optional
        Labels there are now (default ``cv.n``; more when ``cv`` ran on a subsample).

    Returns
    -------
    LabelsNeeded
        With ``labels_needed=None`` and a ``reason`` when the single-label classifier is
        not yet better than predicting the majority class.
    """
    mean = cv.mean
    result = estimate_from_points(cv.sizes, mean, labeled=cv.n if labeled is None else labeled,
                                  pool_size=pool_size, tolerance=tolerance, std=cv.std)
    if not (sp.issparse(y) or np.ndim(y) == 2):
        majority = float(np.bincount(np.asarray(y)).max() / y.shape[0])
        if mean.max() <= majority + 0.01:
            # Not better than always predicting the majority class: the curve is the
            # baseline's, flat, and says nothing about how many labels learning needs.
            result.labels_needed = result.additional = None
            result.reason = (f"cross-validated accuracy ({mean.max():.3f}) is not above the "
                             f"majority-class rate ({majority:.3f}); label more before estimating")
    return result
