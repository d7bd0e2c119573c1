"""Label-free cold start: which tasks to label first when no label exists yet.

The initialization strategies of :mod:`al_engine.init` follow small-text and draw at random
(the stratified and balanced ones even need the true labels, which only a simulation has).
The strategies here look only at the features of the pool (sentence embeddings in the
default pipeline), so the Label Studio backend can use them before the first annotation and
a simulation starts from exactly what the backend would pick.

Each is called as ``strategy.select(x, n, indices_labeled=None)`` (or ``strategy(x, n)``)
and returns ``n`` distinct row positions of ``x``, never one of ``indices_labeled``, in the
order they should be labeled. They are registered as initializations (``typiclust``,
``kmeans_centres``) with ``needs_features = True``: the active learner passes them the pool's
features where the random initializations get the labels.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import Integral, Interval, check_param


def _check_count(value, name: str, minimum: int = 1) -> int:
    return int(check_param(name, value, Interval(Integral, minimum, None)))


def _as_rows(x) -> np.ndarray | sp.csr_matrix:
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float32)
    else:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"x must be a 2-D feature matrix, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x holds NaN or infinite values")
    if x.shape[0] == 0:
        raise ValueError("x has no rows: there is nothing to select")
    return x


def _sq_distances(a, b) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and ``b`` (dense result)."""
    ab = a @ b.T
    ab = ab.toarray() if sp.issparse(ab) else np.asarray(ab)
    a2 = np.asarray(a.multiply(a).sum(axis=1)).ravel() if sp.issparse(a) else np.einsum("ij,ij->i", a, a)
    b2 = np.asarray(b.multiply(b).sum(axis=1)).ravel() if sp.issparse(b) else np.einsum("ij,ij->i", b, b)
    return np.maximum(a2[:, None] + b2[None, :] - 2.0 * ab, 0.0)


