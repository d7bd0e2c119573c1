"""Stopping criteria: when has active learning stopped paying off?

Same classes, parameters, defaults, state attributes and decisions as small-text 2.0
(``small_text.stopping_criteria``; unchanged since 1.4.1), vectorized:

* :class:`KappaAverage` -- Cohen's kappa between consecutive predictions [BV09]_;
* :class:`DeltaFScore` -- predicted change of the F-score, binary only [AB19]_;
* :class:`ClassificationChange` -- share of predictions that changed [ZWH08]_;
* :class:`OverallUncertainty` -- mean normalized prediction entropy [ZWH08]_;
* :class:`MaxIterations` -- a fixed budget of iterations.

Each data-driven criterion keeps its history in ``history_`` (for the window-based ones the same list as
small-text's ``kappa_history`` / ``delta_history``, which is cut to the last
``window_size`` values once the window is full).

As in small-text, the window-based criteria compare the whole ``predictions`` arrays they
receive and ignore ``indices_stopping``; :class:`OverallUncertainty` requires it.

Differences from small-text, all on inputs small-text mishandles:
predictions outside ``[0, num_classes)`` raise ``ValueError`` (small-text silently drops
them from kappa); :class:`ClassificationChange` compares multi-label rows as label sets
(explicit zeros in a CSR matrix are not labels) and also accepts a dense indicator matrix;
:class:`KappaAverage` and :class:`DeltaFScore` raise :class:`MultiLabelNotSupportedError`
for indicator matrices (small-text crashes).

References
----------
.. [BV09] Bloodgood, M. and Vijay-Shanker, K. A method for stopping active learning based on
   stabilizing predictions and the need for user-adjustable stopping. CoNLL 2009.
.. [AB19] Altschuler, M. and Bloodgood, M. Stopping active learning based on predicted
   change of F measure for text classification. ICSC 2019.
.. [ZWH08] Zhu, J., Wang, H. and Hovy, E. Multi-criteria-based strategy to stop active
   learning for data annotation. COLING 2008.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import (POSITIVE_INT, Integral, Interval, check_param,
                                        validate_params)
from al_engine.exceptions import MultiLabelNotSupportedError


class StoppingCriterion(ABC):
    """Base class: ``stop(...)`` is called once per active-learning iteration."""

    @abstractmethod
    def stop(self, active_learner=None, predictions=None, proba=None,
             indices_stopping=None) -> bool:
        """Whether to stop now.

        Parameters
        ----------
        active_learner : PoolBasedActiveLearner or None
        predictions : ndarray of int or CSR matrix
            Predictions for a fixed set (usually the whole pool), the same set every call.
        proba : ndarray of shape (n, num_classes)
            Class probabilities for that set.
        indices_stopping : ndarray of int or None
            Positions into ``predictions`` / ``proba`` to use (see each criterion).
        """


# --------------------------------------------------------------------------------- helpers
def _check_predictions(predictions, last_predictions, num_classes: int | None,
                       allow_multi_label: bool, owner: str):
    """small-text's ``check_window_based_predictions`` plus dtype/range checks.

    Returns the predictions as an int64 vector (single-label) or a canonical CSR
    indicator matrix (multi-label).
    """
    if predictions is None:
        raise ValueError("Predictions must not be None!")
    multi = sp.issparse(predictions) or np.ndim(predictions) == 2
    if multi:
        if not allow_multi_label:
            raise MultiLabelNotSupportedError(f"{owner} does not support multi-label predictions")
        predictions = sp.csr_matrix(predictions, copy=True)
        predictions.sum_duplicates()
        predictions.eliminate_zeros()
        predictions.data = np.ones_like(predictions.data, dtype=np.int8)
        predictions = predictions.astype(np.int8)
    else:
        arr = np.asarray(predictions)
        if arr.ndim != 1:
            raise ValueError(f"predictions must be a 1-D array of class ids, got shape {arr.shape}")
        if arr.dtype == object:
            if arr.size and all(p is None for p in arr):
                raise ValueError("Predictions must not be None!")
            try:
                arr = arr.astype(np.int64)
            except (TypeError, ValueError):
                raise ValueError("predictions must hold integer class ids") from None
        elif arr.size and not np.issubdtype(arr.dtype, np.integer):
            if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
                arr = arr.astype(np.int64)
            else:
                raise ValueError(f"predictions must hold integer class ids, got dtype {arr.dtype}")
        predictions = arr.astype(np.int64, copy=False)
        if num_classes is not None and predictions.size and (
                predictions.min() < 0 or predictions.max() >= num_classes):
            raise ValueError(f"predictions must be class ids in [0, {num_classes}), got values in "
                             f"[{predictions.min()}, {predictions.max()}]")
    if last_predictions is not None:
        if predictions.shape[0] != last_predictions.shape[0]:
            raise ValueError(f"Predictions must not differ in size: "
                             f"Current {predictions.shape[0]} / Previous {last_predictions.shape[0]}")
        if sp.issparse(predictions) != sp.issparse(last_predictions):
            raise ValueError("predictions switched between single-label and multi-label")
    return predictions


def cohen_kappa(y1: np.ndarray, y2: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa of two label vectors with ids in ``[0, num_classes)``.

    With the confusion matrix :math:`C` (:math:`N = \\sum C`), observed agreement
    :math:`p_o = \\mathrm{tr}(C)/N` and chance agreement
    :math:`p_e = \\sum_c C_{c\\cdot} C_{\\cdot c} / N^2`:
    :math:`\\kappa = 1 - (1 - p_o)/(1 - p_e)` (scikit-learn's unweighted
    ``cohen_kappa_score``). As small-text's ``_adapted_cohen_kappa_score``, identical
    vectors give 1.0; an undefined kappa (:math:`p_e = 1`) gives NaN as scikit-learn does.
    """
    if np.array_equal(y1, y2):
        return 1.0
    n = y1.shape[0]
    confusion = np.bincount(y1 * num_classes + y2, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes).astype(np.float64)
    expected = np.outer(confusion.sum(axis=0), confusion.sum(axis=1)) / n
    disagreement_expected = expected.sum() - np.trace(expected)
    if disagreement_expected == 0:
        return float("nan")
    disagreement_observed = n - np.trace(confusion)
    return float(1.0 - disagreement_observed / disagreement_expected)


