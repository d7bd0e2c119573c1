"""The query-strategy contract shared by every strategy.

small-text's signature is kept so that its users can swap our strategies in::

    strategy.query(clf, dataset, indices_unlabeled, indices_labeled, y, n=10) -> np.ndarray

returns ``n`` distinct positions into ``dataset``, all drawn from ``indices_unlabeled``,
most informative first. :meth:`QueryStrategy.rank` orders the whole unlabeled pool, which is
what the Label Studio backend turns into priorities.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from al_engine._param_validation import POSITIVE_INT, check_param
from al_engine.data import is_multi_label_target
from al_engine.query._checks import check_pool
from al_engine.exceptions import EmptyPoolError, MultiLabelNotSupportedError, PoolExhaustedError


def check_query_args(indices_unlabeled, n) -> np.ndarray:
    """Validate ``n`` against the pool; return ``indices_unlabeled`` as an int64 array.

    Raises
    ------
    EmptyPoolError
        If there is no unlabeled instance.
    PoolExhaustedError
        If ``n`` exceeds the number of unlabeled instances.
    ValueError
        If ``n`` is not a positive integer.
    """
    check_param("n", n, POSITIVE_INT)
    indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
    if indices_unlabeled.size == 0:
        raise EmptyPoolError("there are no unlabeled instances left to query")
    if n > indices_unlabeled.size:
        raise PoolExhaustedError(
            f"n={n} instances requested but only {indices_unlabeled.size} are unlabeled")
    return indices_unlabeled


def top_n(scores: np.ndarray, n: int, lower_is_better: bool) -> np.ndarray:
    """Positions of the ``n`` best entries of ``scores``, best first.

    Ties are broken by position (stable), so the result is deterministic. Runs in
    O(len(scores) + n log n) with ``argpartition`` before the final sort.
    """
    keys = scores if lower_is_better else -scores
    if n < keys.size:
        # Take everything tied with the n-th best too, so the stable sort below decides ties.
        kth = np.partition(keys, n - 1)[n - 1]
        candidates = np.flatnonzero(keys <= kth)
    else:
        candidates = np.arange(keys.size)
    order = np.argsort(keys[candidates], kind="stable")
    return candidates[order[:n]]


class QueryStrategy(ABC):
    """Base class of all query strategies.

    Subclasses implement :meth:`query`. Strategies that support multi-label data set
    ``supports_multi_label = True``; strategies that support only multi-label data also
    set ``supports_single_label = False``. A strategy that needs more of the classifier
    than ``predict_proba`` and ``embed`` names the classifier traits it needs in
    ``required_classifier_traits`` (see :class:`~al_engine.classifiers.base.Classifier`;
    checked by :func:`al_engine.registry.check_compatible`).
    """

    supports_multi_label: bool = False
    supports_single_label: bool = True
    required_classifier_traits: frozenset[str] = frozenset()

    @abstractmethod
    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        """Return ``n`` positions from ``indices_unlabeled``, most informative first."""

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """Every position of ``indices_unlabeled``, most informative first: ``query`` with
        ``n`` = the pool size (label mode checked first, then the pool, as every override does)."""
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_pool(indices_unlabeled)
        return self.query(clf, dataset, indices_unlabeled, indices_labeled, y,
                          n=int(indices_unlabeled.size))

    def _check_label_mode(self, dataset, y) -> None:
        multi = getattr(dataset, "is_multi_label", False) or (
            y is not None and is_multi_label_target(y))
        name = type(self).__name__
        # small-text's words first (its constraint error), then ours
        if multi and not self.supports_multi_label:
            raise MultiLabelNotSupportedError(
                "Invalid configuration: This query strategy requires classification_type="
                f"single-label but multi-label data was encountered ({name} supports "
                "single-label classification only)")
        if not multi and not self.supports_single_label:
            raise MultiLabelNotSupportedError(
                "Invalid configuration: This query strategy requires classification_type="
                f"multi-label but single-label data was encountered ({name} supports "
                "multi-label classification only)")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not (k.endswith("_") or k.startswith("_")))
        return f"{type(self).__name__}({params})"


class WrappingQueryStrategy(QueryStrategy):
    """A strategy that runs a base strategy (``base_query_strategy_``) on part of the pool:
    it supports exactly the label modes, and needs exactly the classifier traits, of its base."""

    base_query_strategy_: QueryStrategy

    @property
    def required_classifier_traits(self) -> frozenset[str]:
        return frozenset(getattr(self.base_query_strategy_, "required_classifier_traits", ()))

    @property
    def supports_multi_label(self) -> bool:
        return bool(getattr(self.base_query_strategy_, "supports_multi_label", False))

    @property
    def supports_single_label(self) -> bool:
        return bool(getattr(self.base_query_strategy_, "supports_single_label", True))


class ScoringQueryStrategy(QueryStrategy):
    """A strategy that scores every instance and takes the best ``n`` unlabeled ones.

    Subclasses implement :meth:`score`, returning one score per row of ``dataset``;
    ``lower_is_better`` says which end is most informative. After each call the full-pool
    scores are kept in ``scores_`` (small-text's attribute name).
    """

    lower_is_better: bool = False

    @abstractmethod
    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """One score per row of ``dataset`` (shape ``(len(dataset),)``)."""

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_query_args(indices_unlabeled, n)
        scores = np.asarray(self.score(clf, dataset, indices_unlabeled, indices_labeled, y))
        self.scores_ = scores
        return indices_unlabeled[top_n(scores[indices_unlabeled], n, self.lower_is_better)]
