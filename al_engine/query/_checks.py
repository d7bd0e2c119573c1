"""Small validation helpers shared by the strategies of this package."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import SEED, check_param
from al_engine.exceptions import EmptyPoolError


def predict_proba_2d(clf, dataset) -> np.ndarray:
    """``clf.predict_proba(dataset)`` (dense or sparse) as a dense 2-D float array with one
    row per instance; ``ValueError`` for any other shape."""
    proba = clf.predict_proba(dataset)
    proba = proba.toarray() if sp.issparse(proba) else np.asarray(proba)
    if proba.ndim != 2 or proba.shape[0] != len(dataset) or proba.shape[1] < 1:
        raise ValueError(
            f"clf.predict_proba(dataset) must return shape (len(dataset)={len(dataset)}, "
            f"num_classes), got {proba.shape}")
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    return proba


def check_pool(indices_unlabeled) -> np.ndarray:
    """``indices_unlabeled`` as a flat int64 array; EmptyPoolError when it is empty.

    Used by every ``rank`` before it asks ``query`` for ``n`` = the pool size: on an empty
    pool that would be ``n=0``, which ``check_query_args`` reports as a bad ``n`` rather than
    as an empty pool.
    """
    indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
    if indices_unlabeled.size == 0:
        raise EmptyPoolError("there are no unlabeled instances left to rank")
    return indices_unlabeled


def check_seed(seed, name: str = "seed"):
    """Validate a seed: None, a non-negative int, or a ``np.random.Generator``."""
    return check_param(name, seed, SEED)


def make_rng(seed) -> np.random.Generator:
    """A generator for one call: a fresh ``default_rng(seed)`` for an int or None (so that an
    int seed gives the same draw on every call, as scikit-learn's ``random_state`` does), or
    the given ``Generator`` itself (then successive calls continue its stream)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