# --------------------------------------------------------------------------------- criteria
class KappaAverage(StoppingCriterion):
    """Stops when the mean Cohen's kappa between consecutive predictions over the last
    ``window_size`` iterations reaches ``kappa`` [BV09]_.

    Call :math:`t \\geq 2` computes :math:`\\kappa_t = \\kappa(\\hat y_t, \\hat y_{t-1})`
    (see :func:`cohen_kappa`); the criterion stops once ``window_size`` values exist and
    :math:`\\frac{1}{w}\\sum_{i=t-w+1}^{t} \\kappa_i \\geq` ``kappa``.

    Parameters
    ----------
    num_classes : int
    window_size : int, default=3
    kappa : float, default=0.99

    Attributes
    ----------
    last_predictions : ndarray or None
    kappa_history : list of float (alias ``history_``)
    """

    _parameter_constraints = {"num_classes": POSITIVE_INT, "window_size": POSITIVE_INT}

    def __init__(self, num_classes: int, window_size: int = 3, kappa: float = 0.99):
        validate_params(self._parameter_constraints, locals())
        self.num_classes = int(num_classes)
        self.window_size = int(window_size)
        self.kappa = float(kappa)
        self.last_predictions = None
        self.kappa_history: list[float] = []

    @property
    def history_(self) -> list[float]:
        return self.kappa_history

    def stop(self, active_learner=None, predictions=None, proba=None, indices_stopping=None) -> bool:
        predictions = _check_predictions(predictions, self.last_predictions, self.num_classes,
                                         allow_multi_label=False, owner="KappaAverage")
        if self.last_predictions is None:
            self.last_predictions = predictions
            return False
        self.kappa_history.append(cohen_kappa(predictions, self.last_predictions, self.num_classes))
        self.last_predictions = predictions
        if len(self.kappa_history) < self.window_size:
            return False
        self.kappa_history = self.kappa_history[-self.window_size:]
        return bool(np.mean(self.kappa_history) >= self.kappa)


