"""k-nearest-neighbour search behind one interface: exact (numpy/BLAS) or HNSW (hnswlib).

Every index supports ``build(vectors, ids=None)``, ``add(vectors, ids=None)``,
``query(vectors, k)`` -> ``(ids, distances)`` (each ``(len(vectors), k)``, nearest first) and
``remove(ids)``; ``len(index)`` counts the vectors still searchable. ``new()`` returns an empty
index with the same parameters (strategies build a fresh one per call from the instance they
were given, so a user's index object is never filled behind their back).

Metrics: ``"euclidean"`` returns the euclidean distance; ``"cosine"`` returns the cosine
distance :math:`1 - \\cos(u, v)`.

:func:`make_index` picks the implementation for a strategy: ``"auto"`` takes the exact index
while ``n_index * n_queries <= AUTO_EXACT_MAX_PAIRS`` (all pairs fit a few seconds of BLAS; an
HNSW build alone costs more at that size, and exact is deterministic), and HNSW beyond. hnswlib
is optional (``pip install studio-al[index]``) and imported only when an HNSW index is built.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from al_engine._param_validation import POSITIVE_INT, Options, check_param, validate_params
from al_engine.exceptions import InvalidParameterError

#: ``make_index("auto")`` uses the exact index up to this many (index vector, query) pairs.
AUTO_EXACT_MAX_PAIRS = 100_000_000

METRICS = ("euclidean", "cosine")

#: Entries of one float32 distance block in the exact index (64 MiB).
_BLOCK_ENTRIES = 1 << 24


def _check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InvalidParameterError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    return metric


def _as_vectors(vectors, dim: int | None = None) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise ValueError(f"vectors must be 2-dimensional, got shape {v.shape}")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"vectors have {v.shape[1]} dimensions, the index {dim}")
    if not np.isfinite(v).all():
        raise ValueError("vectors contain NaN or infinite values")
    return v


def _as_ids(ids, n: int) -> np.ndarray:
    if ids is None:
        raise ValueError("ids must be given")
    ids = np.asarray(ids).reshape(-1)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.shape != (n,):
        raise ValueError(f"got {ids.size} ids for {n} vectors")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be non-negative")
    if np.unique(ids).size != ids.size:
        raise ValueError("ids must be unique")
    return ids


def _check_k(k, available: int) -> int:
    check_param("k", k, POSITIVE_INT)
    if k > available:
        raise InvalidParameterError(
            f"k={k} neighbours requested but the index holds only {available} vectors")
    return int(k)


def _l2_normalize(v: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))
    norms[norms == 0] = 1.0
    return v / norms[:, None]


class VectorIndex(ABC):
    """A searchable set of vectors, each with an integer id."""

    metric: str

    @abstractmethod
    def build(self, vectors, ids=None) -> "VectorIndex":
        """Replace the contents with ``vectors`` (ids default to ``0..len-1``); return self."""

    @abstractmethod
    def add(self, vectors, ids) -> "VectorIndex":
        """Add ``vectors`` with new, unique ``ids``; return self."""

    @abstractmethod
    def remove(self, ids) -> "VectorIndex":
        """Make ``ids`` unsearchable; unknown ids raise ``KeyError``. Return self."""

    @abstractmethod
    def query(self, vectors, k: int = 10, return_distance: bool = True):
        """The ``k`` nearest stored ids of each query vector, nearest first: ``(ids,
        distances)``, both ``(len(vectors), k)`` (ids only unless ``return_distance``)."""

    @abstractmethod
    def __len__(self) -> int:
        """Number of searchable vectors."""

    @abstractmethod
    def new(self) -> "VectorIndex":
        """An empty index of the same class and parameters."""

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items()
                           if not k.endswith("_") and not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class ExactIndex(VectorIndex):
    """Brute-force k-NN with float32 BLAS, blocked over the query rows.

    Each block of query rows computes its distances to every stored vector (at most 2**24
    entries, 64 MiB, per block) and keeps the ``k`` smallest with ``argpartition``; results
    are sorted by (distance, id), so equal inputs give equal outputs.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    """

    def __init__(self, metric: str = "euclidean"):
        self.metric = _check_metric(metric)
        self._clear(0)

    def _clear(self, dim: int) -> None:
        self.vectors_ = np.empty((0, dim), dtype=np.float32)
        self.ids_ = np.empty(0, dtype=np.int64)
        self.active_ = np.empty(0, dtype=bool)
        self.sq_norms_ = np.empty(0, dtype=np.float32)

    def new(self) -> "ExactIndex":
        return ExactIndex(metric=self.metric)

    def _prepare(self, v: np.ndarray) -> np.ndarray:
        return _l2_normalize(v) if self.metric == "cosine" else v

    def build(self, vectors, ids=None) -> "ExactIndex":
        v = _as_vectors(vectors)
        ids = np.arange(v.shape[0], dtype=np.int64) if ids is None else _as_ids(ids, v.shape[0])
        self._clear(v.shape[1])
        return self._append(v, ids)

    def _append(self, v: np.ndarray, ids: np.ndarray) -> "ExactIndex":
        v = self._prepare(v)
        self.vectors_ = np.concatenate([self.vectors_, v]) if self.vectors_.size else v.copy()
        self.ids_ = np.concatenate([self.ids_, ids])
        self.active_ = np.concatenate([self.active_, np.ones(ids.size, dtype=bool)])
        self.sq_norms_ = np.concatenate([self.sq_norms_, np.einsum("ij,ij->i", v, v)])
        return self

    def add(self, vectors, ids) -> "ExactIndex":
        dim = self.vectors_.shape[1] if self.ids_.size else None
        v = _as_vectors(vectors, dim)
        ids = _as_ids(ids, v.shape[0])
        if np.isin(ids, self.ids_).any():
            raise ValueError("ids already in the index")
        return self._append(v, ids)

    def remove(self, ids) -> "ExactIndex":
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return self
        if self.ids_.size == 0:
            raise KeyError(f"ids not in the index: {ids[:10].tolist()}")
        order = np.argsort(self.ids_, kind="stable")
        pos = np.minimum(np.searchsorted(self.ids_, ids, sorter=order), self.ids_.size - 1)
        rows = order[pos]
        missing = (self.ids_[rows] != ids) | ~self.active_[rows]
        if missing.any():
            raise KeyError(f"ids not in the index (or already removed): "
                           f"{ids[missing][:10].tolist()}")
        self.active_[rows] = False
        return self

    def __len__(self) -> int:
        return int(self.active_.sum())

    def query(self, vectors, k: int = 10, return_distance: bool = True):
        k = _check_k(k, len(self))
        q = self._prepare(_as_vectors(vectors, self.vectors_.shape[1]))
        stored = self.vectors_
        inactive = ~self.active_
        out_ids = np.empty((q.shape[0], k), dtype=np.int64)
        out_dist = np.empty((q.shape[0], k), dtype=np.float32)
        # bound both the (rows x stored) distance block and the (rows x k x dim) refinement
        step = max(1, min(_BLOCK_ENTRIES // max(1, stored.shape[0]),
                          _BLOCK_ENTRIES // max(1, k * stored.shape[1])))
        q_sq = np.einsum("ij,ij->i", q, q)
        for start in range(0, q.shape[0], step):
            stop = min(start + step, q.shape[0])
            d = q[start:stop] @ stored.T
            if self.metric == "cosine":
                np.subtract(1.0, d, out=d)
            else:
                d *= -2.0
                d += q_sq[start:stop, None]
                d += self.sq_norms_[None, :]
            np.maximum(d, 0.0, out=d)
            if inactive.any():
                d[:, inactive] = np.inf
            if k < d.shape[1]:
                part = np.argpartition(d, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
            if self.metric == "euclidean":
                # exact squared distances of the k found (the expansion above loses
                # precision near 0 by cancellation); cheap: k rows per query
                diff = stored[part] - q[start:stop, None, :]
                dist = np.einsum("qkd,qkd->qk", diff, diff)
                dist[~self.active_[part]] = np.inf
            else:
                dist = np.take_along_axis(d, part, axis=1)
            ids = self.ids_[part]
            order = np.lexsort((ids, dist), axis=1)
            out_ids[start:stop] = np.take_along_axis(ids, order, axis=1)
            out_dist[start:stop] = np.take_along_axis(dist, order, axis=1)
        if self.metric == "euclidean":
            np.sqrt(out_dist, out=out_dist)
        return (out_ids, out_dist) if return_distance else out_ids


class HNSWIndex(VectorIndex):
    """Approximate k-NN with a Hierarchical Navigable Small World graph (hnswlib).

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    M : int, default=16
        Links per node; higher is more accurate, slower and larger.
    ef_construction : int, default=100
        Candidate list size while building.
    ef : int, default=50
        Candidate list size while searching; raised to ``k`` when ``k`` is larger.
    seed : int, default=100
        hnswlib's random seed for the level assignment.
    num_threads : int, default=1
        Threads for building and searching. 1 makes the graph, and therefore the results,
        reproducible; -1 uses every core (faster builds, results may vary run to run).
    """

    def __init__(self, metric: str = "euclidean", M: int = 16, ef_construction: int = 100,
                 ef: int = 50, seed: int = 100, num_threads: int = 1):
        self.metric = _check_metric(metric)
        validate_params({"M": POSITIVE_INT, "ef_construction": POSITIVE_INT, "ef": POSITIVE_INT,
                         "num_threads": [Options([-1]), POSITIVE_INT]}, locals())
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.seed = seed
        self.num_threads = num_threads
        self.index_ = None
        self.dim_ = None
        self.n_active_ = 0

    @property
    def space(self) -> str:
        """hnswlib's name of the metric: ``"l2"`` (euclidean) or ``"cosine"``."""
        return "cosine" if self.metric == "cosine" else "l2"

    def new(self) -> "HNSWIndex":
        return HNSWIndex(metric=self.metric, M=self.M, ef_construction=self.ef_construction,
                         ef=self.ef, seed=self.seed, num_threads=self.num_threads)

    def build(self, vectors, ids=None) -> "HNSWIndex":
        import hnswlib  # optional dependency, imported only here

        v = _as_vectors(vectors)
        ids = np.arange(v.shape[0], dtype=np.int64) if ids is None else _as_ids(ids, v.shape[0])
        self.index_ = hnswlib.Index(space=self.space, dim=v.shape[1])
        self.index_.init_index(max_elements=max(1, v.shape[0]), ef_construction=self.ef_construction,
                               M=self.M, random_seed=self.seed)
        self.dim_ = v.shape[1]
        self.n_active_ = 0
        if v.shape[0]:
            self.index_.add_items(v, ids, num_threads=self.num_threads)
        self.n_active_ = v.shape[0]
        return self

    def _require_built(self):
        if self.index_ is None:
            raise ValueError("the index is empty: call build() first")

    def add(self, vectors, ids) -> "HNSWIndex":
        if self.index_ is None:
            return self.build(vectors, ids)
        v = _as_vectors(vectors, self.dim_)
        ids = _as_ids(ids, v.shape[0])
        existing = np.asarray(self.index_.get_ids_list(), dtype=np.int64)
        if np.isin(ids, existing).any():
            raise ValueError("ids already in the index")
        needed = self.index_.get_current_count() + v.shape[0]
        if needed > self.index_.get_max_elements():
            self.index_.resize_index(max(needed, 2 * self.index_.get_max_elements()))
        self.index_.add_items(v, ids, num_threads=self.num_threads)
        self.n_active_ += v.shape[0]
        return self

    def remove(self, ids) -> "HNSWIndex":
        self._require_built()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        # hnswlib has no bulk delete: one C call per removed id (not per stored vector).
        for i in ids.tolist():
            try:
                self.index_.mark_deleted(i)
            except RuntimeError as exc:
                raise KeyError(f"id {i} is not in the index (or already removed)") from exc
        self.n_active_ -= ids.size
        return self

    def __len__(self) -> int:
        return int(self.n_active_)

    def query(self, vectors, k: int = 10, return_distance: bool = True):
        self._require_built()
        k = _check_k(k, len(self))
        q = _as_vectors(vectors, self.dim_)
        self.index_.set_ef(max(self.ef, k))
        try:
            labels, dist = self.index_.knn_query(q, k=k, num_threads=self.num_threads)
        except RuntimeError as exc:  # the graph could not return k results for some query
            raise ValueError(f"HNSW search failed for k={k}: {exc}; raise ef or use "
                             f"an ExactIndex") from exc
        labels = labels.astype(np.int64)
        dist = dist.astype(np.float32)
        if self.metric == "euclidean":   # hnswlib's "l2" space returns squared distances
            np.sqrt(np.maximum(dist, 0.0, out=dist), out=dist)
        return (labels, dist) if return_distance else labels


