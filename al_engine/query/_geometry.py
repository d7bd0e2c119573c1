"""Shared helpers of the embedding/geometry strategies (coresets, k-means, CAL, ProbCover,
SEALS, AnchorAL): getting embeddings from the classifier, normalizing, chunked distances,
and the ``rank`` head size.

Distances are computed in float32 with BLAS, in row blocks whose size bounds the memory of
one distance block (:data:`BLOCK_ENTRIES` entries, 64 MiB), never as a full pool x pool matrix.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import POSITIVE_INT, check_param
from al_engine.exceptions import InvalidParameterError

#: Entries of one float32 distance block (2**24 entries = 64 MiB).
BLOCK_ENTRIES = 1 << 24

#: Head size of ``rank`` for batch strategies when ``n`` is not given (small-text's default
#: query size).
DEFAULT_RANK_N = 10

DISTANCE_METRICS = ("euclidean", "cosine")


def check_metric(distance_metric: str, name: str = "distance_metric") -> str:
    """``distance_metric`` if it is one of :data:`DISTANCE_METRICS`; otherwise
    ``InvalidParameterError`` (a ``ValueError``) starting with small-text's words."""
    if distance_metric not in DISTANCE_METRICS:
        raise InvalidParameterError(
            f"Invalid distance metric: {distance_metric!r} ({name} must be one of "
            f"{list(DISTANCE_METRICS)})")
    return distance_metric


def check_positive_int(value, name: str, allow_none: bool = False):
    """``check_param(name, value, POSITIVE_INT)`` (or None when ``allow_none``)."""
    return check_param(name, value, [None, POSITIVE_INT] if allow_none else POSITIVE_INT)


def as_float_matrix(a, rows: int, what: str) -> np.ndarray:
    """``a`` as a dense 2-D float array with ``rows`` rows (float32 unless it is float64)."""
    if sp.issparse(a):
        a = a.toarray()
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[0] != rows:
        raise ValueError(f"{what} must have shape ({rows}, d), got {a.shape}")
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return a


def as_proba_matrix(proba, rows: int) -> np.ndarray:
    """Class probabilities as a dense float64 ``(rows, num_classes)`` array.

    A 1-D array of ``rows`` values is read as the probability of the positive class of a
    binary classifier and becomes the two columns ``[1 - p, p]`` (small-text's tests use such
    classifiers; its own CAL then compares the scalars, i.e. one term of the KL divergence).
    """
    proba = np.asarray(proba.toarray() if sp.issparse(proba) else proba, dtype=np.float64)
    if proba.ndim == 1 and proba.shape[0] == rows:
        proba = np.column_stack([1.0 - proba, proba])
    if proba.ndim != 2 or proba.shape[0] != rows:
        raise ValueError(f"class probabilities must have shape ({rows}, num_classes), "
                         f"got {proba.shape}")
    return proba


def call_embed(clf, dataset, return_proba: bool = False, embed_kwargs: dict | None = None,
               pbar=None):
    """``clf.embed(dataset)`` as small-text's ``EmbeddingBasedQueryStrategy`` calls it:
    ``(embeddings, proba)`` exactly as the classifier returned them.

    With ``return_proba`` the classifier is asked for the class probabilities too; if its
    ``embed`` has no ``return_proba`` argument, ``proba`` is None (as without
    ``return_proba``). ``pbar`` is passed on when not None.
    """
    kwargs = dict(embed_kwargs or {})
    if pbar is not None:
        kwargs["pbar"] = pbar
    if return_proba:
        try:
            out = clf.embed(dataset, return_proba=True, **kwargs)
        except TypeError as exc:
            if "return_proba" not in str(exc):
                raise
        else:
            return out if isinstance(out, tuple) else (out, None)
    out = clf.embed(dataset, **kwargs)
    return (out[0] if isinstance(out, tuple) else out), None


