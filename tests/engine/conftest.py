"""Shared stand-ins for engine tests: tiny deterministic classifiers and a small pool.

They implement the :class:`~al_engine.classifiers.base.Classifier` ABC so that query
strategies can be unit-tested without training a model.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.classifiers.base import Classifier
from al_engine.data import Dataset


class LinearStubClassifier(Classifier):
    """A fixed linear model on dense ``dataset.x``: ``softmax(x W)`` (single-label) or
    ``sigmoid(x W)`` per label (multi-label). ``fit`` does nothing; proba depends only on
    the rows passed in, so subsets (``dataset[idx]``) get the matching rows."""

    def __init__(self, num_classes: int = 3, num_features: int = 8, multi_label: bool = False,
                 seed: int = 0):
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.weights = np.random.default_rng(seed).normal(size=(num_features, num_classes))
        self.calls = {"predict_proba": 0, "embed": 0}

    def fit(self, train_set, weights=None):
        return self

    def _logits(self, dataset):
        return np.asarray(dataset.x, dtype=float) @ self.weights

    def predict_proba(self, dataset):
        self.calls["predict_proba"] += 1
        z = self._logits(dataset)
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-z))
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, dataset, return_proba=False):
        proba = self.predict_proba(dataset)
        pred = sp.csr_matrix((proba > 0.5).astype(np.int8)) if self.multi_label \
            else proba.argmax(axis=1)
        return (pred, proba) if return_proba else pred

    def embed(self, dataset, return_proba=False, **kwargs):
        self.calls["embed"] += 1
        x = np.asarray(dataset.x, dtype=float)
        return (x, self.predict_proba(dataset)) if return_proba else x


class FixedProbaClassifier(Classifier):
    """Returns the same probability matrix whatever the dataset (which must match its
    length): for hand-computed test vectors."""

    def __init__(self, proba, multi_label: bool = False):
        self.proba = np.asarray(proba, dtype=float)
        self.num_classes = self.proba.shape[1]
        self.multi_label = multi_label

    def fit(self, train_set, weights=None):
        return self

    def predict_proba(self, dataset):
        assert len(dataset) == self.proba.shape[0], "FixedProbaClassifier: dataset length"
        return self.proba

    def predict(self, dataset, return_proba=False):
        pred = self.proba.argmax(axis=1)
        return (pred, self.proba) if return_proba else pred

    def embed(self, dataset, return_proba=False, **kwargs):
        return (self.proba, self.proba) if return_proba else self.proba


class Pool:
    """A dataset with its labeled/unlabeled split, in small-text's query() argument form."""

    def __init__(self, dataset: Dataset, indices_labeled: np.ndarray, clf: Classifier):
        self.dataset = dataset
        self.indices_labeled = np.asarray(indices_labeled, dtype=np.int64)
        mask = np.ones(len(dataset), dtype=bool)
        mask[self.indices_labeled] = False
        self.indices_unlabeled = np.flatnonzero(mask)
        self.clf = clf

    @property
    def y(self):
        return self.dataset.y[self.indices_labeled]

    def args(self, **overrides):
        a = dict(clf=self.clf, dataset=self.dataset, indices_unlabeled=self.indices_unlabeled,
                 indices_labeled=self.indices_labeled, y=self.y)
        a.update(overrides)
        return a


def make_pool(n_rows: int = 60, n_labeled: int = 10, num_classes: int = 3,
              multi_label: bool = False, seed: int = 0) -> Pool:
    """``n_rows`` rows of 8 dense features, ``n_labeled`` labeled at random positions (every
    class present), the rest unlabeled, and a :class:`LinearStubClassifier`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 8))
    labeled = np.sort(rng.choice(n_rows, size=n_labeled, replace=False))
    if multi_label:
        ind = np.zeros((n_rows, num_classes), dtype=np.int8)
        ind[labeled, np.arange(n_labeled) % num_classes] = 1
        ind[labeled[::2], (np.arange(0, n_labeled, 2) + 1) % num_classes] = 1
        mask = np.zeros(n_rows, dtype=bool)
        mask[labeled] = True
        ds = Dataset(x=x, y=sp.csr_matrix(ind), multi_label=True, labeled=mask)
    else:
        y = np.full(n_rows, -1, dtype=np.int64)
        y[labeled] = np.arange(n_labeled) % num_classes
        ds = Dataset(x=x, y=y)
    clf = LinearStubClassifier(num_classes=num_classes, multi_label=multi_label, seed=seed + 1)
    return Pool(ds, labeled, clf)


@pytest.fixture
def single_label_pool() -> Pool:
    return make_pool()


@pytest.fixture
def multi_label_pool() -> Pool:
    return make_pool(multi_label=True)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str | None:
    """The tiny local BERT folder of the neural tests (``tests/neural/conftest.py``), built on
    first use; None without torch (the suites then skip the classifiers that need it)."""
    try:
        from tests.neural import conftest as neural
    except pytest.skip.Exception:
        return None
    return neural.tiny_bert_path.__wrapped__(tmp_path_factory)
