"""Uncertainty sampling from predicted class probabilities (single-label).

Each strategy calls only ``clf.predict_proba(dataset)`` once, scores every row of
``dataset`` with a vectorized formula, keeps the full-pool scores in ``scores_`` and returns
the best ``n`` unlabeled positions (ties broken by position, see
:func:`al_engine.query.base.top_n`).

small-text 1.4.1 does not restrict these three strategies to single-label data (it has no
``@constraints`` on them) and silently scores per-label probabilities as if they were a
distribution; here they raise :class:`~al_engine.exceptions.MultiLabelNotSupportedError`.
"""
from __future__ import annotations

import numpy as np
from scipy.special import entr

from al_engine.query.base import ScoringQueryStrategy
from al_engine.query._checks import predict_proba_2d





def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    # A NaN would silently fall out of the top-n selection; fail loudly instead.
    if np.isnan(scores).any():
        raise ValueError(f"{name}: clf.predict_proba returned NaN (or all-zero rows)")
    return scores


#: Up to this many classes, row-wise reductions run as a loop over the (few) columns, each
#: step a vectorized operation over the whole pool. numpy's ``axis=1`` reductions over a
#: short inner axis are 20-100x slower than that (measured: 100k x 2 ``max(axis=1)`` 5.4 ms
#: vs 0.08 ms); past ~10 columns the ``axis=1`` forms win.
_COLUMN_LOOP_MAX = 8


def _row_max(proba: np.ndarray) -> np.ndarray:
    if proba.shape[1] > _COLUMN_LOOP_MAX:
        return proba.max(axis=1)
    out = proba[:, 0].copy()
    for c in range(1, proba.shape[1]):
        np.maximum(out, proba[:, c], out=out)
    return out


def _row_sum(values: np.ndarray) -> np.ndarray:
    if values.shape[1] > _COLUMN_LOOP_MAX:
        return values.sum(axis=1)
    out = values[:, 0].copy()
    for c in range(1, values.shape[1]):
        np.add(out, values[:, c], out=out)
    return out


def least_confidence_scores(proba: np.ndarray) -> np.ndarray:
    r"""Confidence of the most likely class, :math:`s_i = \max_c p_{ic}`."""
    return _row_max(proba)


def prediction_entropy_scores(proba: np.ndarray) -> np.ndarray:
    r"""Entropy of each row, :math:`s_i = -\sum_c p_{ic} \ln p_{ic}` with :math:`0 \ln 0 = 0`.

    Rows are taken as normalized to sum to one, as ``scipy.stats.entropy`` (used by
    small-text) does, without materializing the normalized matrix: with
    :math:`t_i = \sum_c p_{ic}`, :math:`H(p_i / t_i) = -\sum_c p_{ic} \ln p_{ic} / t_i + \ln t_i`,
    which is the plain formula when :math:`t_i = 1`.
    """
    totals = _row_sum(proba)
    plogp = _row_sum(entr(proba))
    with np.errstate(divide="ignore", invalid="ignore"):  # all-zero rows -> NaN, caught later
        return plogp / totals + np.log(totals)


def breaking_ties_scores(proba: np.ndarray) -> np.ndarray:
    r"""Margin between the two most likely classes, :math:`s_i = p_{i(1)} - p_{i(2)}`.

    No full sort: for few classes a running (best, second-best) pair over the columns, for
    many ``np.partition`` (linear per row). With a single column the second-best probability
    is taken as 0, so the margin is :math:`p_{i(1)}`. Exact: the result is the difference of
    two entries of ``proba``, as in small-text.
    """
    k = proba.shape[1]
    if k == 1:
        return proba[:, 0].copy()
    if k > _COLUMN_LOOP_MAX:
        top2 = np.partition(proba, k - 2, axis=1)[:, k - 2:]
        return top2[:, 1] - top2[:, 0]
    first = np.maximum(proba[:, 0], proba[:, 1])
    second = np.minimum(proba[:, 0], proba[:, 1])
    tmp = np.empty_like(first)
    for c in range(2, k):
        col = proba[:, c]
        np.minimum(first, col, out=tmp)      # what col would leave as second best
        np.maximum(second, tmp, out=second)
        np.maximum(first, col, out=first)
    return np.subtract(first, second, out=first)


class LeastConfidence(ScoringQueryStrategy):
    r"""Selects the instances whose most likely class is least probable [LG94]_.

    Score :math:`s_i = \max_c p_{ic}`; lower is better.

    .. [LG94] D. D. Lewis and W. A. Gale. A sequential algorithm for training text
       classifiers. SIGIR 1994.
    """

    lower_is_better = True

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        return _check_scores(least_confidence_scores(predict_proba_2d(clf, dataset)),
                             type(self).__name__)


class PredictionEntropy(ScoringQueryStrategy):
    r"""Selects the instances with the largest prediction entropy [HOL08]_.

    Score :math:`s_i = -\sum_c p_{ic} \ln p_{ic}` (natural log, :math:`0 \ln 0 = 0`);
    higher is better. Fully vectorized (small-text 1.4.1 applies ``scipy.stats.entropy``
    row by row in Python).

    .. [HOL08] A. Holub, P. Perona and M. C. Burl. Entropy-based active learning for object
       recognition. CVPR Workshops 2008.
    """

    lower_is_better = False

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        return _check_scores(prediction_entropy_scores(predict_proba_2d(clf, dataset)),
                             type(self).__name__)


class BreakingTies(ScoringQueryStrategy):
    r"""Selects the instances with the smallest margin between the two most likely classes
    [LUO05]_.

    Score :math:`s_i = p_{i(1)} - p_{i(2)}` where :math:`p_{i(1)} \ge p_{i(2)}` are the two
    largest probabilities of row :math:`i`; lower is better.

    .. [LUO05] T. Luo et al. Active learning to recognize multiple types of plankton.
       JMLR 6, 2005.
    """

    lower_is_better = True

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        return _check_scores(breaking_ties_scores(predict_proba_2d(clf, dataset)),
                             type(self).__name__)
