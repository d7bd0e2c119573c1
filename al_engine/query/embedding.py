"""Embedding-space strategies: EmbeddingKMeans (representativeness) and
ContrastiveActiveLearning (contrastive examples in the neighbourhood).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.special import rel_entr

from al_engine._param_validation import POSITIVE_INT, SEED, check_param
from al_engine.exceptions import InvalidParameterError
from al_engine.query._checks import check_pool
from al_engine.query._geometry import (as_float_matrix, as_proba_matrix, block_rows,
                                       embed_dataset, l2_normalize, resolve_rank_n, take_rows)
from al_engine.query.base import top_n
from al_engine.query.embedding_based import EmbeddingBasedQueryStrategy
from al_engine.vector_index import check_index_spec, make_index


def nearest_to_centers(centers: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each center in order, the most cosine-similar row of ``x`` not yet chosen.

    Equals small-text's rule: every center's arg-max row, and when two centers share one,
    the iterative version (centers in order, each excluding the rows chosen before it).
    Rows of ``x`` must be L2-normalized. Loops over the centers, never over the rows.
    """
    c = l2_normalize(centers)
    sim = np.empty((c.shape[0], x.shape[0]), dtype=np.float32)
    step = block_rows(x.shape[0])
    for start in range(0, c.shape[0], step):
        sim[start:start + step] = c[start:start + step] @ x.T
    picks = sim.argmax(axis=1)
    if np.unique(picks).size == picks.size:
        return picks
    for i in range(c.shape[0]):
        row = sim[i]
        row[picks[:i]] = -np.inf
        picks[i] = row.argmax()
    return picks


