"""Query strategies for multi-label classification.

* :class:`LabelCardinalityInconsistency` (LCI) and :class:`AdaptiveActiveLearning` (AAL),
  from Li & Guo (2013), with small-text 2.0's semantics and parameters;
* :class:`CategoryVectorInconsistencyAndRanking` (CVIRS), from Reyes et al. (2018), with
  small-text 1.4.1's parameters; its formula is the paper's by default (small-text's version
  has three defects, listed in the class docstring) and small-text's own scores are available
  with ``small_text_compat=True``.

All three accept ``clf.predict_proba(dataset)`` as a dense array or a scipy sparse matrix of
per-label probabilities (rows need not sum to one) and ``y`` -- the labels of the rows at
``indices_labeled`` -- as a CSR (or dense) indicator matrix. They are multi-label only:
single-label data raises :class:`~al_engine.exceptions.MultiLabelNotSupportedError`. Every
one predicts once on the whole ``dataset``, scores with vectorized numpy, keeps the
full-length scores in ``scores_`` and returns the highest-scoring unlabeled rows (ties broken
by position).

References
----------
.. [LG13] X. Li and Y. Guo. Active learning with multi-label SVM classification. IJCAI 2013.
.. [RMV18] O. Reyes, C. Morell and S. Ventura. Effective active learning strategy for
   multi-label learning. Neurocomputing 273, 2018.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from al_engine._param_validation import (POSITIVE_INT, POSITIVE_REAL, Interval, Options, Real,
                                        check_param, validate_params)
from al_engine.query._checks import predict_proba_2d
from al_engine.query.base import ScoringQueryStrategy

#: Lower bound of the margin in AAL's inverse uncertainty (small-text's ``eps``).
AAL_MARGIN_EPS = 0.01

#: Upper bound on the number of cells of one (rows x labeled) block in CVIRS.
_MAX_BLOCK_CELLS = 1 << 22


_UNIT_INTERVAL = Interval(Real, 0, 1, closed="both")


def multilabel_proba(clf, dataset) -> np.ndarray:
    """``clf.predict_proba(dataset)`` (dense or sparse) as a dense 2-D float array."""
    proba = predict_proba_2d(clf, dataset)
    if np.isnan(proba).any():
        raise ValueError("clf.predict_proba(dataset) returned NaN")
    return proba


def labeled_indicator(y, num_classes: int) -> sp.csr_matrix:
    """``y`` (labels of the labeled rows) as a binary CSR matrix; ValueError if empty."""
    if y is None:
        raise ValueError("y must hold the label indicator rows of indices_labeled, got None")
    y = sp.csr_matrix(y)
    if y.ndim != 2 or y.shape[1] != num_classes:
        raise ValueError(f"y must have shape (num_labeled, {num_classes}), got {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("y is empty: these strategies need at least one labeled instance")
    y = (y > 0).astype(np.int8)
    y.eliminate_zeros()
    return y


def label_cardinality_inconsistency(proba: np.ndarray, y_labeled,
                                    prediction_threshold: float = 0.5) -> np.ndarray:
    r"""Label cardinality inconsistency per row [LG13]_.

    .. math:: \mathrm{LCI}_i = \Bigl|\,\#\{j : p_{ij} > t\} - \frac{1}{|L|}\sum_{l \in L}
              |y_l|\,\Bigr|

    the distance between the number of labels predicted for row :math:`i` (probability above
    the threshold :math:`t`) and the mean number of labels of a labeled instance.
    """
    y = labeled_indicator(y_labeled, proba.shape[1])
    mean_cardinality = np.diff(y.indptr).mean()
    counts = (proba > prediction_threshold).sum(axis=1)
    return np.abs(counts - mean_cardinality)


def top2_margin(proba: np.ndarray) -> np.ndarray:
    r"""Difference between the two largest entries of each row (the largest itself when
    there is one column): small-text's ``breaking_ties`` applied to per-label scores."""
    k = proba.shape[1]
    if k == 1:
        return proba[:, 0].copy()
    top2 = np.partition(proba, k - 2, axis=1)[:, k - 2:]
    return top2[:, 1] - top2[:, 0]


