"""Bayesian Active Learning by Disagreement (BALD) with Monte-Carlo dropout [HHG+11]_ [GIG17]_.

With :math:`T` stochastic forward passes (dropout active) giving :math:`p^{(t)}`, BALD
scores the mutual information between the prediction and the model parameters:

.. math:: \\mathrm{BALD}(x) = H\\Big[\\frac1T \\sum_t p^{(t)}\\Big]
          - \\frac1T \\sum_t H\\big[p^{(t)}\\big],\\qquad H[p] = -\\sum_c p_c \\log p_c

(high when the passes are individually confident but disagree). The largest scores are
queried. The classifier must have the trait ``supports_dropout_sampling``: accept
``predict_proba(dataset, dropout_sampling=T)`` and return ``(n, T, num_classes)`` -- the torch
classifiers of this package and SetFit do; any other classifier raises ``TypeError``
(:func:`al_engine.registry.check_compatible` says so before a round).

.. [HHG+11] N. Houlsby, F. Huszár, Z. Ghahramani, M. Lengyel. Bayesian active learning for
   classification and preference learning. arXiv:1112.5745, 2011.
.. [GIG17] Y. Gal, R. Islam, Z. Ghahramani. Deep Bayesian active learning with image data.
   ICML 2017.
"""
from __future__ import annotations

import numpy as np

from al_engine._param_validation import Integral, Interval, validate_params
from al_engine.query.base import ScoringQueryStrategy


def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    p = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(p > 0, np.log(p), 0.0)
    return -(p * logp).sum(axis=axis)


def bald_scores(samples: np.ndarray) -> np.ndarray:
    """BALD of ``samples`` of shape ``(n, T, C)`` (see the module docstring)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 3:
        raise ValueError(f"dropout samples must have shape (n, T, C), got {samples.shape}")
    return _entropy(samples.mean(axis=1)) - _entropy(samples).mean(axis=1)


class BALD(ScoringQueryStrategy):
    """BALD with Monte-Carlo dropout (single-label).

    Parameters
    ----------
    dropout_samples : int, default=10
        Stochastic forward passes :math:`T` (small-text's parameter name).
    """

    lower_is_better = False
    required_classifier_traits = frozenset({"supports_dropout_sampling"})
    _parameter_constraints = {"dropout_samples": Interval(Integral, 2, None)}

    def __init__(self, dropout_samples: int = 10):
        validate_params(self._parameter_constraints, locals())
        self.dropout_samples = dropout_samples

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        if not getattr(clf, "supports_dropout_sampling", False):
            # small-text's words first (the TypeError its call would raise), then ours
            raise TypeError(f"predict_proba() got an unexpected keyword argument "
                            f"'dropout_sampling': BALD needs a classifier whose predict_proba "
                            f"accepts dropout_sampling (e.g. 'kimcnn', 'transformer', "
                            f"'setfit'); got {type(clf).__name__}")
        indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64)
        samples = clf.predict_proba(dataset[indices_unlabeled],
                                    dropout_sampling=int(self.dropout_samples))
        scores = np.full(len(dataset), np.nan)
        scores[indices_unlabeled] = bald_scores(samples)
        return scores
