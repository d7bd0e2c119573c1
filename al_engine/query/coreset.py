"""Coreset strategies over document embeddings: GreedyCoreset and LightweightCoreset.

Both call ``clf.embed`` once on ``dataset[indices_unlabeled ++ indices_labeled]`` (as
small-text does) and work for single- and multi-label data (they never look at labels).
"""
from __future__ import annotations

import numpy as np

from al_engine.query._checks import check_pool, check_seed, make_rng
from al_engine.query._geometry import (block_rows, check_metric, check_positive_int,
                                       distance_key, embed_pool, key_to_distance, l2_normalize,
                                       min_distance_key, resolve_rank_n, sq_norms)
from al_engine.query.base import QueryStrategy, check_query_args

#: First block of candidates refreshed by the lazy arg-max of :func:`greedy_coreset`.
_LAZY_BLOCK = 256


def _refresh(x, x_sq, bound, fresh, centers, c_sq, m, rows, metric):
    """Lower ``bound[rows]`` by the distance to the centers each row has not seen yet."""
    rows = rows[fresh[rows] < m]
    if rows.size == 0:
        return
    first = int(fresh[rows].min())
    c, cs = centers[first:m], c_sq[first:m]
    step = block_rows(m - first)
    for start in range(0, rows.size, step):
        r = rows[start:start + step]
        new = distance_key(x[r], x_sq[r], c, cs, metric).min(axis=1)
        bound[r] = np.minimum(bound[r], new)
    fresh[rows] = m


def _lazy_argmax(x, x_sq, bound, fresh, centers, c_sq, m, taken, metric) -> int:
    """Position of the largest exact min-distance among the rows not taken (lowest position
    among exact ties), refreshing only the rows whose stale bound could still win.

    ``bound[i]`` is the min distance key of row ``i`` to the labeled rows and to the first
    ``fresh[i]`` centers: an upper bound of its true value, since adding centers only lowers
    it. Rows are refreshed best-bound first in growing blocks until the best refreshed value
    strictly beats every stale bound left (then it is the true arg-max); at worst the whole
    pool is refreshed once.
    """
    left = x.shape[0] - int(taken.sum())
    block = _LAZY_BLOCK
    while True:
        if block >= left:
            rows = np.flatnonzero(~taken)
            _refresh(x, x_sq, bound, fresh, centers, c_sq, m, rows, metric)
            vals = bound[rows]
            return int(rows[np.flatnonzero(vals == vals.max())[0]])
        part = np.argpartition(-bound, block)
        rows, runner_up = part[:block], bound[part[block]]
        _refresh(x, x_sq, bound, fresh, centers, c_sq, m, rows, metric)
        vals = bound[rows]
        best = vals.max()
        if best > runner_up:
            return int(rows[vals == best].min())
        block *= 4


def greedy_coreset(x_unlabeled: np.ndarray, x_labeled: np.ndarray, n: int,
                   distance_metric: str = "euclidean", batch_size: int | None = None,
                   return_min_distances: bool = False):
    r"""Farthest-first traversal (the k-center greedy of [SS17]_).

    Repeats ``n`` times: pick the unlabeled row :math:`u` maximizing
    :math:`\min_{s \in L \cup S} d(u, s)` over the labeled rows :math:`L` and the rows picked
    so far :math:`S`; ties go to the lowest position (as ``np.argmax``). With no labeled row,
    the first pick is the row closest to the mean of ``x_unlabeled``.

    The min-distance vector is kept up to date incrementally and lazily (see
    :func:`_lazy_argmax`), in float32, in blocks of bounded memory: the work is
    :math:`O(|U| \cdot |L| \cdot d)` once, then at most :math:`O(|U| \cdot d)` per pick
    (usually far less), never a distance matrix per pick.

    Parameters
    ----------
    x_unlabeled, x_labeled : np.ndarray
        Row vectors; for ``"cosine"`` they must already be L2-normalized.
    n : int
        Number of rows to pick (``<= len(x_unlabeled)``).
    distance_metric : {"euclidean", "cosine"}
        Euclidean distance, or small-text's cosine distance :math:`\arccos(\cos)/\pi` (the
        selection only depends on the order of distances, so :math:`1 - \cos` is used).
    batch_size : int or None
        Rows per block of the initial distance computation; None sizes blocks to 64 MiB.
    return_min_distances : bool
        Also return every row's distance to :math:`L \cup S` after the last pick.

    Returns
    -------
    picks : np.ndarray
        Positions into ``x_unlabeled``, in pick order.
    min_distances : np.ndarray
        Only with ``return_min_distances``; picked rows get ``-inf``.

    .. [SS17] O. Sener and S. Savarese. Active learning for convolutional neural networks:
       a core-set approach. ICLR 2018.
    """
    metric = check_metric(distance_metric)
    x = np.ascontiguousarray(x_unlabeled, dtype=np.float32)
    lab = np.ascontiguousarray(x_labeled, dtype=np.float32).reshape(-1, x.shape[1])
    if not 1 <= n <= x.shape[0]:
        raise ValueError(f"n must be in [1, {x.shape[0]}], got {n}")
    walk = _FarthestFirst(x, lab, n, metric, batch_size)
    for m in range(n):
        walk.take(walk.closest_to_mean() if m == 0 and lab.shape[0] == 0 else walk.farthest())
    if not return_min_distances:
        return walk.picks
    return walk.picks, walk.min_distances()


