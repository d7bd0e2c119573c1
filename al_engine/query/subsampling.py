"""Subsampling: run any strategy on a random subsample of the unlabeled pool.

Behaves like small-text's ``SubsamplingQueryStrategy``: draw ``subsample_size`` unlabeled
positions at random, build ``dataset[concat(subsample, indices_labeled)]`` and let the base
strategy query that subset (subset positions ``0..s-1`` unlabeled, ``s..`` labeled; ``y`` is
passed unchanged since the labeled rows keep their order), then map the result back. The
classifier therefore only sees ``s + len(indices_labeled)`` rows, which is the point on a
large pool. When the pool is not larger than ``subsample_size`` the base strategy queries
the whole dataset directly.

Differences from small-text 1.4.1, all in the direction of the engine contract:

* seeded (``np.random.default_rng``) instead of the global ``np.random`` state;
* ``n`` larger than the subsample still works (small-text raises): the whole subsample comes
  first, in the base strategy's order, then the remaining unlabeled positions follow;
* :meth:`rank` returns every unlabeled position: the subsample ranked by the base strategy
  (its :meth:`rank`), then the positions outside the subsample in the order of the same
  random permutation that drew the subsample -- they were never scored, so a random order
  is the only unbiased fallback that keeps ``rank`` as cheap as ``query``.
"""
from __future__ import annotations

import numpy as np

from al_engine._param_validation import POSITIVE_INT, SEED, validate_params
from al_engine.query._checks import check_pool, make_rng
from al_engine.query.base import QueryStrategy, WrappingQueryStrategy, check_query_args


def _resolve_base(base_query_strategy) -> QueryStrategy:
    if isinstance(base_query_strategy, str):
        from al_engine.registry import make_query_strategy  # here: the registry imports us
        if base_query_strategy == "subsampling":
            raise ValueError("base_query_strategy cannot be 'subsampling' itself "
                             "without a base of its own; pass an instance")
        return make_query_strategy(base_query_strategy)
    if not callable(getattr(base_query_strategy, "query", None)):
        raise ValueError("base_query_strategy must be a query strategy instance or a "
                         f"registered name, got {base_query_strategy!r}")
    return base_query_strategy




class SubsamplingQueryStrategy(WrappingQueryStrategy):
    """Applies ``base_query_strategy`` to a random subsample of the unlabeled pool.

    Parameters
    ----------
    base_query_strategy : QueryStrategy or str
        The strategy to run on the subsample, or its registered name (e.g.
        ``"breaking_ties"``), built with default parameters.
    subsample_size : int, default=4096
        Number of unlabeled instances drawn (without replacement) per query.
    seed : int, numpy.random.Generator or None, default=None
        Seed of the draw; an int gives the same subsample on every call with the same pool.

    Attributes
    ----------
    base_query_strategy_ : QueryStrategy
        The resolved base strategy.
    subsample_ : np.ndarray
        Positions (into ``dataset``) of the last subsample, in draw order; the whole pool
        when it was not larger than ``subsample_size``.
    subsampled_indices_ : np.ndarray
        small-text's attribute: the base strategy's selection, relative to the subset.
    scores_ : np.ndarray or None
        The base strategy's scores of the subsample rows (aligned with ``subsample_``), as
        small-text's property gives them; None if the base does not score. Read from the
        base strategy on access; before any query, small-text's
        ``base_query_strategy.scores_[:subsample_size]``.
    """

    def __init__(self, base_query_strategy, subsample_size: int = 4096, seed=None):
        validate_params({"subsample_size": POSITIVE_INT, "seed": SEED}, locals())
        self.base_query_strategy = base_query_strategy
        self.subsample_size = subsample_size
        self.seed = seed
        self.base_query_strategy_ = _resolve_base(base_query_strategy)
        # where scores_ reads the base's scores: (rows, their length or None = unchecked)
        self._scores_at = (slice(0, subsample_size), None)

    @property
    def scores_(self) -> np.ndarray | None:
        scores = getattr(self.base_query_strategy_, "scores_", None)
        rows, n_rows = self._scores_at
        if scores is None or (n_rows is not None and
                              (np.ndim(scores) != 1 or len(scores) != n_rows)):
            return None
        return np.asarray(scores)[rows]

    # ------------------------------------------------------------------ internals
    def _draw(self, indices_unlabeled: np.ndarray) -> np.ndarray:
        """A random permutation of the pool; its first ``subsample_size`` are the subsample."""
        return make_rng(self.seed).permutation(indices_unlabeled)

    def _run_base(self, clf, dataset, subsample, indices_labeled, y, n: int | None):
        """Base ``query`` (or ``rank`` when ``n`` is None) on the subsample; dataset positions."""
        base = self.base_query_strategy_
        indices_labeled = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        s = subsample.size
        subset = dataset[np.concatenate([subsample, indices_labeled])]
        sub_unlabeled = np.arange(s, dtype=np.int64)
        sub_labeled = np.arange(s, s + indices_labeled.size, dtype=np.int64)
        if n is None:
            picked = base.rank(clf, subset, sub_unlabeled, sub_labeled, y)
        else:
            picked = base.query(clf, subset, sub_unlabeled, sub_labeled, y, n=n)
        picked = np.asarray(picked, dtype=np.int64)
        self.subsampled_indices_ = picked
        self._scores_at = (slice(0, s), len(subset))
        return subsample[picked]

    def _whole_pool(self, clf, dataset, indices_unlabeled, indices_labeled, y, n):
        base = self.base_query_strategy_
        self.subsample_ = indices_unlabeled
        if n is None:
            result = base.rank(clf, dataset, indices_unlabeled, indices_labeled, y)
        else:
            result = base.query(clf, dataset, indices_unlabeled, indices_labeled, y, n=n)
        self.subsampled_indices_ = np.asarray(result, dtype=np.int64)
        self._scores_at = (indices_unlabeled, len(dataset))
        return np.asarray(result, dtype=np.int64)

    # ------------------------------------------------------------------ API
    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_query_args(indices_unlabeled, n)
        if indices_unlabeled.size <= self.subsample_size:
            return self._whole_pool(clf, dataset, indices_unlabeled, indices_labeled, y, n)
        perm = self._draw(indices_unlabeled)
        subsample = perm[:self.subsample_size]
        self.subsample_ = subsample
        if n <= subsample.size:
            return self._run_base(clf, dataset, subsample, indices_labeled, y, n)
        # More than the subsample requested: all of it, ranked, then the rest at random.
        head = self._run_base(clf, dataset, subsample, indices_labeled, y, None)
        return np.concatenate([head, perm[subsample.size:n]])

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """Every unlabeled position: the subsample in the base strategy's rank order, then
        the positions outside it in random (seeded) order."""
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_pool(indices_unlabeled)
        if indices_unlabeled.size <= self.subsample_size:
            return self._whole_pool(clf, dataset, indices_unlabeled, indices_labeled, y, None)
        perm = self._draw(indices_unlabeled)
        subsample = perm[:self.subsample_size]
        self.subsample_ = subsample
        head = self._run_base(clf, dataset, subsample, indices_labeled, y, None)
        return np.concatenate([head, perm[subsample.size:]])
