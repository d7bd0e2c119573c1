"""Index-based subsampling around a base strategy: SEALS and AnchorSubsampling (AnchorAL).

Both narrow the unlabeled pool to instances near the labeled ones (found with a
:mod:`~al_engine.vector_index` index over the normalized unlabeled embeddings) and let a base
strategy choose among them. The base strategy receives the full ``dataset`` and the subset
as ``indices_unlabeled``, as in small-text.

Shared behaviour, and where it differs from small-text 1.4.1:

* the index is built on every call from the current embeddings. small-text builds it once
  and afterwards only deletes labeled ids, which keeps embeddings from the FIRST model after
  every retrain; with an exact index the kNN of a few hundred labeled rows against 100k
  unlabeled ones costs well under a second, so nothing is cached;
* no ``np.in1d`` (removed in numpy 2.4), no global random state (``seed``);
* if the subset holds fewer than ``n`` instances, the subset comes first (ranked by the
  base strategy) and the rest of the pool fills the batch (small-text raises);
* :meth:`rank`: the subset ranked by the base strategy, then the rest of the pool by the
  base strategy's ``scores_`` when it scored every row (e.g. uncertainty strategies), else
  by the base strategy's own ``rank`` of the rest.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import POSITIVE_INT, SEED, check_param
from al_engine.exceptions import InvalidParameterError
from al_engine.query._checks import check_pool
from al_engine.query._geometry import embed_dataset, l2_normalize, rest_of
from al_engine.query.base import QueryStrategy, WrappingQueryStrategy, check_query_args, top_n
from al_engine.vector_index import HNSWIndex, check_index_spec, make_index

_HNSW_KEYS = {"M", "ef_construction", "ef", "seed", "num_threads", "space"}

#: small-text's HNSW settings where ``hnsw_kwargs`` does not set them (``initialize_index``).
_ST_HNSW_DEFAULTS = {"M": 64, "ef_construction": 200, "ef": 200}


def _resolve_base(base_query_strategy) -> QueryStrategy:
    if isinstance(base_query_strategy, str):
        from al_engine.registry import make_query_strategy  # the registry imports us lazily
        return make_query_strategy(base_query_strategy)
    if not callable(getattr(base_query_strategy, "query", None)):
        raise InvalidParameterError("base_query_strategy must be a query strategy instance or "
                                    f"a registered name, got {base_query_strategy!r}")
    return base_query_strategy


def _hnsw_params(hnsw_kwargs, with_space: bool = False) -> dict:
    """small-text's ``hnsw_kwargs`` (``space``, ``M``, ``ef_construction``, ``ef``) as
    :class:`~al_engine.vector_index.HNSWIndex` parameters; ``space`` becomes ``metric`` when
    ``with_space``, else it is dropped (the strategies search normalized embeddings, where
    both spaces give the same neighbours)."""
    params = dict(hnsw_kwargs or {})
    unknown = sorted(set(params) - _HNSW_KEYS)
    if unknown:
        raise InvalidParameterError(f"hnsw_kwargs: unknown key {unknown[0]!r}; "
                                    f"allowed: {', '.join(sorted(_HNSW_KEYS))}")
    space = params.pop("space", "l2")
    if space not in ("l2", "cosine"):
        # "ip" would not be a distance
        raise InvalidParameterError(f"hnsw_kwargs: space must be 'l2' or 'cosine', got {space!r}")
    if with_space:
        params["metric"] = "cosine" if space == "cosine" else "euclidean"
    return params


def _rank_rest(base, clf, dataset, rest, lab, y) -> np.ndarray:
    if rest.size == 0:
        return rest
    scores = getattr(base, "scores_", None)
    if scores is not None and np.ndim(scores) == 1 and len(scores) == len(dataset):
        keys = np.asarray(scores, dtype=np.float64)[rest]
        if np.isfinite(keys).all():
            return rest[top_n(keys, rest.size, bool(getattr(base, "lower_is_better", False)))]
    return np.asarray(base.rank(clf, dataset, rest, lab, y), dtype=np.int64)


class _IndexSubsampling(WrappingQueryStrategy):
    """Base-strategy delegation shared by SEALS and AnchorSubsampling."""

    @staticmethod
    def initialize_index(embeddings, indices_unlabeled, hnsw_kwargs) -> HNSWIndex:
        """small-text's helper: an HNSW index of ``embeddings[indices_unlabeled]`` under the
        ids ``indices_unlabeled``, with small-text's defaults (``space="l2"``,
        ``ef_construction=200``, ``M=64``, ``ef=200``) where ``hnsw_kwargs`` sets none.
        Needs hnswlib. The strategies themselves build their index per call
        (``vector_index``)."""
        params = {**_ST_HNSW_DEFAULTS, **_hnsw_params(hnsw_kwargs, with_space=True)}
        ids = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
        return HNSWIndex(**params).build(np.asarray(embeddings)[ids], ids)

    def _embeddings(self, clf, dataset, unl, lab, pbar=None):
        emb = embed_dataset(clf, dataset[np.concatenate([unl, lab])],
                            embed_kwargs=self.embed_kwargs, pbar=pbar)
        if self.normalize:
            emb = l2_normalize(emb)
        return emb[:unl.size], emb[unl.size:]

    def _subset(self, clf, dataset, unl, lab, y, pbar=None) -> np.ndarray | None:
        """Positions (into ``dataset``, pool order) of the subset; None = use the whole pool."""
        raise NotImplementedError

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10,
              pbar="tqdm") -> np.ndarray:
        """The base strategy's ``n`` from the subset (see the module); ``pbar`` is passed to
        ``clf.embed``. Without a subset the base strategy gets the arguments as given."""
        self._check_label_mode(dataset, y)
        unl = check_query_args(indices_unlabeled, n)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        base = self.base_query_strategy_
        subset = self._subset(clf, dataset, unl, lab, y, pbar)
        self.subset_ = unl if subset is None else subset
        if subset is None:
            return np.asarray(base.query(clf, dataset, indices_unlabeled, indices_labeled, y,
                                         n=n), dtype=np.int64)
        if n <= subset.size:
            return np.asarray(base.query(clf, dataset, subset, lab, y, n=n), dtype=np.int64)
        head = np.asarray(base.rank(clf, dataset, subset, lab, y), dtype=np.int64)
        tail = _rank_rest(base, clf, dataset, rest_of(unl, subset), lab, y)
        return np.concatenate([head, tail[:n - subset.size]])

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """The subset ranked by the base strategy, then the rest of the pool (see module)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        base = self.base_query_strategy_
        subset = self._subset(clf, dataset, unl, lab, y)
        self.subset_ = unl if subset is None else subset
        if subset is None:
            return np.asarray(base.rank(clf, dataset, unl, lab, y), dtype=np.int64)
        head = np.asarray(base.rank(clf, dataset, subset, lab, y), dtype=np.int64)
        tail = _rank_rest(base, clf, dataset, rest_of(unl, subset), lab, y)
        return np.concatenate([head, tail])


