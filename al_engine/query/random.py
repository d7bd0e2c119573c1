"""Random sampling: the baseline every other strategy has to beat."""
from __future__ import annotations

import numpy as np

from al_engine._param_validation import SEED, check_param
from al_engine.query._checks import make_rng
from al_engine.query.base import QueryStrategy, check_query_args


class RandomSampling(QueryStrategy):
    """Selects ``n`` distinct unlabeled instances uniformly at random.

    The selection is the first ``n`` entries of a random permutation of
    ``indices_unlabeled``, so ``query(..., n)`` equals ``rank(...)[:n]`` for the same int seed.
    Works for single- and multi-label data; never calls the classifier.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None, default=None
        An int makes every call deterministic (each call starts a fresh
        ``np.random.default_rng(seed)``); None draws fresh entropy on each call; a
        Generator is used as is (its state advances between calls).
    """

    supports_multi_label = True
    supports_single_label = True

    def __init__(self, seed=None):
        self.seed = check_param("seed", seed, SEED)

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        indices_unlabeled = check_query_args(indices_unlabeled, n)
        return make_rng(self.seed).permutation(indices_unlabeled)[:n]
