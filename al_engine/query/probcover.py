"""ProbCover: maximum probability coverage of the embedding space (low-budget AL)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import POSITIVE_INT, POSITIVE_REAL, check_param
from al_engine.query._checks import check_pool
from al_engine.query._geometry import embed_pool, l2_normalize, resolve_rank_n
from al_engine.query.base import QueryStrategy, check_query_args
from al_engine.vector_index import check_index_spec, make_index


def coverage_graph(emb: np.ndarray, ball_radius: float, k: int, vector_index="auto") -> sp.csr_matrix:
    r"""Sparse boolean matrix :math:`A` with :math:`A_{ij} = 1` iff row :math:`j` lies in the
    ball of row :math:`i`: :math:`\lVert e_i - e_j\rVert^2 \le` ``ball_radius``, among the
    ``k`` nearest neighbours of :math:`i` (plus :math:`i` itself, always).
    """
    n = emb.shape[0]
    kk = min(k + 1, n)   # + 1: the row itself is (normally) its own nearest neighbour
    index = make_index(vector_index, metric="euclidean", n_index=n, n_queries=n).build(emb)
    rows, cols = [np.arange(n)], [np.arange(n)]
    step = max(1, (1 << 22) // kk)
    for start in range(0, n, step):
        stop = min(start + step, n)
        ids, dist = index.query(emb[start:stop], k=kk)
        inside = dist.astype(np.float64) ** 2 <= ball_radius
        r = np.broadcast_to(np.arange(start, stop)[:, None], ids.shape)
        rows.append(r[inside])
        cols.append(ids[inside])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    a = sp.csr_matrix((np.ones(rows.size, dtype=np.int32), (rows, cols)), shape=(n, n))
    a.data[:] = 1   # duplicates (self listed twice) were summed
    return a


def prob_cover(a: sp.csr_matrix, candidates: np.ndarray, covered_by: np.ndarray, n: int):
    r"""Greedy max coverage on the coverage graph ``a`` (Yehuda et al., 2022).

    Starts with every row covered by a ball of ``covered_by`` (the labeled rows) marked
    covered. Repeats ``n`` times: pick the candidate whose ball holds the most uncovered rows
    (its out-degree, :math:`\deg(i) = \sum_j A_{ij} [j \text{ uncovered}]`; ties by lowest
    position), mark its ball covered and lower the degrees of every ball containing a newly
    covered row -- incrementally, through the transposed graph. When no candidate covers
    anything new, the remaining picks follow the initial degree (density), then position.

    Returns ``(picks, degree)``: positions into ``candidates`` and the final degrees of all rows.
    """
    at = a.T.tocsr()
    covered = np.zeros(a.shape[0], dtype=bool)
    if covered_by.size:
        covered[a[covered_by].indices] = True
    degree = a @ (~covered).astype(np.int64)
    initial = a @ np.ones(a.shape[0], dtype=np.int64)
    cand_deg = degree[candidates].astype(np.float64)
    taken = np.zeros(candidates.size, dtype=bool)
    picks = np.empty(n, dtype=np.int64)
    # positions of candidates in the graph, to map graph rows back to candidate positions
    pos_of = np.full(a.shape[0], -1, dtype=np.int64)
    pos_of[candidates] = np.arange(candidates.size)
    for t in range(n):
        cand_deg[taken] = -np.inf
        best = cand_deg.max()
        if best <= 0:
            # nothing new to cover: densest first among the rest
            rest = np.flatnonzero(~taken)
            rest = rest[np.lexsort((rest, -initial[candidates[rest]]))]
            picks[t:] = rest[:n - t]
            break
        p = int(np.flatnonzero(cand_deg == best)[0])
        picks[t] = p
        taken[p] = True
        node = candidates[p]
        ball = a.indices[a.indptr[node]:a.indptr[node + 1]]
        new = ball[~covered[ball]]
        covered[new] = True
        owners = at[new].indices           # every row whose ball contains a newly covered row
        dec = np.bincount(owners, minlength=a.shape[0])
        degree -= dec
        hit = pos_of[owners]
        hit = np.unique(hit[hit >= 0])
        cand_deg[hit] = degree[candidates[hit]]
    return picks, degree


class ProbCover(QueryStrategy):
    r"""ProbCover [YDH+22]_: selects instances whose embedding-space balls cover the most
    not-yet-covered instances, starting from the coverage of the labeled set.

    Every instance (labeled or not) has a ball of squared euclidean radius ``ball_radius``
    around its L2-normalized embedding (:math:`\lVert e_i - e_j\rVert^2 = 2 - 2\cos`, the
    distance of small-text 2.0's default hnswlib ``"l2"`` space), found among its ``k``
    nearest neighbours. The greedy selection is the paper's (:func:`prob_cover`): each pick
    maximizes the number of newly covered instances, and covered instances stop counting
    for every ball.

    Differences from small-text 2.0's ``ProbCover`` (not in 1.4.1), which fixes its defects:
    it removes only the picked node's own edges (not the edges into the instances it
    covers), so covered instances keep counting; it can return labeled instances; and once
    all degrees are 0 it returns the same node again (duplicates). Here only unlabeled
    instances are returned, never twice.

    Parameters
    ----------
    vector_index : {"auto", "exact", "hnsw"} or VectorIndex, default="auto"
    k : int, default=100
        Neighbours searched per instance (caps the ball size).
    ball_radius : float, default=0.1
        Squared euclidean radius on normalized embeddings (0.1 means cosine >= 0.95).
    embed_kwargs : dict or None
        Passed to ``clf.embed``.

    Attributes
    ----------
    degree_ : np.ndarray
        After :meth:`rank`: how many uncovered instances each unlabeled instance's ball still
        holds (aligned with ``indices_unlabeled``).

    .. [YDH+22] O. Yehuda, A. Dekel, G. Hacohen and D. Weinshall. Active learning through a
       covering lens. NeurIPS 2022.
    """

    supports_multi_label = True

    def __init__(self, vector_index="auto", k: int = 100, ball_radius: float = 0.1,
                 embed_kwargs: dict | None = None):
        self.vector_index = check_index_spec(vector_index)
        self.k = check_param("k", k, POSITIVE_INT)
        self.ball_radius = check_param("ball_radius", ball_radius, POSITIVE_REAL)
        self.embed_kwargs = embed_kwargs

    def _run(self, clf, dataset, unl, indices_labeled, n):
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        emb = l2_normalize(embed_pool(clf, dataset, np.concatenate([unl, lab]),
                                      embed_kwargs=self.embed_kwargs))
        a = coverage_graph(emb, float(self.ball_radius), self.k, self.vector_index)
        return prob_cover(a, np.arange(unl.size), np.arange(unl.size, emb.shape[0]), n)

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        unl = check_query_args(indices_unlabeled, n)
        picks, _ = self._run(clf, dataset, unl, indices_labeled, n)
        return unl[picks]

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y,
             n: int | None = None) -> np.ndarray:
        """Every unlabeled position: the greedy batch of size ``n`` (default 10) first, then
        the rest by how many uncovered instances their ball still holds, then position."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        picks, degree = self._run(clf, dataset, unl, indices_labeled,
                                  resolve_rank_n(n, unl.size))
        deg = degree[:unl.size].astype(np.float64)
        self.degree_ = deg
        mask = np.ones(unl.size, dtype=bool)
        mask[picks] = False
        rest = np.flatnonzero(mask)
        rest = rest[np.lexsort((rest, -deg[rest]))]
        return unl[np.concatenate([picks, rest])]