def adaptive_active_learning_scores(proba: np.ndarray, y_labeled,
                                    uncertainty_weight: float = 0.5,
                                    prediction_threshold: float = 0.5,
                                    eps: float = AAL_MARGIN_EPS) -> np.ndarray:
    r"""Uncertainty-weighted label cardinality inconsistency [LG13]_ (small-text 2.0's form).

    .. math:: s_i = \Bigl(\frac{1}{\max(m_i, \epsilon)}\Bigr)^{\beta}
              \,(\mathrm{LCI}_i + 1)^{1-\beta}

    with :math:`m_i` the margin between the two largest per-label probabilities of row
    :math:`i`, :math:`\beta` = ``uncertainty_weight`` and :math:`\epsilon` = 0.01.
    """
    lci = label_cardinality_inconsistency(proba, y_labeled, prediction_threshold) + 1.0
    inverse_uncertainty = 1.0 / np.maximum(top2_margin(proba), eps)
    return inverse_uncertainty ** uncertainty_weight * lci ** (1.0 - uncertainty_weight)


class _MultiLabelScoring(ScoringQueryStrategy):
    """Shared parts: multi-label only, higher is better."""

    supports_multi_label = True
    supports_single_label = False
    lower_is_better = False


class LabelCardinalityInconsistency(_MultiLabelScoring):
    r"""Queries the instances with the largest label cardinality inconsistency [LG13]_.

    Score (higher is better), see :func:`label_cardinality_inconsistency`:
    :math:`s_i = |\#\{j : p_{ij} > t\} - \overline{|y|}_L|`. Scores are integers plus a
    constant fraction, so ties are common; they are broken by position.

    Parameters
    ----------
    prediction_threshold : float, default=0.5
        A label counts as predicted when its probability exceeds this value; in [0, 1].
    """

    def __init__(self, prediction_threshold: float = 0.5):
        self.prediction_threshold = check_param("prediction_threshold", prediction_threshold,
                                                _UNIT_INTERVAL)

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        return label_cardinality_inconsistency(multilabel_proba(clf, dataset), y,
                                               self.prediction_threshold)


class AdaptiveActiveLearning(_MultiLabelScoring):
    r"""Queries the instances with the largest margin-uncertainty-weighted label cardinality
    inconsistency [LG13]_, small-text 2.0's combination of breaking ties and LCI.

    Score (higher is better), see :func:`adaptive_active_learning_scores`:
    :math:`s_i = \max(m_i, 0.01)^{-\beta}\,(\mathrm{LCI}_i + 1)^{1-\beta}`.

    Parameters
    ----------
    uncertainty_weight : float, default=0.5
        :math:`\beta` in [0, 1]: higher favours the margin uncertainty, lower the label
        cardinality inconsistency.
    prediction_threshold : float, default=0.5
        Threshold of the LCI part, in [0, 1]. (small-text 2.0.0.dev4 stores it but always
        uses 0.5; here it is applied. At the default the two agree.)
    """

    def __init__(self, uncertainty_weight: float = 0.5, prediction_threshold: float = 0.5):
        validate_params({"uncertainty_weight": _UNIT_INTERVAL,
                         "prediction_threshold": _UNIT_INTERVAL}, locals())
        self.uncertainty_weight = uncertainty_weight
        self.prediction_threshold = prediction_threshold

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        return adaptive_active_learning_scores(multilabel_proba(clf, dataset), y,
                                               self.uncertainty_weight,
                                               self.prediction_threshold)


def _entropy_term(num, den, eps):
    ratio = num / (den + eps)
    return -ratio * np.log2(ratio + eps)