class TypiClust:
    r"""The most typical instance of each of the largest clusters not yet covered by a
    label (TypiClust [HWW22]_).

    The pool is split by k-means into :math:`|L| + n` clusters (:math:`L` the labeled rows);
    the ``n`` largest clusters without a labeled row each give their most *typical* member,
    the one of highest

    .. math:: \operatorname{typicality}(x) =
              \Big(\frac{1}{K}\sum_{x_i \in \mathrm{KNN}_K(x)} \lVert x - x_i\rVert_2\Big)^{-1}

    with the :math:`K` = ``n_neighbors`` nearest neighbours taken inside the cluster. Dense,
    typical regions are where a classifier trained on few labels generalizes; one per
    cluster keeps the batch diverse. Hacohen et al. show it beats random selection by a wide
    margin for budgets of a few labels per class, which is the cold start of every project.

    Differences from the paper, for speed on large pools: k-means is fitted on a seeded
    subsample of at most ``max_samples`` rows (every row is then assigned to its nearest
    centre), and in a cluster of more than ``max_reference`` members the most typical is
    sought among ``max_reference`` seeded members, their neighbours among the same ones. The
    loop is over the ``n`` chosen clusters, never over rows.

    Parameters
    ----------
    n_neighbors : int, default=20
        :math:`K` of the typicality (the paper's value); clipped to the cluster size.
    max_samples : int, default=10000
        Rows the k-means centres are fitted on.
    max_reference : int, default=2000
        Members of a cluster among which (and against which) typicality is measured.
    seed : int or None, default=0
        Seed of k-means and of the subsamples.

    Attributes
    ----------
    labels_ : np.ndarray
        Cluster of every row in the last :meth:`select`.
    typicality_ : np.ndarray
        Typicality of the selected rows, in selection order.

    .. [HWW22] G. Hacohen, A. Dekel and D. Weinshall. Active learning on a budget: opposite
       strategies suit high and low budgets. ICML 2022.
    """

    #: called with the pool's features, not with labels (see the module docstring)
    needs_features = True

    def __init__(self, n_neighbors: int = 20, max_samples: int = 10_000,
                 max_reference: int = 2_000, seed: int | None = 0):
        self.n_neighbors = _check_count(n_neighbors, "n_neighbors")
        self.max_samples = _check_count(max_samples, "max_samples")
        self.max_reference = _check_count(max_reference, "max_reference", minimum=2)
        if seed is not None:
            _check_count(seed, "seed", minimum=0)
        self.seed = seed

    def __call__(self, x, n: int = 10, indices_labeled=None) -> np.ndarray:
        return self.select(x, n, indices_labeled)

    def select(self, x, n: int = 10, indices_labeled=None) -> np.ndarray:
        """``n`` row positions of ``x`` to label first, largest cluster first.

        Raises
        ------
        ValueError
            If ``n`` is not a positive integer or exceeds the unlabeled rows.
        """
        x = _as_rows(x)
        labeled = np.unique(np.asarray(indices_labeled if indices_labeled is not None else [],
                                       dtype=np.int64).reshape(-1))
        if labeled.size and (labeled.min() < 0 or labeled.max() >= x.shape[0]):
            raise ValueError(f"indices_labeled must be row positions in [0, {x.shape[0]})")
        n = _check_count(n, "n")
        if n > x.shape[0] - labeled.size:
            raise ValueError(f"n={n} exceeds the {x.shape[0] - labeled.size} unlabeled rows")
        rng = np.random.default_rng(self.seed)
        self.labels_ = self._cluster(x, labeled.size + n, rng)
        free = np.ones(x.shape[0], dtype=bool)
        free[labeled] = False
        covered = np.zeros(self.labels_.max() + 1, dtype=bool)
        covered[self.labels_[labeled]] = True
        sizes = np.bincount(self.labels_[free], minlength=covered.size)
        # largest uncovered clusters first, then (only if k-means left fewer non-empty
        # clusters than asked) the largest covered ones, each giving one row at a time
        order = np.lexsort((-sizes, covered))
        picks, typ = [], []
        while len(picks) < n:
            for c in order:
                if len(picks) == n:
                    break
                members = np.flatnonzero(free & (self.labels_ == c))
                if members.size == 0:
                    continue
                best, t = self._most_typical(x, members, rng)
                picks.append(best)
                typ.append(t)
                free[best] = False
        self.typicality_ = np.asarray(typ)
        return np.asarray(picks, dtype=np.int64)

    def _cluster(self, x, k: int, rng: np.random.Generator) -> np.ndarray:
        from sklearn.cluster import KMeans
        fit_rows = x
        if x.shape[0] > max(self.max_samples, k):
            fit_rows = x[np.sort(rng.choice(x.shape[0], size=max(self.max_samples, k), replace=False))]
        km = KMeans(n_clusters=min(k, fit_rows.shape[0]), n_init=1,
                    random_state=int(rng.integers(2**31)))
        with warnings.catch_warnings():   # "fewer distinct clusters than n_clusters"
            warnings.simplefilter("ignore")
            km.fit(fit_rows)
            return km.predict(x).astype(np.int64)

    def _most_typical(self, x, members: np.ndarray, rng: np.random.Generator):
        if members.size == 1:
            return int(members[0]), np.inf
        # candidates and their neighbours: at most max_reference seeded members each
        ref = members if members.size <= self.max_reference else \
            np.sort(rng.choice(members, size=self.max_reference, replace=False))
        cand = ref
        k = min(self.n_neighbors, ref.size - 1)
        step = max(1, (1 << 22) // ref.size)          # bounds one distance block to 16 MiB
        mean_knn = np.empty(cand.size)
        for s in range(0, cand.size, step):
            rows = cand[s:s + step]
            d = _sq_distances(x[rows], x[ref])
            d[rows[:, None] == ref[None, :]] = np.inf   # a member is not its own neighbour
            near = np.partition(d, k - 1, axis=1)[:, :k]
            mean_knn[s:s + step] = np.sqrt(near).mean(axis=1)
        typicality = 1.0 / (mean_knn + 1e-12)
        j = int(np.argmax(typicality))
        return int(cand[j]), float(typicality[j])

    def __repr__(self) -> str:
        return (f"TypiClust(n_neighbors={self.n_neighbors}, max_samples={self.max_samples}, "
                f"max_reference={self.max_reference}, seed={self.seed!r})")


class KMeansCentres(TypiClust):
    r"""The row nearest to the centre of each of the largest uncovered k-means clusters
    (the cold start of BERT-KM [YLB20]_, as :class:`~al_engine.query.embedding.EmbeddingKMeans`
    without a classifier). Same clustering and cluster order as :class:`TypiClust`; the
    representative of a cluster is the member of least squared distance to the cluster mean
    instead of the most typical one.

    .. [YLB20] M. Yuan, H.-T. Lin and J. Boyd-Graber. Cold-start active learning through
       self-supervised language modeling. EMNLP 2020.
    """

    def _most_typical(self, x, members: np.ndarray, rng: np.random.Generator):
        rows = x[members]
        centre = np.asarray(rows.mean(axis=0)).reshape(1, -1)
        d = _sq_distances(rows, centre).ravel()
        j = int(np.argmin(d))
        return int(members[j]), float(-d[j])

    def __repr__(self) -> str:
        return f"KMeansCentres(max_samples={self.max_samples}, seed={self.seed!r})"
