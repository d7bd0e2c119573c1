"""The classifier contract used by the learner and every query strategy.

small-text's method names and signatures are kept: ``fit(train_set, weights=None)``,
``predict(dataset, return_proba=False)``, ``predict_proba(dataset)`` and
``embed(dataset, return_proba=False)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp


class Classifier(ABC):
    """Base class of classifiers.

    ``predict_proba`` returns an array of shape ``(len(dataset), num_classes)``; for
    multi-label classifiers, the per-label probabilities (rows need not sum to one).
    ``predict`` returns class ids (single-label) or a CSR indicator matrix (multi-label).
    """

    num_classes: int
    multi_label: bool = False

    @abstractmethod
    def fit(self, train_set, weights=None) -> "Classifier":
        """Fit on the labeled ``train_set``; return ``self``."""

    @abstractmethod
    def predict_proba(self, dataset) -> np.ndarray:
        """Class probabilities for every row of ``dataset``."""

    @abstractmethod
    def predict(self, dataset, return_proba: bool = False):
        """Predicted labels (and probabilities when ``return_proba``)."""

    @abstractmethod
    def embed(self, dataset, return_proba: bool = False, **kwargs):
        """Dense feature vectors used by the model, ``(n, d)``; with ``return_proba`` also
        the probabilities, as ``(embeddings, proba)``."""


class ClassifierFactory:
    """Builds fresh, unfitted classifiers (small-text's ``AbstractClassifierFactory``).

    Parameters
    ----------
    classifier_cls : callable
        A :class:`Classifier` subclass or any callable returning one.
    num_classes : int
        Number of classes.
    kwargs : dict or None
        Further keyword arguments for ``classifier_cls``.
    """

    def __init__(self, classifier_cls, num_classes: int, kwargs: dict | None = None):
        self.classifier_cls = classifier_cls
        self.num_classes = num_classes
        self.kwargs = kwargs

    def new(self) -> Classifier:
        return self.classifier_cls(num_classes=self.num_classes, **(self.kwargs or {}))


def labels_from_proba(proba: np.ndarray, multi_label: bool, multi_label_threshold: float = 0.5):
    """Predicted labels from class probabilities: ``argmax`` per row (single-label, int64
    class ids) or the CSR indicator matrix of ``proba > multi_label_threshold`` (multi-label)."""
    if multi_label:
        if not 0.0 <= multi_label_threshold <= 1.0:
            raise ValueError(f"multi_label_threshold must be in [0, 1], got {multi_label_threshold}")
        return sp.csr_matrix((proba > multi_label_threshold).astype(np.int64))
    if proba.shape[0] == 0:
        return np.empty(0, dtype=np.int64)
    return np.argmax(proba, axis=1).astype(np.int64)