class DeltaFScore(StoppingCriterion):
    """Stops when the predicted change of F1 stays below ``threshold`` for ``window_size``
    consecutive iterations [AB19]_. Binary classification only (class 1 is positive).

    With :math:`a` = positive in both the previous and current predictions, :math:`b` =
    positive only before, :math:`c` = positive only now:
    :math:`\\Delta F = 1 - \\frac{2a}{2a + b + c}` (NaN when nothing is positive in either,
    as in small-text; a NaN never counts as below the threshold).

    Parameters
    ----------
    num_classes : int
        Must be 2.
    window_size : int, default=3
    threshold : float, default=0.05

    Attributes
    ----------
    last_predictions : ndarray or None
    delta_history : list of float (alias ``history_``)
    """

    def __init__(self, num_classes: int, window_size: int = 3, threshold: float = 0.05):
        self.num_classes = num_classes
        if num_classes != 2:
            raise ValueError("DeltaFScore is only applicable for binary classifications "
                             f"(requires num_classes=2, got {num_classes!r})")
        self.window_size = int(check_param("window_size", window_size, POSITIVE_INT))
        self.threshold = float(threshold)
        self.last_predictions = None
        self.delta_history: list[float] = []

    @property
    def history_(self) -> list[float]:
        return self.delta_history

    def stop(self, active_learner=None, predictions=None, proba=None, indices_stopping=None) -> bool:
        predictions = _check_predictions(predictions, self.last_predictions, 2,
                                         allow_multi_label=False, owner="DeltaFScore")
        if self.last_predictions is None:
            self.last_predictions = predictions
            return False
        old, new = self.last_predictions == 1, predictions == 1
        agreement = np.count_nonzero(old & new)
        denominator = 2 * agreement + np.count_nonzero(old & ~new) + np.count_nonzero(~old & new)
        delta_f = 1.0 - 2.0 * agreement / denominator if denominator else float("nan")
        self.delta_history.append(float(delta_f))
        self.last_predictions = predictions
        if len(self.delta_history) < self.window_size:
            return False
        self.delta_history = self.delta_history[-self.window_size:]
        return bool(np.all(np.array(self.delta_history) < self.threshold))


class ClassificationChange(StoppingCriterion):
    """Stops when at most a ``threshold`` share of the predictions changed since the
    previous call [ZWH08]_ (``threshold=0`` is the original: no change at all).

    Stops at call :math:`t \\geq 2` when
    :math:`|\\{i : \\hat y_{t,i} = \\hat y_{t-1,i}\\}| \\geq n (1 - \\mathrm{threshold})`.
    Multi-label predictions (CSR or dense indicator) are compared row-wise as label sets.

    Parameters
    ----------
    num_classes : int
    threshold : float in [0, 1], default=0.0

    Attributes
    ----------
    last_predictions : ndarray, CSR matrix or None
    history_ : list of float
        The share of changed predictions at each comparison (not in small-text).
    """

    def __init__(self, num_classes: int, threshold: float = 0.0):
        if threshold < 0 or threshold > 1:
            raise ValueError(f"Threshold must be between 0 and 1 inclusive, but got {threshold}.")
        self.num_classes = check_param("num_classes", num_classes, POSITIVE_INT)
        self.threshold = threshold
        self.last_predictions = None
        self.history_: list[float] = []

    def stop(self, active_learner=None, predictions=None, proba=None, indices_stopping=None) -> bool:
        predictions = _check_predictions(predictions, self.last_predictions, None,
                                         allow_multi_label=True, owner="ClassificationChange")
        if self.last_predictions is None:
            self.last_predictions = predictions
            return False
        n = predictions.shape[0]
        if sp.issparse(predictions):
            if predictions.shape[1] != self.last_predictions.shape[1]:
                raise ValueError("multi-label predictions changed their number of columns")
            diff = (predictions != self.last_predictions).tocsr()
            unchanged = np.count_nonzero(np.diff(diff.indptr) == 0)
        else:
            unchanged = np.count_nonzero(predictions == self.last_predictions)
        self.last_predictions = predictions
        self.history_.append(float(n - unchanged) / n if n else 0.0)
        return bool(unchanged >= n * (1 - self.threshold))