def check_embeddings(emb, rows: int, what: str = "clf.embed(dataset)"):
    """``emb`` itself if it is a 2-D array (or sparse matrix) with ``rows`` rows and, when
    dense, only finite values; ``ValueError`` otherwise."""
    shape = getattr(emb, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != rows:
        raise ValueError(f"{what} must have shape ({rows}, d), got {shape}")
    if not sp.issparse(emb) and not np.isfinite(emb).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return emb


def embed_dataset(clf, dataset, return_proba: bool = False, embed_kwargs: dict | None = None,
                  pbar=None):
    """Embeddings (float32, ``(len(dataset), d)``) of every row of ``dataset`` from
    ``clf.embed`` (see :func:`call_embed`).

    With ``return_proba`` also the class probabilities (float64, see
    :func:`as_proba_matrix`): from ``clf.embed(..., return_proba=True)`` when the classifier
    supports it, otherwise from ``clf.predict_proba``.
    """
    emb, proba = call_embed(clf, dataset, return_proba, embed_kwargs, pbar)
    rows = len(dataset)
    emb = as_float_matrix(emb, rows, "clf.embed(dataset)").astype(np.float32, copy=False)
    check_embeddings(emb, rows)
    if not return_proba:
        return emb
    if proba is None:
        proba = clf.predict_proba(dataset)
    return emb, as_proba_matrix(proba, rows)


def embed_pool(clf, dataset, rows: np.ndarray, return_proba: bool = False,
               embed_kwargs: dict | None = None):
    """:func:`embed_dataset` of ``dataset[rows]``."""
    return embed_dataset(clf, dataset[rows], return_proba=return_proba,
                         embed_kwargs=embed_kwargs)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32, a new array); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms == 0] = 1.0
    return x / norms[:, None]


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def block_rows(n_cols: int) -> int:
    """Rows per block so that a block of ``n_cols`` distances fits :data:`BLOCK_ENTRIES`."""
    return max(1, BLOCK_ENTRIES // max(1, n_cols))


def distance_key(x: np.ndarray, x_sq: np.ndarray, c: np.ndarray, c_sq: np.ndarray,
                 metric: str) -> np.ndarray:
    r"""A monotone form of the distance between the rows of ``x`` and ``c``: the squared
    euclidean distance :math:`\lVert x\rVert^2 + \lVert c\rVert^2 - 2x\cdot c` (clipped at 0)
    for ``"euclidean"``, :math:`1 - x \cdot c` for ``"cosine"`` (rows must be unit norm).
    Orders exactly as the true distance does (euclidean, resp. angular ``arccos(cos)/pi``)."""
    s = x @ c.T
    if metric == "cosine":
        np.subtract(1.0, s, out=s)
    else:
        s *= -2.0
        s += x_sq[:, None]
        s += c_sq[None, :]
        np.maximum(s, 0.0, out=s)
    return s


def key_to_distance(key: np.ndarray, metric: str) -> np.ndarray:
    """The true distance from :func:`distance_key`: euclidean, or angular (small-text's
    cosine distance ``arccos(cos) / pi``)."""
    key = np.asarray(key, dtype=np.float64)
    if metric == "cosine":
        return np.arccos(np.clip(1.0 - key, -1.0, 1.0)) / np.pi
    return np.sqrt(np.maximum(key, 0.0))


def min_distance_key(x: np.ndarray, c: np.ndarray, metric: str,
                     batch_size: int | None = None) -> np.ndarray:
    """For each row of ``x`` the smallest :func:`distance_key` to the rows of ``c`` (``inf``
    when ``c`` is empty); chunked over the rows of ``x``."""
    out = np.full(x.shape[0], np.inf, dtype=np.float32)
    if c.shape[0] == 0 or x.shape[0] == 0:
        return out
    x_sq, c_sq = sq_norms(x), sq_norms(c)
    step = batch_size or block_rows(c.shape[0])
    for start in range(0, x.shape[0], step):
        stop = min(start + step, x.shape[0])
        out[start:stop] = distance_key(x[start:stop], x_sq[start:stop], c, c_sq, metric).min(1)
    return out


def resolve_rank_n(n, size: int) -> int:
    """Head size of a batch strategy's ``rank``: ``n`` (validated) capped at the pool size,
    or :data:`DEFAULT_RANK_N` when None."""
    if n is None:
        return min(DEFAULT_RANK_N, size)
    return min(int(check_param("n", n, POSITIVE_INT)), size)


def rest_of(pool: np.ndarray, head: np.ndarray) -> np.ndarray:
    """The positions of ``pool`` not in ``head``, in pool order."""
    return pool[~np.isin(pool, head)]


def take_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``a[idx]``, as a view (no copy) when ``idx`` is a run of consecutive positions, which
    is how :class:`~al_engine.query.embedding_based.EmbeddingBasedQueryStrategy` passes the
    unlabeled and the labeled rows."""
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    if idx.size and idx[-1] - idx[0] == idx.size - 1 and (np.diff(idx) == 1).all():
        return a[int(idx[0]):int(idx[-1]) + 1]
    return a[idx]