def make_index(spec="auto", *, metric: str = "euclidean", n_index: int = 0,
               n_queries: int = 0, hnsw_kwargs: dict | None = None) -> VectorIndex:
    """An empty index for a strategy.

    Parameters
    ----------
    spec : {"auto", "exact", "hnsw"} or VectorIndex
        ``"auto"``: :class:`ExactIndex` while ``n_index * n_queries <=
        AUTO_EXACT_MAX_PAIRS`` (or when hnswlib is not installed), else :class:`HNSWIndex`.
        An instance: a fresh empty copy of it (``spec.new()``), whose metric must match.
    metric : {"euclidean", "cosine"}
    n_index, n_queries : int
        Vectors to be stored and to be searched for (for ``"auto"``).
    hnsw_kwargs : dict or None
        Parameters of :class:`HNSWIndex` (``M``, ``ef_construction``, ``ef``, ``seed``,
        ``num_threads``) when one is built from a string.
    """
    _check_metric(metric)
    if isinstance(spec, VectorIndex):
        if spec.metric != metric:
            raise InvalidParameterError(
                f"vector_index has metric {spec.metric!r} but the strategy needs {metric!r}")
        return spec.new()
    if spec == "auto":
        spec = "exact" if n_index * n_queries <= AUTO_EXACT_MAX_PAIRS else "hnsw"
        if spec == "hnsw":
            try:
                import hnswlib  # noqa: F401
            except ImportError:
                spec = "exact"
    if spec == "exact":
        return ExactIndex(metric=metric)
    if spec == "hnsw":
        return HNSWIndex(metric=metric, **(hnsw_kwargs or {}))
    raise InvalidParameterError(
        f"vector_index must be 'auto', 'exact', 'hnsw' or a VectorIndex, got {spec!r}")


def check_index_spec(spec, name: str = "vector_index"):
    """Validate a strategy's ``vector_index`` parameter at construction time."""
    if isinstance(spec, VectorIndex) or spec in ("auto", "exact", "hnsw"):
        return spec
    raise InvalidParameterError(
        f"{name} must be 'auto', 'exact', 'hnsw' or a VectorIndex instance, got {spec!r}")
