"""Pool-based active learner (small-text's ``PoolBasedActiveLearner``, same method names).

The learner owns the pool, the labeled positions and their labels, the current
classifier, and a history of every query for auditing. It never asks an oracle itself:
the caller labels the queried positions and hands the labels to :meth:`update`.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from al_engine.data import Dataset, is_multi_label_target
from al_engine.exceptions import LearnerNotInitializedError


def _as_factory(clf_factory) -> Callable[[], Any]:
    if hasattr(clf_factory, "new"):
        return clf_factory.new
    if callable(clf_factory):
        return clf_factory
    raise TypeError("clf_factory must have a new() method or be a callable returning a classifier")


class PoolBasedActiveLearner:
    """Active learner over a fixed pool.

    Parameters
    ----------
    clf_factory : object with ``new()`` or a callable
        Builds a fresh, unfitted classifier.
    query_strategy : QueryStrategy
        Chooses which unlabeled positions to label next.
    dataset : Dataset
        The pool. If it has texts but no features and the classifier can ``featurize``,
        it is featurized once here (e.g. TF-IDF fitted on the whole pool, unsupervised).
    incremental_training : bool, default=False
        False: every retraining fits a new classifier from the factory on all labels.
        True: the current classifier is fitted again (continues training for models that
        warm-start; equivalent to a full refit for stateless scikit-learn estimators).

    Attributes
    ----------
    indices_labeled : ndarray of int
        Labeled positions, in the order they were labeled.
    y : ndarray or CSR matrix
        Their labels, aligned with ``indices_labeled``.
    query_history_ : list of dict
        One record per :meth:`query`: round, requested ``n``, the positions returned,
        the strategy's scores for them (when it keeps ``scores_``), labeled count, seconds.
    """

    def __init__(self, clf_factory, query_strategy, dataset: Dataset,
                 incremental_training: bool = False):
        self.clf_factory = clf_factory
        self.query_strategy = query_strategy
        self.dataset = dataset
        self.incremental_training = incremental_training

        self._new_classifier = _as_factory(clf_factory)
        self._clf = None
        self.indices_labeled = np.empty(0, dtype=np.int64)
        self.indices_ignored = np.empty(0, dtype=np.int64)
        self.y = None
        self.indices_queried = None
        self.query_history_: list[dict] = []
        self._featurized = False
        self._featurizer_owner = None

    # ------------------------------------------------------------------ state
    @property
    def classifier(self):
        return self._clf

    @property
    def multi_label(self) -> bool:
        return self.dataset.is_multi_label

    @property
    def indices_unlabeled(self) -> np.ndarray:
        mask = np.ones(len(self.dataset), dtype=bool)
        mask[self.indices_labeled] = False
        mask[self.indices_ignored] = False
        return np.flatnonzero(mask)

    def _check_indices(self, indices, name: str) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self.dataset)):
            raise IndexError(f"{name} out of range for a pool of {len(self.dataset)}")
        if np.unique(indices).size != indices.size:
            raise ValueError(f"{name} contains duplicates")
        return indices

    def _check_labels(self, y, n: int, name: str = "y"):
        if self.multi_label:
            if not is_multi_label_target(y):
                raise ValueError(f"{name} must be a label indicator matrix for a multi-label pool")
            y = sp.csr_matrix(y, dtype=np.int8)
            if y.shape[0] != n:
                raise ValueError(f"{name} has {y.shape[0]} rows, expected {n}")
            return y
        if is_multi_label_target(y):
            raise ValueError(f"{name} must be a vector of class ids for a single-label pool")
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0]} labels, expected {n}")
        if y.size and y.min() < 0:
            raise ValueError(f"{name} contains negative class ids")
        return y

    # ------------------------------------------------------------------ setup
    def initialize_data(self, indices_initial, y_initial, indices_ignored=None,
                        retrain: bool = True) -> "PoolBasedActiveLearner":
        """Start from known labels (small-text's name).

        Parameters
        ----------
        indices_initial : array-like of int
            Positions in the pool that are labeled.
        y_initial : array-like or CSR matrix
            Their labels (class ids, or indicator rows for multi-label).
        indices_ignored : array-like of int, optional
            Positions never to query nor train on.
        retrain : bool
            Fit the classifier now.
        """
        self.indices_labeled = self._check_indices(indices_initial, "indices_initial")
        self.y = self._check_labels(y_initial, self.indices_labeled.size, "y_initial")
        self.indices_ignored = (np.empty(0, dtype=np.int64) if indices_ignored is None
                                else self._check_indices(indices_ignored, "indices_ignored"))
        if np.intersect1d(self.indices_labeled, self.indices_ignored).size:
            raise ValueError("indices_initial and indices_ignored overlap")
        self._featurize()
        if retrain:
            self._retrain()
        return self

    def initialize(self, init_strategy, y_oracle, n: int,
                   retrain: bool = True) -> "PoolBasedActiveLearner":
        """Start by labeling ``n`` positions chosen by ``init_strategy``.

        ``y_oracle`` holds the true labels of the whole pool (a simulation's oracle, or
        whatever the strategy needs to stratify); only the chosen positions' labels are used.
        A label-free strategy (``needs_features``, e.g. :class:`~al_engine.coldstart.TypiClust`)
        is given the pool's features instead (the classifier's featurizer fitted on the pool).
        """
        if getattr(init_strategy, "needs_features", False):
            self._featurize()
            indices = np.asarray(init_strategy(self.dataset.x, n), dtype=np.int64)
        else:
            indices = np.asarray(init_strategy(y_oracle, n), dtype=np.int64)
        y = y_oracle[indices]
        return self.initialize_data(indices, y, retrain=retrain)

    def _featurize(self) -> None:
        if self._featurized:
            return
        if self.dataset.x is None:
            probe = self._new_classifier()
            if not hasattr(probe, "featurize"):
                raise ValueError("the pool has no features and the classifier cannot featurize texts")
            self.dataset = probe.featurize(self.dataset)
            self._featurizer_owner = probe
        self._featurized = True

    def featurize(self, dataset: Dataset) -> Dataset:
        """Features for another dataset (e.g. a test set) with the featurizer fitted on the pool."""
        if dataset.x is not None or self._featurizer_owner is None:
            return dataset
        return self._featurizer_owner.featurize(dataset)

    # ------------------------------------------------------------------ loop
    def query(self, num_samples: int = 10, query_strategy_kwargs: dict | None = None) -> np.ndarray:
        """Ask the strategy for ``num_samples`` unlabeled positions, most informative first."""
        if self._clf is None:
            raise LearnerNotInitializedError("call initialize_data() or initialize() before query()")
        start = time.perf_counter()
        indices = self.query_strategy.query(
            self._clf, self.dataset, self.indices_unlabeled, self.indices_labeled, self.y,
            n=num_samples, **(query_strategy_kwargs or {}))
        indices = np.asarray(indices, dtype=np.int64)
        scores = getattr(self.query_strategy, "scores_", None)
        self.indices_queried = indices
        self.query_history_.append({
            "round": len(self.query_history_) + 1,
            "n": int(num_samples),
            "indices": indices.tolist(),
            "scores": None if scores is None else np.asarray(scores)[indices].tolist(),
            "labeled": int(self.indices_labeled.size),
            "seconds": time.perf_counter() - start,
        })
        return indices

    def update(self, y, retrain: bool = True) -> "PoolBasedActiveLearner":
        """Label the positions returned by the last :meth:`query` and retrain."""
        if self.indices_queried is None:
            raise LearnerNotInitializedError("update() needs a preceding query()")
        y = self._check_labels(y, self.indices_queried.size)
        return self._add_labels(self.indices_queried, y, retrain)

    def _add_labels(self, indices, y, retrain: bool) -> "PoolBasedActiveLearner":
        self.indices_labeled = np.concatenate([self.indices_labeled, indices])
        self.y = sp.vstack([self.y, y], format="csr") if self.multi_label else np.concatenate([self.y, y])
        self.indices_queried = None
        if retrain:
            self._retrain()
        return self

    def update_label_at(self, index: int, y, retrain: bool = False) -> "PoolBasedActiveLearner":
        """Set (or correct) the label of one pool position."""
        index = int(self._check_indices([index], "index")[0])
        y = self._check_labels(y if self.multi_label else [y], 1)
        hit = np.flatnonzero(self.indices_labeled == index)
        if hit.size:
            if self.multi_label:
                rows = [self.y[:hit[0]], y, self.y[hit[0] + 1:]]
                self.y = sp.vstack(rows, format="csr")
            else:
                self.y[hit[0]] = y[0]
            if retrain:
                self._retrain()
            return self
        if np.isin(index, self.indices_ignored):
            raise ValueError(f"position {index} is ignored and cannot be labeled")
        keep_queried = self.indices_queried
        self._add_labels(np.array([index], dtype=np.int64), y, retrain)
        if keep_queried is not None:
            self.indices_queried = keep_queried[keep_queried != index]
        return self

    def remove_label_at(self, index: int, retrain: bool = False) -> "PoolBasedActiveLearner":
        """Return one labeled position to the unlabeled pool."""
        hit = np.flatnonzero(self.indices_labeled == int(index))
        if not hit.size:
            raise ValueError(f"position {index} is not labeled")
        keep = np.ones(self.indices_labeled.size, dtype=bool)
        keep[hit[0]] = False
        self.indices_labeled = self.indices_labeled[keep]
        self.y = self.y[keep] if not self.multi_label else self.y[np.flatnonzero(keep)]
        if retrain:
            self._retrain()
        return self

    # ------------------------------------------------------------------ training
    def training_set(self) -> Dataset:
        """The labeled part of the pool, with the learner's labels."""
        train = self.dataset[self.indices_labeled]
        train.y = self.y
        return train

    def _retrain(self) -> None:
        if self.indices_labeled.size == 0:
            raise ValueError("cannot train without labels")
        if self._clf is None or not self.incremental_training:
            self._clf = self._new_classifier()
            owner = self._featurizer_owner
            if owner is not None and hasattr(self._clf, "featurizer"):
                # Share the featurizer fitted on the pool, so the classifier can also
                # predict raw texts (e.g. tasks that arrive after training).
                self._clf.featurizer = owner.featurizer
        self._clf.fit(self.training_set())