def _cvirs_distance_table(num_classes: int, eps: float) -> np.ndarray:
    r"""Distance between a predicted and a true label vector as a function of the contingency
    counts ``(a, b, c)`` (``d = q - a - b - c``), flattened to ``a*(q+1)**2 + b*(q+1) + c``.

    :math:`d = 1` when the Hamming distance :math:`(b+c)/q` is 1, otherwise the normalized
    entropy distance :math:`(2H(y,\hat y) - H(\hat y) - H(y)) / (H(y,\hat y) + \epsilon)`
    [RMV18]_ (the terms as in small-text's ``_distance``).
    """
    q = num_classes
    a, b, c = np.meshgrid(*(np.arange(q + 1, dtype=np.float64),) * 3, indexing="ij")
    d = q - a - b - c
    valid = d >= 0
    a, b, c, d = (np.where(valid, v, 0.0) for v in (a, b, c, d))
    h_true = _entropy_term(a + b, q, eps) + _entropy_term(q - a - b, q, eps)
    h_pred = _entropy_term(a + c, q, eps) + _entropy_term(q - a - c, q, eps)
    joint = _entropy_term(b + c, q, eps) + _entropy_term(a + d, q, eps)
    joint += (b + c) / q * (_entropy_term(b, b + c, eps) + _entropy_term(c, b + c, eps))
    joint += (a + d) / q * (_entropy_term(a, a + d, eps) + _entropy_term(d, a + d, eps))
    dist = np.maximum((2 * joint - h_pred - h_true) / (joint + eps), 0.0)  # -1e-8 noise
    dist[(b + c) == q] = 1.0
    dist[~valid] = np.nan
    return dist.ravel()