class EmbeddingKMeans(EmbeddingBasedQueryStrategy):
    """k-means on the unlabeled embeddings with ``n`` clusters; selects the instance nearest
    (cosine) to each center [YLB20]_ (BERT-KM, for any dense embedding).

    Same rule as small-text 1.4.1 (scikit-learn's k-means++ seeded Lloyd k-means, then the
    nearest row per center, no duplicates), with these differences:

    * the centers are fitted on a seeded uniform subsample of at most ``max_samples`` rows
      (default 10 000, i.e. 100 rows per center even for ``n=100``); the nearest row to each
      center is then searched among ALL unlabeled rows. On a large pool this is where the time
      goes: scikit-learn's k-means++ seeding is memory-bound (one pass over the pool per
      center and trial) and Lloyd needs tens of passes. ``max_samples=None`` clusters the
      whole pool, exactly as small-text;
    * the clustering is seeded (``seed``; small-text's is not, so its selection is not
      reproducible);
    * the batch is ordered by cluster size, largest first (small-text returns the arbitrary
      center order).

    Parameters
    ----------
    normalize : bool, default=True
        L2-normalize the embeddings before clustering.
    seed : int, numpy.random.Generator or None, default=None
        Seed of the subsample and of the k-means++ initialization.
    max_samples : int or None, default=10000
        Rows the centers are fitted on (at least ``n``); None = every unlabeled row.
    max_iter : int, default=300
        Lloyd iterations at most (scikit-learn's default).
    embed_kwargs : dict or None
        Passed to ``clf.embed``.

    Attributes
    ----------
    cluster_centers_ : np.ndarray
        Centers of the last clustering.

    .. [YLB20] M. Yuan, H.-T. Lin and J. Boyd-Graber. Cold-start active learning through
       self-supervised language modeling. EMNLP 2020.
    """

    embed_with_proba = False

    def __init__(self, normalize: bool = True, seed=None, max_samples: int | None = 10_000,
                 max_iter: int = 300, embed_kwargs: dict | None = None):
        self.normalize = normalize
        self.seed = check_param("seed", seed, SEED)
        self.max_samples = check_param("max_samples", max_samples, [None, POSITIVE_INT])
        self.max_iter = check_param("max_iter", max_iter, POSITIVE_INT)
        self.embed_kwargs = embed_kwargs

    def _random_state(self) -> np.random.RandomState:
        if isinstance(self.seed, np.random.Generator):
            return np.random.RandomState(int(self.seed.integers(2**31)))
        return np.random.RandomState(self.seed)

    def _select(self, x, n):
        """Positions (into the rows of ``x``) of the rows nearest to ``n`` k-means centers,
        largest cluster first; and ``x`` L2-normalized."""
        from sklearn.cluster import KMeans

        if self.normalize:
            x = l2_normalize(x)
        rs = self._random_state()
        fit_x = x
        if self.max_samples is not None and x.shape[0] > max(self.max_samples, n):
            sample = rs.choice(x.shape[0], size=max(self.max_samples, n), replace=False)
            fit_x = x[np.sort(sample)]
        km = KMeans(n_clusters=n, n_init=1, max_iter=self.max_iter, random_state=rs)
        with warnings.catch_warnings():   # "fewer distinct clusters than n_clusters"
            warnings.simplefilter("ignore")
            km.fit(fit_x)
        self.cluster_centers_ = km.cluster_centers_
        xn = x if self.normalize else l2_normalize(x)
        picks = nearest_to_centers(km.cluster_centers_, xn)
        sizes = np.bincount(km.labels_, minlength=n)
        picks = picks[np.argsort(-sizes, kind="stable")]
        return picks, xn

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None) -> np.ndarray:
        x = as_float_matrix(embeddings, np.shape(embeddings)[0], "embeddings")
        return self._select(take_rows(x, indices_unlabeled), n)[0]

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y,
             n: int | None = None) -> np.ndarray:
        """Every unlabeled position: the batch for ``n`` clusters (default 10) first, then the
        rest by decreasing cosine similarity to their nearest center (most representative
        first; ties by position)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        x = self._embed(clf, dataset[unl], None, self.embed_kwargs)[0]
        picks, xn = self._select(x, resolve_rank_n(n, unl.size))
        c = l2_normalize(self.cluster_centers_)
        best = np.empty(unl.size, dtype=np.float32)
        step = block_rows(c.shape[0])
        for start in range(0, unl.size, step):
            best[start:start + step] = (xn[start:start + step] @ c.T).max(axis=1)
        best[picks] = np.inf
        rest = np.argsort(-best, kind="stable")[picks.size:]
        return unl[np.concatenate([picks, rest])]


_NEIGHBOURHOODS = ("labeled", "pool")


class ContrastiveActiveLearning(EmbeddingBasedQueryStrategy):
    r"""Contrastive Active Learning (CAL) [MVB+21]_: selects the candidates whose predicted
    distribution differs most from that of their nearest neighbours.

    Score of an unlabeled candidate :math:`x` with neighbours :math:`N_k(x)`:

    .. math:: s(x) = \frac{1}{|N_k(x)|} \sum_{x' \in N_k(x)}
              \mathrm{KL}\big(p(\cdot \mid x') \,\|\, p(\cdot \mid x)\big)

    (higher is better), with :math:`p` the classifier's probabilities and neighbours by
    euclidean distance between (normalized) embeddings.

    ``neighbourhood="labeled"`` (default) follows the paper: :math:`N_k(x)` are the ``k``
    nearest LABELED instances, so the work is :math:`|U| \times |L|`. With no labeled
    instance it falls back to ``"pool"``. ``neighbourhood="pool"`` is small-text 1.4.1's
    semantics: the ``k`` nearest among all unlabeled and labeled instances, the candidate
    itself included (it contributes 0); small-text's scores are ours divided by the number of
    classes, so the selected set is the same with exact neighbours.

    The probabilities come with the embeddings (``clf.embed(..., return_proba=True)``); a
    classifier whose ``embed`` has no ``return_proba`` gets ``clf.predict_proba`` instead.
    With precomputed ``embeddings`` (see :meth:`query`) there are no probabilities and,
    as in small-text, :meth:`sample` raises ``ValueError``.

    Parameters
    ----------
    k : int, default=10
        Number of neighbours (capped at the number available).
    embed_kwargs : dict or None
        Passed to ``clf.embed``.
    normalize : bool, default=True
        L2-normalize the embeddings.
    batch_size : int or None, default=None
        Candidates per block of the KL computation; None sizes blocks automatically.
    neighbourhood : {"labeled", "pool"}, default="labeled"
    vector_index : {"auto", "exact", "hnsw"} or VectorIndex, default="auto"
        Neighbour search; ``"auto"`` is exact unless (index size x candidates) is large.

    Attributes
    ----------
    scores_ : np.ndarray
        One score per row of ``dataset`` (after :meth:`sample`: per row of ``embeddings``);
        NaN for rows that were not candidates.
    neighbourhood_ : str
        The neighbourhood actually used by the last call.

    .. [MVB+21] K. Margatina, G. Vernikos, L. Barrault and N. Aletras. Active learning by
       acquiring contrastive examples. EMNLP 2021.
    """

    supports_multi_label = False
    lower_is_better = False

    def __init__(self, k: int = 10, embed_kwargs: dict | None = None, normalize: bool = True,
                 batch_size: int | None = None, neighbourhood: str = "labeled",
                 vector_index="auto"):
        self.k = check_param("k", k, POSITIVE_INT)
        self.embed_kwargs = embed_kwargs
        self.normalize = normalize
        self.batch_size = check_param("batch_size", batch_size, [None, POSITIVE_INT])
        if neighbourhood not in _NEIGHBOURHOODS:
            raise InvalidParameterError(
                f"neighbourhood must be one of {list(_NEIGHBOURHOODS)}, got {neighbourhood!r}")
        self.neighbourhood = neighbourhood
        self.vector_index = check_index_spec(vector_index)

    def _embed(self, clf, subset, pbar, embed_kwargs: dict):
        return embed_dataset(clf, subset, return_proba=True, embed_kwargs=embed_kwargs,
                             pbar=pbar)

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None) -> np.ndarray:
        if embeddings_proba is None:
            raise ValueError("Error: embeddings_proba is None. This strategy requires a "
                             "classifier whose embed() method supports the return_proba kwarg "
                             "(ContrastiveActiveLearning needs class probabilities for the "
                             "embedded rows; precomputed embeddings come without them).")
        emb = as_float_matrix(embeddings, np.shape(embeddings)[0], "embeddings")
        proba = as_proba_matrix(embeddings_proba, emb.shape[0])
        if self.normalize:
            emb = l2_normalize(emb)
        unl = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        kl = self._kl_scores(emb, proba, unl, lab)
        self.scores_ = np.full(emb.shape[0], np.nan)
        self.scores_[unl] = kl
        return top_n(kl, n, lower_is_better=False)

    def _on_sampled(self, rows: np.ndarray, n_rows: int) -> None:
        scores = np.full(n_rows, np.nan)
        scores[rows] = self.scores_
        self.scores_ = scores

    def _kl_scores(self, emb, proba, unl, lab) -> np.ndarray:
        """The mean KL divergence of each unlabeled row (``emb[unl]``) to its neighbours."""
        mode = self.neighbourhood if lab.size else "pool"
        self.neighbourhood_ = mode
        ref_rows = lab if mode == "labeled" else np.concatenate([unl, lab])
        ref, ref_proba = take_rows(emb, ref_rows), take_rows(proba, ref_rows)
        cand, cand_proba = take_rows(emb, unl), take_rows(proba, unl)
        k = min(self.k, ref.shape[0])
        index = make_index(self.vector_index, metric="euclidean", n_index=ref.shape[0],
                           n_queries=unl.size).build(ref)
        kl = np.empty(unl.size, dtype=np.float64)
        step = self.batch_size or max(1, (1 << 22) // max(1, k * proba.shape[1]))
        for start in range(0, unl.size, step):
            stop = min(start + step, unl.size)
            nbrs = index.query(cand[start:stop], k=k, return_distance=False)
            div = rel_entr(ref_proba[nbrs], cand_proba[start:stop, None, :])
            kl[start:stop] = div.sum(axis=2).mean(axis=1)
        if np.isnan(kl).any():
            raise ValueError("ContrastiveActiveLearning: clf returned NaN probabilities")
        return kl