class SEALS(_IndexSubsampling):
    """SEALS [CCK+22]_: the base strategy chooses among the union of the ``k`` nearest
    unlabeled neighbours of every labeled instance.

    With ``k`` larger than the pool, or no labeled instance, the base strategy queries the
    whole pool.

    Parameters
    ----------
    base_query_strategy : QueryStrategy or str, default="least_confidence"
        The strategy applied to the subset, or its registered name.
    k : int, default=100
        Neighbours per labeled instance.
    hnsw_kwargs : dict or None
        small-text's HNSW settings (``space``, ``M``, ``ef_construction``, ``ef``), used
        when an HNSW index is built.
    embed_kwargs : dict or None
        Passed to ``clf.embed``.
    normalize : bool, default=True
        L2-normalize the embeddings.
    vector_index : {"auto", "exact", "hnsw"} or VectorIndex, default="auto"

    Attributes
    ----------
    base_query_strategy_ : QueryStrategy
    subset_ : np.ndarray
        The candidate positions of the last call.

    .. [CCK+22] C. Coleman et al. Similarity search for efficient active learning and
       search of rare concepts. AAAI 2022.
    """

    def __init__(self, base_query_strategy="least_confidence", k: int = 100,
                 hnsw_kwargs: dict | None = None, embed_kwargs: dict | None = None,
                 normalize: bool = True, vector_index="auto"):
        self.base_query_strategy = base_query_strategy
        self.k = check_param("k", k, POSITIVE_INT)
        self.hnsw_kwargs = hnsw_kwargs
        self.embed_kwargs = embed_kwargs
        self.normalize = normalize
        self.vector_index = check_index_spec(vector_index)
        self.hnsw_params_ = _hnsw_params(hnsw_kwargs)
        self.base_query_strategy_ = _resolve_base(base_query_strategy)

    def _subset(self, clf, dataset, unl, lab, y, pbar=None):
        if self.k > unl.size or lab.size == 0:
            return None
        return self.get_subset_indices(clf, dataset, unl, lab, pbar=pbar)

    def get_subset_indices(self, clf, dataset, indices_unlabeled, indices_labeled,
                           pbar="tqdm") -> np.ndarray:
        """The union of the ``k`` nearest unlabeled neighbours (``k`` capped at the pool) of
        every labeled instance, as positions into ``dataset`` in pool order; the whole pool
        if there is no labeled instance. ``pbar`` is passed to ``clf.embed``."""
        unl = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        if lab.size == 0 or unl.size == 0:
            return unl
        x_u, x_l = self._embeddings(clf, dataset, unl, lab, pbar)
        index = make_index(self.vector_index, metric="euclidean", n_index=unl.size,
                           n_queries=lab.size, hnsw_kwargs=self.hnsw_params_).build(x_u)
        ids = index.query(x_l, k=min(self.k, unl.size), return_distance=False)
        return unl[np.unique(ids)]


