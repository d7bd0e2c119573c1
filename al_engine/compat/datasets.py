"""small-text's datasets (``SklearnDataset``, ``TextDataset`` and their views) where the engine
takes a :class:`~al_engine.data.Dataset`.

Recognised by duck typing (``x``, ``y``, ``is_multi_label``; not our class), so small-text is
never imported here. A small-text dataset's ``x`` is a feature matrix (``SklearnDataset``) or a
list of texts (``TextDataset``); ``y`` is an int vector with -1 for unlabeled rows, or a CSR
label indicator matrix (multi-label, every row counts as labeled, as in small-text).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from al_engine.data import Dataset

#: small-text's ``LABEL_IGNORED``: a label (or a value in a label row) of
#: :meth:`~al_engine.learner.PoolBasedActiveLearner.update` that ignores the instance.
LABEL_IGNORED = -np.inf


def is_small_text_dataset(dataset: Any) -> bool:
    """Whether ``dataset`` is a small-text dataset or view (duck-typed), not one of ours."""
    return (not isinstance(dataset, Dataset) and hasattr(dataset, "is_multi_label")
            and hasattr(dataset, "x") and hasattr(dataset, "y"))


def as_engine_dataset(dataset: Any) -> Dataset:
    """``dataset`` as our :class:`~al_engine.data.Dataset` (ours: returned as is; small-text's:
    wrapped, sharing its arrays where numpy allows).

    Raises
    ------
    TypeError
        If ``dataset`` is neither ours nor small-text's.
    """
    if isinstance(dataset, Dataset):
        return dataset
    if not is_small_text_dataset(dataset):
        raise TypeError("expected an al_engine Dataset or a small-text dataset (x, y, "
                        f"is_multi_label), got {type(dataset).__name__}")
    x, y, multi_label = dataset.x, dataset.y, bool(dataset.is_multi_label)
    texts = None
    if not (sp.issparse(x) or (isinstance(x, np.ndarray) and x.ndim == 2)):
        texts, x = (list(x) if len(x) else None), None  # TextDataset: x holds the texts
    if x is None and texts is None:  # an empty dataset
        x = np.empty((0, 0))
    labeled = np.ones(len(dataset), dtype=bool) if multi_label else None
    return Dataset(x=x, y=y, texts=texts, multi_label=multi_label, labeled=labeled)


def labeled_subset(dataset: Any, indices: np.ndarray, y) -> Any:
    """The rows ``indices`` of ``dataset`` carrying the labels ``y``, of ``dataset``'s kind
    (a small-text pool gives a small-text dataset, so a small-text classifier can train on it)."""
    subset = dataset[indices]
    if not isinstance(subset, Dataset) and hasattr(subset, "clone"):
        subset = subset.clone()  # a small-text view refuses to set y
    subset.y = y
    return subset


def labeled_rows(dataset: Any, indices: np.ndarray):
    """The labels ``dataset`` carries at ``indices`` (small-text 2.0's ``initialize(indices)``).

    Raises
    ------
    ValueError
        If one of those rows is unlabeled.
    """
    ours = as_engine_dataset(dataset)
    if not ours.labeled_mask[indices].all():
        missing = indices[~ours.labeled_mask[indices]]
        raise ValueError(f"the pool has no label at positions {missing[:10].tolist()}")
    return ours.y[indices]


def empty_labels(dataset: Any):
    """No labels, of the kind ``dataset`` holds: an empty int vector, or a ``(0, k)`` CSR
    matrix for multi-label data."""
    y = getattr(dataset, "y", None)
    if bool(dataset.is_multi_label) and y is not None:
        return sp.csr_matrix((0, y.shape[1]), dtype=np.int8)
    return np.empty(0, dtype=np.int64)


def dataset_length(data: Any) -> int:
    """Number of rows of a dataset, matrix or sequence (small-text's ``list_length``).

    Raises
    ------
    ValueError
        If ``data`` has neither ``shape`` nor a length.
    """
    if sp.issparse(data) or isinstance(data, np.ndarray):
        return int(data.shape[0])
    try:
        return len(data)
    except TypeError:
        raise ValueError(f"cannot tell the number of rows of a {type(data).__name__}") from None


def ignored_rows(y) -> np.ndarray | None:
    """Rows of ``y`` (labels or indicator rows) holding :data:`LABEL_IGNORED`, or None when
    ``y`` cannot hold it (integers)."""
    if sp.issparse(y):
        if y.dtype.kind != "f":
            return None
        y = sp.csr_matrix(y)
        rows = np.repeat(np.arange(y.shape[0]), np.diff(y.indptr))
        return np.bincount(rows[y.data == LABEL_IGNORED], minlength=y.shape[0]) > 0
    y = np.asarray(y)
    if y.dtype.kind != "f":
        return None
    return (y == LABEL_IGNORED).any(axis=1) if y.ndim == 2 else y == LABEL_IGNORED