class CategoryVectorInconsistencyAndRanking(_MultiLabelScoring):
    r"""Category Vector Inconsistency and Ranking of Scores (CVIRS) [RMV18]_.

    Score (higher is better) of an unlabeled instance :math:`u` among the :math:`N`
    unlabeled ones, with :math:`q` labels and labeled set :math:`L`:

    .. math:: s_u = \underbrace{\frac{1}{|L|}\sum_{l \in L} d(\hat y_u, y_l)}_{\text{vector
              inconsistency}} \cdot \underbrace{\frac{1}{q(N-1)}\sum_{j=1}^{q}
              (N - 1 - r_{uj})}_{\text{ranking}}

    where :math:`\hat y_u = [p_{uj} > t]`, :math:`d` is the normalized entropy distance (1 when
    the vectors disagree on every label; see :func:`_cvirs_distance_table`) and
    :math:`r_{uj} \in [0, N-1]` is the rank (average rank for ties) of :math:`u` among the
    unlabeled instances by ascending margin :math:`|2p_{uj} - 1|` for label :math:`j`, so the
    most uncertain instance of a label contributes 1. (:math:`N = 1` gives a ranking of 1.)

    small-text 1.4.1 (and 2.0.0.dev4) computes something else, reproduced exactly with
    ``small_text_compat=True``:

    1. it computes the entropy distance and then discards it, keeping the Hamming distance;
    2. it divides each row's summed distance by the size of the batch the row falls into
       instead of by :math:`|L|`, so scores depend on ``batch_size`` and on the position of
       the row (the smaller last batch scores higher);
    3. its "ranks" are ``argsort`` output (the index of the k-th smallest margin, not the
       rank of instance k), with the margin :math:`|p_{uj} - \sum_k p_{uk}|`, so the ranking
       factor of an instance is unrelated to its own margins.

    By default the paper's formula is used and ``batch_size`` only bounds memory.

    Parameters
    ----------
    batch_size : int, default=2048
        Unlabeled rows per block of the vector-inconsistency computation (memory bound; a
        block also never exceeds ~4M row x labeled cells). Does not change the result,
        except with ``small_text_compat=True`` where it does, as in small-text.
    prediction_threshold : float, default=0.5
        A label is predicted when its probability exceeds this value; in [0, 1].
    epsilon : float, default=1e-8
        Added inside the logarithms and to denominators of the entropy terms.
    pbar : 'tqdm' or None, default=None
        Accepted for small-text compatibility; the computation is too fast to need one.
    small_text_compat : bool, default=False
        Reproduce small-text 1.4.1's scores (see above) instead of the paper's.
    """

    _parameter_constraints = {"batch_size": POSITIVE_INT, "prediction_threshold": _UNIT_INTERVAL,
                              "epsilon": POSITIVE_REAL, "pbar": [None, Options(["tqdm"])]}

    def __init__(self, batch_size: int = 2048, prediction_threshold: float = 0.5,
                 epsilon: float = 1e-8, pbar=None, small_text_compat: bool = False):
        validate_params(self._parameter_constraints, locals())
        self.batch_size = batch_size
        self.prediction_threshold = prediction_threshold
        self.epsilon = epsilon
        self.pbar = pbar
        self.small_text_compat = bool(small_text_compat)

    # -------------------------------------------------------------- the two factors
    def _vector_inconsistency(self, y_pred: np.ndarray, y: sp.csr_matrix) -> np.ndarray:
        q = y_pred.shape[1]
        card_true = np.diff(y.indptr).astype(np.int64)          # |y_l|
        card_pred = y_pred.sum(axis=1, dtype=np.int64)          # |y^_u|
        if self.small_text_compat:
            # Sum over l of the Hamming distance (b + c) / q needs no (u, l) matrix:
            # sum_l (|y_l| + |y^_u| - 2 a_ul) with sum_l a_ul = y^_u . sum_l y_l.
            label_totals = np.asarray(y.sum(axis=0)).ravel().astype(np.float64)
            summed = (card_true.sum() + y.shape[0] * card_pred
                      - 2.0 * (y_pred @ label_totals)) / q
            num_batches = int(np.ceil(len(y_pred) / self.batch_size))
            sizes = np.array([len(b) for b in np.array_split(np.arange(len(y_pred)),
                                                             num_batches)])
            return summed / np.repeat(sizes, sizes)
        table = _cvirs_distance_table(q, self.epsilon) if (q + 1) ** 3 <= _MAX_BLOCK_CELLS \
            else None
        y32 = y.astype(np.float32)                              # (L, q)
        rows = max(1, min(self.batch_size, _MAX_BLOCK_CELLS // max(1, y.shape[0])))
        out = np.empty(len(y_pred), dtype=np.float64)
        pred32 = y_pred.astype(np.float32)
        for start in range(0, len(y_pred), rows):
            stop = min(start + rows, len(y_pred))
            a = np.rint(np.asarray(y32 @ pred32[start:stop].T).T).astype(np.int64)  # both
            b = card_true[None, :] - a                          # true only
            c = card_pred[start:stop, None] - a                 # predicted only
            if table is not None:
                dist = table[(a * (q + 1) + b) * (q + 1) + c]
            else:
                dist = self._distance_direct(a, b, c, q)
            out[start:stop] = dist.mean(axis=1)
        return out

    def _distance_direct(self, a, b, c, q):
        eps = self.epsilon
        a, b, c = (v.astype(np.float64) for v in (a, b, c))
        d = q - a - b - c
        h_true = _entropy_term(a + b, q, eps) + _entropy_term(q - a - b, q, eps)
        h_pred = _entropy_term(a + c, q, eps) + _entropy_term(q - a - c, q, eps)
        joint = _entropy_term(b + c, q, eps) + _entropy_term(a + d, q, eps)
        joint += (b + c) / q * (_entropy_term(b, b + c, eps) + _entropy_term(c, b + c, eps))
        joint += (a + d) / q * (_entropy_term(a, a + d, eps) + _entropy_term(d, a + d, eps))
        dist = np.maximum((2 * joint - h_pred - h_true) / (joint + eps), 0.0)
        dist[(b + c) == q] = 1.0
        return dist

    def _ranking(self, proba: np.ndarray) -> np.ndarray:
        n, q = proba.shape
        if self.small_text_compat:
            margin = np.abs(proba - proba.sum(axis=1, keepdims=True))
            order = np.argsort(margin, axis=0)                  # small-text's "ranks"
            with np.errstate(divide="ignore", invalid="ignore"):
                return (n - order).sum(axis=1) / (q * (n - 1))
        if n == 1:
            return np.ones(1)
        ranks = rankdata(np.abs(2.0 * proba - 1.0), method="average", axis=0) - 1.0
        return (n - 1 - ranks).sum(axis=1) / (q * (n - 1))

    # -------------------------------------------------------------- API
    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """Scores of the rows at ``indices_unlabeled``; NaN at every other row."""
        proba = multilabel_proba(clf, dataset)
        y = labeled_indicator(y, proba.shape[1])
        indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64)
        proba_u = proba[indices_unlabeled]
        y_pred = proba_u > self.prediction_threshold
        scores = np.full(len(dataset), np.nan)
        scores[indices_unlabeled] = self._vector_inconsistency(y_pred, y) * self._ranking(proba_u)
        return scores