def _class_members(y, n_labeled: int) -> list[np.ndarray]:
    """Positions (into the labeled set) of each class present in ``y``."""
    if sp.issparse(y) or np.ndim(y) == 2:
        ind = sp.csc_matrix(y)
        return [ind.indices[ind.indptr[c]:ind.indptr[c + 1]] for c in range(ind.shape[1])
                if ind.indptr[c + 1] > ind.indptr[c]]
    y = np.asarray(y).reshape(-1)
    if y.size != n_labeled:
        raise ValueError(f"y has {y.size} labels for {n_labeled} labeled instances")
    return [np.flatnonzero(y == c) for c in np.unique(y[y >= 0])]


class AnchorSubsampling(_IndexSubsampling):
    r"""AnchorAL [LV24]_: per class, up to ``num_anchors`` labeled anchors (k-means++ seeding
    among that class's labeled instances); the ``k`` nearest unlabeled neighbours of every
    anchor are pooled, and the ``subsample_size`` with the highest mean similarity to the
    anchors that retrieved them (:math:`1 - \lVert a - u\rVert^2`, small-text's ``1 - d``
    with hnswlib's squared "l2" distance) go to the base strategy.

    With ``subsample_size`` larger than the pool, or no labeled instance, the base strategy
    queries the whole pool. Multi-label: a class's anchors are drawn among the labeled
    instances carrying that label.

    Parameters
    ----------
    base_query_strategy : QueryStrategy or str, default="least_confidence"
    subsample_size : int, default=500
    num_anchors : int, default=10
        Anchors per class at most.
    k : int, default=50
        Neighbours per anchor (capped at the pool size).
    hnsw_kwargs, embed_kwargs, normalize, vector_index
        As in :class:`SEALS`.
    batch_size : int, default=32
        Accepted for small-text compatibility; unused there and here.
    seed : int, numpy.random.Generator or None, default=None
        Seed of the anchor selection (small-text's is unseeded).

    .. [LV24] P. Lesci and A. Vlachos. AnchorAL: computationally efficient active learning
       for large and imbalanced datasets. NAACL 2024.
    """

    def __init__(self, base_query_strategy="least_confidence", subsample_size: int = 500,
                 num_anchors: int = 10, k: int = 50, hnsw_kwargs: dict | None = None,
                 embed_kwargs: dict | None = None, normalize: bool = True, batch_size: int = 32,
                 seed=None, vector_index="auto"):
        self.base_query_strategy = base_query_strategy
        self.subsample_size = check_param("subsample_size", subsample_size, POSITIVE_INT)
        self.num_anchors = check_param("num_anchors", num_anchors, POSITIVE_INT)
        self.k = check_param("k", k, POSITIVE_INT)
        self.hnsw_kwargs = hnsw_kwargs
        self.embed_kwargs = embed_kwargs
        self.normalize = normalize
        self.batch_size = batch_size
        self.seed = check_param("seed", seed, SEED)
        self.vector_index = check_index_spec(vector_index)
        self.hnsw_params_ = _hnsw_params(hnsw_kwargs)
        self.base_query_strategy_ = _resolve_base(base_query_strategy)

    def _random_state(self):
        if isinstance(self.seed, np.random.Generator):
            return np.random.RandomState(int(self.seed.integers(2**31)))
        return np.random.RandomState(self.seed)

    def _anchors(self, x_l: np.ndarray, y) -> np.ndarray:
        from sklearn.cluster import kmeans_plusplus

        rs = self._random_state()
        anchors = []
        for members in _class_members(y, x_l.shape[0]):
            m = min(members.size, self.num_anchors)
            pts = x_l[members]
            _, idx = kmeans_plusplus(pts, m, x_squared_norms=np.einsum("ij,ij->i", pts, pts),
                                     random_state=rs)
            anchors.append(members[np.unique(idx)])
        return np.unique(np.concatenate(anchors)) if anchors else np.empty(0, dtype=np.int64)

    def _subset(self, clf, dataset, unl, lab, y, pbar=None):
        if self.subsample_size > unl.size or lab.size == 0:
            return None
        x_u, x_l = self._embeddings(clf, dataset, unl, lab, pbar)
        anchors = self._anchors(x_l, y)
        self.anchors_ = lab[anchors]
        k = min(self.k, unl.size)
        index = make_index(self.vector_index, metric="euclidean", n_index=unl.size,
                           n_queries=anchors.size, hnsw_kwargs=self.hnsw_params_).build(x_u)
        ids, dist = index.query(x_l[anchors], k=k)
        sim = 1.0 - dist.astype(np.float64).ravel() ** 2
        uniq, inv = np.unique(ids.ravel(), return_inverse=True)
        mean_sim = np.bincount(inv, weights=sim) / np.bincount(inv)
        if uniq.size > self.subsample_size:
            uniq = np.sort(uniq[top_n(mean_sim, self.subsample_size, lower_is_better=False)])
        return unl[uniq]
