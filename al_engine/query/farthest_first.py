"""Farthest-first traversal (the k-center greedy coreset of Sener & Savarese), lazily.

:func:`farthest_first` is the engine behind :class:`~al_engine.query.coreset.GreedyCoreset`
and small-text's signature :func:`~al_engine.query.coreset.greedy_coreset`.
"""
from __future__ import annotations

import numpy as np

from al_engine.query._geometry import (block_rows, check_metric, distance_key, key_to_distance,
                                       l2_normalize, min_distance_key, sq_norms)

#: First block of candidates refreshed by the lazy arg-max of :func:`farthest_first`.
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


def farthest_first(x_unlabeled: np.ndarray, x_labeled: np.ndarray, n: int,
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
    """The state of a farthest-first traversal of ``x`` (see :func:`farthest_first`): each
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