class OverallUncertainty(StoppingCriterion):
    """Stops when the mean normalized prediction entropy over ``indices_stopping`` falls
    below ``threshold`` [ZWH08]_ (pass the unlabeled pool to reproduce the paper).

    Each row is normalized to sum to one (as ``scipy.stats.entropy`` does), then
    :math:`u = \\frac{1}{|S|}\\sum_{i \\in S} \\frac{-\\sum_c p_{ic}\\ln p_{ic}}{\\ln K}`,
    :math:`K` = ``num_classes``; stop when :math:`u <` ``threshold``. A row of zeros gives
    NaN (as in small-text), and a NaN mean never stops.

    Parameters
    ----------
    num_classes : int
        At least 2.
    threshold : float in [0, 1), default=0.05

    Attributes
    ----------
    history_ : list of float
        The mean normalized entropy of each call (not in small-text).
    """

    def __init__(self, num_classes: int, threshold: float = 0.05):
        if threshold < 0 or threshold >= 1:
            raise ValueError(f"Threshold must be between 0 (inclusive) and 1 (exclusive), "
                             f"but got {threshold}.")
        self.num_classes = int(check_param("num_classes", num_classes, Interval(Integral, 2, None)))
        self.threshold = threshold
        self.last_predictions = None
        self.history_: list[float] = []

    def stop(self, active_learner=None, predictions=None, proba=None, indices_stopping=None) -> bool:
        if indices_stopping is None:
            raise ValueError("indices_stopping must not be None")
        if proba is None:
            raise ValueError("proba must not be None")
        indices_stopping = np.asarray(indices_stopping)
        p = proba[indices_stopping]
        p = p.toarray() if sp.issparse(p) else np.asarray(p, dtype=np.float64)
        if p.ndim != 2:
            raise ValueError(f"proba must be 2-dimensional, got shape {np.shape(proba)}")
        with np.errstate(divide="ignore", invalid="ignore"):
            p = p / p.sum(axis=1, keepdims=True)
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
            plogp = np.where(np.isnan(p), np.nan, plogp)
            entropy = -plogp.sum(axis=1) / np.log(self.num_classes)
            uncertainty = float(np.mean(entropy)) if entropy.size else float("nan")
        self.history_.append(uncertainty)
        return bool(uncertainty < self.threshold)


class MaxIterations(StoppingCriterion):
    """Stops from the ``max_iterations``-th call on (calls 1 .. max_iterations-1 return
    False, every later call True).

    Attributes
    ----------
    current_iteration : int
        Number of calls that returned False.
    """

    def __init__(self, max_iterations: int):
        check_param("max_iterations", max_iterations, Interval(Integral, None, None))
        if max_iterations < 1:  # small-text's message
            raise ValueError(f"Argument max_iterations must be greater or equal 1. "
                             f"Encountered: {max_iterations}.")
        self.max_iterations = max_iterations
        self.current_iteration = 0

    def stop(self, active_learner=None, predictions=None, proba=None, indices_stopping=None) -> bool:
        if self.current_iteration + 1 >= self.max_iterations:
            return True
        self.current_iteration += 1
        return False