class _FarthestFirst:
    """The state of a farthest-first traversal of ``x`` (see :func:`greedy_coreset`): each
    row's lazily refreshed min-distance bound (:func:`_lazy_argmax`) and the picks so far."""

    def __init__(self, x, lab, n: int, metric: str, batch_size: int | None):
        self.x, self.metric = x, metric
        self.x_sq = sq_norms(x)
        self.bound = min_distance_key(x, lab, metric, batch_size)
        self.fresh = np.zeros(x.shape[0], dtype=np.int64)
        self.centers = np.empty((n, x.shape[1]), dtype=np.float32)
        self.c_sq = np.empty(n, dtype=np.float32)
        self.picks = np.empty(n, dtype=np.int64)
        self.taken = np.zeros(x.shape[0], dtype=bool)
        self.m = 0

    def closest_to_mean(self) -> int:
        """The row closest to the mean of the rows (the first pick without labeled rows)."""
        mean = self.x.mean(axis=0, keepdims=True)
        if self.metric == "cosine":
            mean = l2_normalize(mean)
        keys = distance_key(self.x, self.x_sq, mean, sq_norms(mean), self.metric)[:, 0]
        return int(np.flatnonzero(keys == keys.min())[0])

    def farthest(self) -> int:
        """The row not taken farthest from the labeled rows and the picks."""
        return _lazy_argmax(self.x, self.x_sq, self.bound, self.fresh, self.centers, self.c_sq,
                            self.m, self.taken, self.metric)

    def take(self, pick: int) -> None:
        m = self.m
        self.picks[m] = pick
        self.taken[pick] = True
        self.bound[pick] = -np.inf
        self.centers[m] = self.x[pick]
        self.c_sq[m] = self.x_sq[pick]
        self.m = m + 1

    def min_distances(self) -> np.ndarray:
        """Every row's distance to the labeled rows and the picks (``-inf`` if picked)."""
        rest = np.flatnonzero(~self.taken)
        _refresh(self.x, self.x_sq, self.bound, self.fresh, self.centers, self.c_sq, self.m,
                 rest, self.metric)
        dist = np.full(self.x.shape[0], -np.inf)
        dist[rest] = key_to_distance(self.bound[rest], self.metric)
        return dist


