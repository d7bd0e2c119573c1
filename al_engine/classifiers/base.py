"""The classifier contract used by the learner and every query strategy.

small-text's method names and signatures are kept: ``fit(train_set, weights=None)``,
``predict(dataset, return_proba=False)``, ``predict_proba(dataset)`` and
``embed(dataset, return_proba=False)``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp


#: The traits every classifier declares as class attributes (read by the registry without
#: building or fitting anything, so without importing torch).
TRAITS = ("needs_torch", "cheap_to_refit", "reads_texts", "supports_dropout_sampling",
          "supports_gradients")


class Classifier(ABC):
    """Base class of classifiers.

    ``predict_proba`` returns an array of shape ``(len(dataset), num_classes)``; for
    multi-label classifiers, the per-label probabilities (rows need not sum to one).
    ``predict`` returns class ids (single-label) or a CSR indicator matrix (multi-label).
    Every classifier supports single- and multi-label data (``multi_label``) and ``embed``.

    Traits (class attributes; see :data:`TRAITS`), which the registry reads to decide where
    a classifier may run and which query strategies it can serve
    (:func:`al_engine.registry.classifier_traits`, :func:`al_engine.registry.check_compatible`):

    needs_torch : bool, default=False
        ``fit`` / ``featurize`` / inference import torch (the backend keeps such classifiers
        out of its web process). Building one never imports torch.
    cheap_to_refit : bool, default=False
        Refitting it k times per round is affordable (cross-validated learning curves).
    reads_texts : bool, default=False
        The model reads ``dataset.texts`` itself; ``featurize`` only checks they are there.
    supports_dropout_sampling : bool, default=False
        ``predict_proba(dataset, dropout_sampling=T)`` returns ``T`` Monte-Carlo dropout
        samples of shape ``(n, T, num_classes)`` (BALD).
    supports_gradients : bool, default=False
        Exposes the torch model protocol of :mod:`al_engine.classifiers._torch`
        (``model_``, ``tensorize``, ``forward``, ``head``, ``input_embedding``, ``token_mask``)
        that the expected-gradient-length strategies differentiate through.
    """

    num_classes: int
    multi_label: bool = False

    needs_torch: bool = False
    cheap_to_refit: bool = False
    reads_texts: bool = False
    supports_dropout_sampling: bool = False
    supports_gradients: bool = False

    def featurize(self, dataset):
        """``dataset`` with the features this classifier reads, computed from its texts.

        Called on the whole pool once, before any label (unsupervised: only texts are
        used), and then on any further dataset (e.g. a test set), so that a featurizer is
        fitted on the pool. small-text has no such method.

        The default suits a classifier without a featurizer: with ``reads_texts`` the
        dataset is returned unchanged if it has texts; otherwise unchanged if it carries
        features ``x``.

        Raises
        ------
        ValueError
            If the dataset lacks what the classifier reads (texts, or features ``x``).
        """
        if self.reads_texts:
            if dataset.texts is None:
                raise ValueError(f"{type(self).__name__} needs texts; the dataset has none")
        elif dataset.x is None:
            raise ValueError(f"{type(self).__name__} reads dataset.x and cannot featurize "
                             "texts; the dataset has no features x")
        return dataset

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
