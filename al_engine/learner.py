"""Pool-based active learner (small-text's ``PoolBasedActiveLearner``, same method names,
signatures and positional order).

The learner owns the pool, the labeled positions and their labels, the current
classifier, and a history of every query for auditing. It never asks an oracle itself:
the caller labels the queried positions and hands the labels to :meth:`update`.

The pool may be our :class:`~al_engine.data.Dataset` or a small-text dataset
(``SklearnDataset``, ``TextDataset``): the classifier is then trained on a small-text dataset
too (:func:`al_engine.compat.datasets.labeled_subset`), so small-text's classifiers work.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from al_engine import persistence
from al_engine.compat.datasets import (LABEL_IGNORED, dataset_length, empty_labels, ignored_rows,
                                       labeled_rows, labeled_subset)
from al_engine.data import Dataset, is_multi_label_target
from al_engine.exceptions import LearnerNotInitializedError

__all__ = ["LABEL_IGNORED", "PoolBasedActiveLearner"]


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
    dataset : Dataset or small-text dataset
        The pool. If it has texts but no features and the classifier can ``featurize``,
        it is featurized once here (e.g. TF-IDF fitted on the whole pool, unsupervised).
    fit_kwargs : dict or None, default=None
        Keyword arguments of every ``clf.fit`` call (small-text's).
    reuse_model : bool, default=False
        False: every retraining fits a new classifier from the factory on all labels.
        True: the current classifier is fitted again (continues training for models that
        warm-start; equivalent to a full refit for stateless scikit-learn estimators).
    incremental_training : bool or None, keyword-only
        Our earlier name of ``reuse_model``; overrides it when given.

    Attributes
    ----------
    indices_labeled : ndarray of int
        Labeled positions, in the order they were labeled.
    y : ndarray or CSR matrix
        Their labels, aligned with ``indices_labeled``.
    indices_ignored : ndarray of int
        Positions never queried nor trained on.
    indices_queried : ndarray of int or None
        What the last :meth:`query` returned, until :meth:`update`.
    query_history_ : list of dict
        One record per :meth:`query`: round, requested ``n``, the positions returned,
        the strategy's scores for them (when it keeps ``scores_``), labeled count, seconds.
    """

    def __init__(self, clf_factory, query_strategy, dataset: Dataset, fit_kwargs: dict | None = None,
                 reuse_model: bool = False, *, incremental_training: bool | None = None):
        self.clf_factory = clf_factory
        self.query_strategy = query_strategy
        self.dataset = dataset
        self.fit_kwargs = {} if fit_kwargs is None else fit_kwargs
        self.reuse_model = bool(reuse_model if incremental_training is None else incremental_training)

        self._new_classifier = _as_factory(clf_factory)
        self._clf = None
        self.indices_labeled = np.empty(0, dtype=np.int64)
        self.indices_ignored = np.empty(0, dtype=np.int64)
        self.y = None
        self.indices_queried = None
        self.query_history_: list[dict] = []
        self._featurized = False
        self._featurizer_owner = None
        self._initialized = False

    # ------------------------------------------------------------------ state
    @property
    def classifier(self):
        return self._clf

    @property
    def incremental_training(self) -> bool:
        """Our earlier name of :attr:`reuse_model`."""
        return self.reuse_model

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
        # An int vector is kept as is (small-text keeps the caller's arrays).
        if not (isinstance(indices, np.ndarray) and indices.ndim == 1 and indices.dtype.kind in "iu"):
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
            if not sp.isspmatrix_csr(y) or y.dtype.kind not in "iub":
                y = sp.csr_matrix(y, dtype=np.int8)
            if y.shape[0] != n:
                raise ValueError(f"{name} has {y.shape[0]} rows, expected {n}")
            return y
        if is_multi_label_target(y):
            raise ValueError(f"{name} must be a vector of class ids for a single-label pool")
        if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu"):
            y = np.asarray(y, dtype=np.int64).reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"{name} has {y.shape[0]} labels, expected {n}")
        if y.size and y.min() < 0:
            raise ValueError(f"{name} contains negative class ids")
        return y

    # ------------------------------------------------------------------ setup
    def initialize_data(self, indices_initial, y_initial, indices_ignored=None,
                        indices_validation=None, retrain: bool = True) -> "PoolBasedActiveLearner":
        """Start from known labels (small-text's signature).

        With ``retrain=False`` no classifier is built; :meth:`query` then passes ``None`` as
        the classifier to the strategy (as small-text does; e.g. random sampling works).

        Parameters
        ----------
        indices_initial : array-like of int
            Positions in the pool that are labeled.
        y_initial : array-like or CSR matrix
            Their labels (class ids, or indicator rows for multi-label).
        indices_ignored : array-like of int, optional
            Positions never to query nor train on.
        indices_validation : array-like of int, optional
            Positions *into* ``indices_initial`` that form a validation set, passed to the
            classifier's ``fit`` as ``validation_set`` (small-text's convention).
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
        self._initialized = True
        if retrain:
            self._retrain(indices_validation=indices_validation)
        return self

    def initialize(self, clf_or_indices=None, y_oracle=None, n: int | None = None,
                   retrain: bool = True, *, indices_validation=None) -> "PoolBasedActiveLearner":
        """Start the learner; what it starts from depends on ``clf_or_indices``:

        - an initialization strategy (ours, e.g. :class:`~al_engine.init.RandomInitialization`):
          label the ``n`` positions it chooses with ``y_oracle``, the true labels of the whole
          pool (a simulation's oracle, or whatever the strategy needs to stratify). A label-free
          strategy (``needs_features``, e.g. :class:`~al_engine.coldstart.TypiClust`) is given
          the pool's features instead (the classifier's featurizer fitted on the pool);
        - an int array (small-text 2.0): these positions, with the labels the pool carries;
        - a classifier (small-text 2.0): it is the current model; nothing is labeled;
        - ``None`` (small-text 2.0's cold start): nothing is labeled and there is no model; the
          first :meth:`query` needs a strategy that works without one (e.g. random sampling).

        ``indices_validation`` and ``retrain`` as in :meth:`initialize_data`.

        Raises
        ------
        ValueError
            For any other ``clf_or_indices``, for pool positions without a label, or for a
            strategy without ``y_oracle`` and ``n``.
        """
        if clf_or_indices is None or hasattr(clf_or_indices, "predict_proba"):
            return self._start_unlabeled(clf_or_indices)
        if isinstance(clf_or_indices, np.ndarray):
            indices = self._check_indices(clf_or_indices, "indices")
            y = labeled_rows(self.dataset, indices)
        elif callable(clf_or_indices):
            if y_oracle is None or n is None:
                raise ValueError("an initialization strategy needs y_oracle and n")
            if getattr(clf_or_indices, "needs_features", False):
                self._featurize()
                indices = np.asarray(clf_or_indices(self.dataset.x, n), dtype=np.int64)
            else:
                indices = np.asarray(clf_or_indices(y_oracle, n), dtype=np.int64)
            y = y_oracle[indices]
        else:
            raise ValueError("clf_or_indices must be an initialization strategy, an index array, "
                             f"a classifier or None; got {type(clf_or_indices).__name__}")
        return self.initialize_data(indices, y, indices_validation=indices_validation,
                                    retrain=retrain)

    def _start_unlabeled(self, clf) -> "PoolBasedActiveLearner":
        self._featurize()
        self.indices_labeled = np.empty(0, dtype=np.int64)
        self.indices_ignored = np.empty(0, dtype=np.int64)
        self.y = empty_labels(self.dataset)
        self._clf = clf
        self._initialized = True
        return self

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
    def query(self, num_samples: int = 10, representation=None,
              query_strategy_kwargs: dict | None = None) -> np.ndarray:
        """Ask the strategy for ``num_samples`` unlabeled positions, most informative first.

        Parameters
        ----------
        num_samples : int, default=10
        representation : matrix or dataset, optional
            Handed to the strategy instead of the pool (e.g. fixed embeddings); one row per
            pool position.
        query_strategy_kwargs : dict, optional
            Further keyword arguments of the strategy's ``query``.

        Raises
        ------
        LearnerNotInitializedError
            Before :meth:`initialize_data` / :meth:`initialize`.
        ValueError
            If ``representation`` does not have one row per pool position.
        """
        if not self._initialized:
            raise LearnerNotInitializedError("call initialize_data() or initialize() before query()")
        if representation is not None and dataset_length(representation) != len(self.dataset):
            raise ValueError(f"representation has {dataset_length(representation)} rows but the "
                             f"pool has {len(self.dataset)}: the number of rows of the alternative "
                             "representation must match the pool")
        start = time.perf_counter()
        indices = self.query_strategy.query(
            self._clf, self.dataset if representation is None else representation,
            self.indices_unlabeled, self.indices_labeled, self.y,
            n=num_samples, **(query_strategy_kwargs or {}))
        if isinstance(indices, (list, tuple)):
            indices = np.asarray(indices, dtype=np.int64)
        self.indices_queried = indices
        self._record_query(num_samples, indices, time.perf_counter() - start)
        return indices

    def _record_query(self, num_samples, indices, seconds: float) -> None:
        # Whatever the strategy returned goes back to the caller unchanged (a test double's
        # value too); only index arrays are recorded.
        is_array = isinstance(indices, np.ndarray)
        scores = getattr(self.query_strategy, "scores_", None)
        self.query_history_.append({
            "round": len(self.query_history_) + 1,
            "n": int(num_samples) if isinstance(num_samples, (int, np.integer)) else num_samples,
            "indices": indices.tolist() if is_array else None,
            "scores": (scores[indices].tolist()
                       if is_array and isinstance(scores, np.ndarray) else None),
            "labeled": int(self.indices_labeled.size),
            "seconds": seconds,
        })

    def update(self, y, indices_validation=None, retrain: bool = True) -> "PoolBasedActiveLearner":
        """Label the positions returned by the last :meth:`query` and retrain.

        A label (multi-label: a row holding a value) equal to :data:`LABEL_IGNORED` ignores
        that position instead: it is never queried again. ``indices_validation`` as in
        :meth:`initialize_data` (positions into :attr:`indices_labeled`).
        """
        if self.indices_queried is None:
            raise LearnerNotInitializedError("update() needs a preceding query()")
        n = self.indices_queried.shape[0]
        y = y if sp.issparse(y) else np.asarray(y)
        if dataset_length(y) != n:
            raise ValueError(f"Query-update mismatch: indices queried - {n} / labels provided - "
                             f"{dataset_length(y)} (y has {dataset_length(y)} labels, expected {n})")
        ignored = ignored_rows(y)
        queried = self.indices_queried
        if ignored is not None and ignored.any():
            self.indices_ignored = np.concatenate([self.indices_ignored, queried[ignored]])
            queried, y = queried[~ignored], y[np.flatnonzero(~ignored)]
        y = self._check_labels(y, queried.size)
        return self._add_labels(queried, y, retrain and queried.size > 0, indices_validation)

    def _add_labels(self, indices, y, retrain: bool, indices_validation=None) -> "PoolBasedActiveLearner":
        if np.intersect1d(self.indices_labeled, indices).size:
            raise ValueError("Duplicate indices detected in the labeled pool: positions "
                             f"{np.intersect1d(self.indices_labeled, indices).tolist()} are "
                             "labeled already (re-examine the query strategy)")
        self.indices_labeled = np.concatenate([self.indices_labeled, indices])
        self.y = sp.vstack([self.y, y], format="csr") if self.multi_label else np.concatenate([self.y, y])
        self.indices_queried = None
        if retrain:
            self._retrain(indices_validation=indices_validation)
        return self

    def update_label_at(self, index: int, y, retrain: bool = False,
                        indices_validation=None) -> "PoolBasedActiveLearner":
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
                self._retrain(indices_validation=indices_validation)
            return self
        if np.isin(index, self.indices_ignored):
            raise ValueError(f"position {index} is ignored and cannot be labeled")
        keep_queried = self.indices_queried
        self._add_labels(np.array([index], dtype=np.int64), y, retrain, indices_validation)
        if keep_queried is not None:
            self.indices_queried = keep_queried[keep_queried != index]
        return self

    def remove_label_at(self, index: int, retrain: bool = False,
                        x_indices_validation=None) -> "PoolBasedActiveLearner":
        """Return one labeled position to the unlabeled pool."""
        hit = np.flatnonzero(self.indices_labeled == int(index))
        if not hit.size:
            raise ValueError(f"position {index} is not labeled")
        self._drop_label(hit[0])
        if retrain:
            self._retrain(indices_validation=x_indices_validation)
        return self

    def ignore_sample_at(self, index: int, retrain: bool = False,
                         indices_validation=None) -> "PoolBasedActiveLearner":
        """Never query (nor train on) position ``index`` again; its label, if any, is removed
        (then ``retrain`` retrains)."""
        index = int(self._check_indices([index], "index")[0])
        hit = np.flatnonzero(self.indices_labeled == index)
        if hit.size:
            self._drop_label(hit[0])
        if not np.isin(index, self.indices_ignored):
            self.indices_ignored = np.concatenate([self.indices_ignored, [index]])
        if hit.size and retrain:
            self._retrain(indices_validation=indices_validation)
        return self

    def _drop_label(self, position: int) -> None:
        keep = np.ones(self.indices_labeled.size, dtype=bool)
        keep[position] = False
        self.indices_labeled = self.indices_labeled[keep]
        self.y = self.y[keep] if not self.multi_label else self.y[np.flatnonzero(keep)]

    # ------------------------------------------------------------------ persistence
    def save(self, file) -> None:
        """Write this learner (pool, labels, classifier, strategy) to ``file`` (a path, a
        string or a binary file handle) with :mod:`pickle`; read it with :meth:`load`.

        Everything must be picklable, the classifier factory too: an object with ``new()``
        (e.g. :class:`~al_engine.classifiers.base.ClassifierFactory`) or a module-level
        function, not a lambda (small-text pickles with dill, which takes lambdas).

        Raises
        ------
        TypeError
            If a part of the learner cannot be pickled (nothing is written).
        """
        persistence.dump(self, file)

    @classmethod
    def load(cls, file) -> "PoolBasedActiveLearner":
        """A learner written by :meth:`save` (``file``: a path, a string or a binary handle).
        Unpickling runs code named in the file: load only files you trust.

        Raises
        ------
        TypeError
            If the file holds something else than a :class:`PoolBasedActiveLearner`.
        """
        return persistence.load(file, cls)

    # ------------------------------------------------------------------ training
    def training_set(self):
        """The labeled part of the pool, with the learner's labels (of the pool's kind)."""
        return labeled_subset(self.dataset, self.indices_labeled, self.y)

    def _retrain(self, indices_validation=None) -> None:
        if self.indices_labeled.size == 0:
            raise ValueError("cannot train without labels")
        if self._clf is None or not self.reuse_model:
            self._clf = self._new_classifier()
            owner = self._featurizer_owner
            if owner is not None and hasattr(self._clf, "featurizer"):
                # Share the featurizer fitted on the pool, so the classifier can also
                # predict raw texts (e.g. tasks that arrive after training).
                self._clf.featurizer = owner.featurizer
        train = self.training_set()
        if indices_validation is None:
            self._clf.fit(train, **self.fit_kwargs)
            return
        valid = np.isin(np.arange(len(train)), indices_validation)
        self._clf.fit(train[np.flatnonzero(~valid)], validation_set=train[np.flatnonzero(valid)],
                      **self.fit_kwargs)