class GreedyCoreset(QueryStrategy):
    r"""Selects a greedy coreset [SS17]_ (farthest-first traversal) of the unlabeled
    embeddings, starting from the labeled ones.

    Same selection as small-text 1.4.1's ``GreedyCoreset`` on the same embeddings (up to
    float32 rounding of near-exact ties), but with the min-distance vector maintained
    incrementally instead of recomputing all distances for every pick. Differences: works
    with an empty labeled set (first pick = the unlabeled row closest to the mean; small-text
    raises), and ``batch_size`` is honoured (small-text ignores it).

    Parameters
    ----------
    distance_metric : {"euclidean", "cosine"}, default="euclidean"
        small-text's metrics; ``"cosine"`` is the angular distance :math:`\arccos(\cos)/\pi`.
        On normalized embeddings both give the same selection.
    normalize : bool, default=True
        L2-normalize the embeddings first.
    batch_size : int or None, default=None
        Rows per block for distance computations; None sizes blocks to 64 MiB.
    embed_kwargs : dict or None
        Passed to ``clf.embed``.

    Attributes
    ----------
    min_distances_ : np.ndarray
        After :meth:`rank`: each unlabeled row's distance to the labeled rows and the head
        batch (aligned with ``indices_unlabeled``; ``-inf`` for the head).
    """

    supports_multi_label = True

    def __init__(self, distance_metric: str = "euclidean", normalize: bool = True,
                 batch_size: int | None = None, embed_kwargs: dict | None = None):
        self.distance_metric = check_metric(distance_metric)
        self.normalize = normalize
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        self.embed_kwargs = embed_kwargs

    def _embeddings(self, clf, dataset, unl, lab):
        emb = embed_pool(clf, dataset, np.concatenate([unl, lab]),
                         embed_kwargs=self.embed_kwargs)
        if self.normalize or self.distance_metric == "cosine":
            emb = l2_normalize(emb)
        return emb[:unl.size], emb[unl.size:]

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        unl = check_query_args(indices_unlabeled, n)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        x_u, x_l = self._embeddings(clf, dataset, unl, lab)
        return unl[greedy_coreset(x_u, x_l, n, self.distance_metric, self.batch_size)]

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y,
             n: int | None = None) -> np.ndarray:
        """Every unlabeled position: the greedy batch of size ``n`` (default 10) first, then
        the rest by decreasing distance to the labeled rows and that batch (the coreset
        criterion frozen after the batch; ties by position)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        head_n = resolve_rank_n(n, unl.size)
        x_u, x_l = self._embeddings(clf, dataset, unl, lab)
        picks, dist = greedy_coreset(x_u, x_l, head_n, self.distance_metric, self.batch_size,
                                     return_min_distances=True)
        self.min_distances_ = dist
        rest = np.flatnonzero(np.isfinite(dist))
        rest = rest[np.argsort(-dist[rest], kind="stable")]
        return unl[np.concatenate([picks, rest])]


def lightweight_coreset_proba(x: np.ndarray) -> np.ndarray:
    r"""Sampling distribution of the lightweight coreset [BLK18]_ (small-text's variant).

    :math:`q_i = \frac{1}{2|X|} + \frac{1}{2} \frac{d_i^2}{\sum_j d_j^2}` with
    :math:`d_i = \arccos(\cos(x_i, \bar x)) / \pi` the angular distance of row :math:`i` to the
    mean :math:`\bar x` of the rows (computed before normalization). If every :math:`d_i = 0`
    the distribution is uniform.

    .. [BLK18] O. Bachem, M. Lucic and A. Krause. Scalable k-means clustering via
       lightweight coresets. KDD 2018.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, keepdims=True)
    # an all-zero row has no direction; it stays zero after normalizing (cosine 0)
    sim = (l2_normalize(x) @ l2_normalize(mean).T)[:, 0].astype(np.float64)
    d2 = np.square(np.arccos(np.clip(sim, -1.0, 1.0)) / np.pi)
    total = d2.sum()
    if total == 0 or not np.isfinite(total):
        return np.full(x.shape[0], 1.0 / x.shape[0])
    q = 0.5 / x.shape[0] + 0.5 * d2 / total
    return q / q.sum()


class LightweightCoreset(QueryStrategy):
    r"""Samples a lightweight coreset [BLK18]_ of the unlabeled embeddings: ``n`` rows drawn
    without replacement with probability :math:`q_i` (:func:`lightweight_coreset_proba`).

    The draw uses Efraimidis-Spirakis keys :math:`\log(u_i) / q_i` (:math:`u_i` uniform),
    taking the largest: the same distribution as small-text's successive weighted sampling
    (``np.random.choice(replace=False, p=q)``) but seeded, and it orders the whole pool at
    once, so ``query(n) == rank()[:n]``.

    Parameters
    ----------
    normalize : bool, default=True
        Kept for small-text compatibility; the distance is angular either way.
    seed : int, numpy.random.Generator or None, default=None
    embed_kwargs : dict or None
        Passed to ``clf.embed``.
    """

    supports_multi_label = True

    def __init__(self, normalize: bool = True, seed=None, embed_kwargs: dict | None = None):
        self.normalize = normalize
        self.seed = check_seed(seed)
        self.embed_kwargs = embed_kwargs

    def _order(self, clf, dataset, unl) -> np.ndarray:
        emb = embed_pool(clf, dataset, unl, embed_kwargs=self.embed_kwargs)
        q = lightweight_coreset_proba(emb)
        self.proba_ = q
        u = make_rng(self.seed).random(unl.size)
        keys = np.log1p(-u) / q
        return np.argsort(-keys, kind="stable")

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        unl = check_query_args(indices_unlabeled, n)
        return unl[self._order(clf, dataset, unl)[:n]]

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """The whole weighted random permutation (``query(n)`` is its first ``n``)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        return unl[self._order(clf, dataset, unl)]
