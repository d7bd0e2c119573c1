"""A tiny deterministic classifier for learner unit tests (the real ones are tested too)."""
import numpy as np

from al_engine.classifiers.base import Classifier


class CentroidClassifier(Classifier):
    """Nearest class centroid on dense x; proba = softmax of negative distances."""

    def __init__(self, num_classes, multi_label=False):
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.fit_calls = 0

    def fit(self, train_set, weights=None):
        self.fit_calls += 1
        x, y = np.asarray(train_set.x, dtype=float), train_set.y
        self.centroids_ = np.zeros((self.num_classes, x.shape[1]))
        for c in range(self.num_classes):
            if np.any(y == c):
                self.centroids_[c] = x[y == c].mean(axis=0)
            else:
                self.centroids_[c] = np.inf
        self.train_size_ = len(train_set)
        return self

    def predict_proba(self, dataset):
        d = ((np.asarray(dataset.x)[:, None, :] - self.centroids_[None]) ** 2).sum(-1)
        d = np.where(np.isfinite(d), d, 1e12)
        z = np.exp(-(d - d.min(axis=1, keepdims=True)))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, dataset, return_proba=False):
        proba = self.predict_proba(dataset)
        pred = proba.argmax(axis=1)
        return (pred, proba) if return_proba else pred

    def embed(self, dataset, return_proba=False, **kwargs):
        x = np.asarray(dataset.x, dtype=float)
        return (x, self.predict_proba(dataset)) if return_proba else x
