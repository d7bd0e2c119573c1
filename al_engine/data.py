"""Datasets: texts with sparse or dense features, single- or multi-label targets.

A :class:`Dataset` holds up to three aligned things per instance:

* ``texts`` -- the raw strings (object array), optional;
* ``x`` -- the feature matrix, a ``scipy.sparse`` CSR matrix (e.g. TF-IDF) or a dense
  ``np.ndarray`` (e.g. sentence embeddings), optional until a featurizer has run;
* ``y`` -- the targets. Single-label: an ``int64`` vector with :data:`UNLABELED` (-1) for
  unlabeled rows. Multi-label: a CSR label indicator matrix of shape ``(n, num_classes)``
  plus a boolean ``labeled`` mask (an empty row is a valid multi-label answer, so it
  cannot double as the unlabeled marker).

Indexing with an integer array, a slice or a boolean mask returns a new dataset of those
rows (a view where numpy gives one), as small-text's datasets do.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

#: Marker for an unlabeled instance in a single-label target vector (small-text's value).
UNLABELED = -1


def _as_index(idx, n: int):
    if isinstance(idx, slice):
        return idx
    idx = np.asarray(idx)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise IndexError(f"boolean index of shape {idx.shape} does not match {n} rows")
        return np.flatnonzero(idx)
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"dataset indices must be integers, got dtype {idx.dtype}")
    return idx.astype(np.int64, copy=False)


class Dataset:
    """Texts and/or features with single- or multi-label targets.

    Parameters
    ----------
    x : array-like of shape (n, d), scipy.sparse matrix or None
        Features. Sparse input is converted to CSR.
    y : array-like of shape (n,), sparse matrix of shape (n, num_classes), or None
        Encoded targets (see module docstring). ``None`` means all unlabeled.
    texts : sequence of str or None
        Raw texts, aligned with the rows.
    target_labels : sequence of str or None
        The class names; ``target_labels[c]`` is the name of class ``c``.
    multi_label : bool or None
        Forces the label mode; inferred from ``y`` (2-D means multi-label) when None.
    labeled : array-like of bool or None
        Multi-label only: which rows carry a label. Inferred as "non-empty row" when None.
    """

    def __init__(self, x=None, y=None, texts: Sequence[str] | None = None,
                 target_labels: Sequence[str] | None = None, multi_label: bool | None = None,
                 labeled=None):
        if x is None and texts is None:
            raise ValueError("a Dataset needs features x or texts (or both)")
        if x is not None:
            x = x.tocsr() if sp.issparse(x) else np.asarray(x)
            if x.ndim != 2:
                raise ValueError(f"x must be 2-dimensional, got shape {x.shape}")
        if texts is not None:
            texts = np.asarray(texts, dtype=object)
            if texts.ndim != 1:
                raise ValueError("texts must be a 1-dimensional sequence of strings")
        n = x.shape[0] if x is not None else len(texts)
        if texts is not None and len(texts) != n:
            raise ValueError(f"x has {n} rows but texts has {len(texts)}")

        if multi_label is None:
            multi_label = y is not None and (sp.issparse(y) or np.ndim(y) == 2)
        self.multi_label = bool(multi_label)
        self.target_labels = None if target_labels is None else np.asarray(target_labels, dtype=object)

        if self.multi_label:
            if y is None:
                width = len(self.target_labels) if self.target_labels is not None else 0
                y = sp.csr_matrix((n, width), dtype=np.int8)
                labeled = np.zeros(n, dtype=bool) if labeled is None else labeled
            y = sp.csr_matrix(y, dtype=np.int8)
            if y.shape[0] != n:
                raise ValueError(f"y has {y.shape[0]} rows but the dataset has {n}")
            labeled = (np.diff(y.indptr) > 0) if labeled is None else np.asarray(labeled, dtype=bool)
            if labeled.shape != (n,):
                raise ValueError(f"labeled mask has shape {labeled.shape}, expected ({n},)")
        else:
            if y is None:
                y = np.full(n, UNLABELED, dtype=np.int64)
            y = np.asarray(y)
            if y.shape != (n,):
                raise ValueError(f"single-label y must have shape ({n},), got {y.shape}")
            if y.size and not np.issubdtype(y.dtype, np.integer):
                raise ValueError("single-label y must hold integer class ids; "
                                 "use Dataset.from_texts to encode string labels")
            y = y.astype(np.int64, copy=False)
            if y.size and y.min() < UNLABELED:
                raise ValueError(f"class ids must be >= 0 (or {UNLABELED} for unlabeled)")
            labeled = None
        self._x, self._y, self._texts, self._labeled = x, y, texts, labeled

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_texts(cls, texts: Sequence[str], labels: Iterable | None = None,
                   target_labels: Sequence[str] | None = None, multi_label: bool | None = None,
                   x=None) -> "Dataset":
        """Build a dataset from raw texts and human-readable labels.

        ``labels[i]`` is a class name (single-label), a list of class names (multi-label),
        or ``None`` for unlabeled. ``target_labels`` fixes the class order; by default it is
        the sorted set of names seen.
        """
        texts = list(texts)
        labels = [None] * len(texts) if labels is None else list(labels)
        if len(labels) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if multi_label is None:
            multi_label = any(isinstance(lab, (list, tuple, set, frozenset)) for lab in labels)
        encoder = LabelEncoding(target_labels, multi_label=multi_label)
        if target_labels is None:
            encoder.fit(labels)
        if multi_label:
            y, labeled = encoder.encode_multi(labels)
            return cls(x=x, y=y, texts=texts, target_labels=encoder.classes_, multi_label=True,
                       labeled=labeled)
        return cls(x=x, y=encoder.encode(labels), texts=texts, target_labels=encoder.classes_)

    # ------------------------------------------------------------------ properties
    @property
    def x(self):
        return self._x

    @x.setter
    def x(self, value):
        if value is not None and value.shape[0] != len(self):
            raise ValueError(f"x has {value.shape[0]} rows, the dataset {len(self)}")
        self._x = value.tocsr() if sp.issparse(value) else value

    @property
    def y(self):
        return self._y

    @y.setter
    def y(self, value):
        self._y = Dataset(x=np.empty((len(self), 0)), y=value, multi_label=self.multi_label)._y
        if self.multi_label:
            self._labeled = np.diff(self._y.indptr) > 0

    @property
    def texts(self):
        return self._texts

    @property
    def is_multi_label(self) -> bool:
        return self.multi_label

    @property
    def is_sparse(self) -> bool:
        return self._x is not None and sp.issparse(self._x)

    @property
    def num_classes(self) -> int | None:
        if self.target_labels is not None:
            return len(self.target_labels)
        if self.multi_label:
            return self._y.shape[1]
        return int(self._y.max()) + 1 if self._y.size and self._y.max() >= 0 else None

    @property
    def labeled_mask(self) -> np.ndarray:
        """Boolean mask of rows that carry a label."""
        if self.multi_label:
            return self._labeled
        return self._y != UNLABELED

    def __len__(self) -> int:
        return self._x.shape[0] if self._x is not None else len(self._texts)

    def __getitem__(self, idx) -> "Dataset":
        idx = _as_index(idx, len(self))
        ds = Dataset.__new__(Dataset)
        ds.multi_label = self.multi_label
        ds.target_labels = self.target_labels
        ds._x = None if self._x is None else self._x[idx]
        ds._texts = None if self._texts is None else self._texts[idx]
        ds._y = self._y[idx]
        ds._labeled = None if self._labeled is None else self._labeled[idx]
        return ds

    def with_features(self, x) -> "Dataset":
        """A copy of this dataset (sharing texts and targets) with features ``x``."""
        ds = self[slice(None)]
        ds.x = x
        return ds

    def clone(self) -> "Dataset":
        ds = self[slice(None)]
        ds._x = None if self._x is None else self._x.copy()
        ds._y = self._y.copy()
        ds._labeled = None if self._labeled is None else self._labeled.copy()
        return ds

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else "single-label"
        feats = "no features" if self._x is None else (
            f"{'sparse' if self.is_sparse else 'dense'} x {self._x.shape}")
        return f"Dataset(n={len(self)}, {kind}, {feats}, labeled={int(self.labeled_mask.sum())})"


class LabelEncoding:
    """Maps class names to ids (single-label) or to an indicator matrix (multi-label).

    ``None`` (or an empty string) means unlabeled. Unknown names raise ``ValueError``.
    """

    def __init__(self, classes: Sequence[str] | None = None, multi_label: bool = False):
        self.classes = classes
        self.multi_label = multi_label
        if classes is not None:
            self._set(classes)

    def _set(self, classes):
        classes = [str(c) for c in classes]
        if len(set(classes)) != len(classes):
            raise ValueError(f"duplicate class names in {classes}")
        self.classes_ = np.asarray(classes, dtype=object)
        self._index = {c: i for i, c in enumerate(classes)}

    def fit(self, labels) -> "LabelEncoding":
        names = set()
        for label in labels:
            if label is None or label == "":
                continue
            names.update(map(str, label) if self.multi_label else [str(label)])
        self._set(sorted(names))
        return self

    def _id(self, name) -> int:
        try:
            return self._index[str(name)]
        except KeyError:
            raise ValueError(f"unknown label {name!r}; known labels: {list(self.classes_)}") from None

    def encode(self, labels) -> np.ndarray:
        """Single-label: class names (or None) -> int64 ids (or UNLABELED)."""
        return np.fromiter((UNLABELED if lab is None or lab == "" else self._id(lab) for lab in labels),
                           dtype=np.int64)

    def encode_multi(self, labels):
        """Multi-label: lists of names (or None) -> (CSR indicator, labeled mask)."""
        indptr, indices, labeled = [0], [], []
        for label in labels:
            if label is None:
                labeled.append(False)
            else:
                names = [label] if isinstance(label, str) else list(label)
                indices.extend(sorted({self._id(n) for n in names}))
                labeled.append(True)
            indptr.append(len(indices))
        y = sp.csr_matrix((np.ones(len(indices), dtype=np.int8), np.asarray(indices, dtype=np.int64),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(labeled), len(self.classes_)))
        return y, np.asarray(labeled, dtype=bool)

    def decode(self, ids) -> list:
        """Ids (single-label) or indicator rows (multi-label) -> class names."""
        if self.multi_label:
            ids = sp.csr_matrix(ids)
            return [list(self.classes_[ids.indices[ids.indptr[i]:ids.indptr[i + 1]]])
                    for i in range(ids.shape[0])]
        return [None if i == UNLABELED else self.classes_[i] for i in np.asarray(ids)]


def is_multi_label_target(y) -> bool:
    """True when ``y`` is a label indicator matrix (sparse or 2-D)."""
    return sp.issparse(y) or np.ndim(y) == 2
