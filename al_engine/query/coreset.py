"""Coreset strategies over document embeddings, GreedyCoreset and LightweightCoreset, and
small-text's functions :func:`greedy_coreset` and :func:`lightweight_coreset`.

Both strategies are :class:`~al_engine.query.embedding_based.EmbeddingBasedQueryStrategy`:
``query`` embeds ``dataset[indices_unlabeled ++ indices_labeled]`` once (or takes
precomputed ``embeddings``) and ``sample`` selects. They work for single- and multi-label
data (they never look at labels).
"""
from __future__ import annotations

import warnings

import numpy as np

from al_engine._param_validation import POSITIVE_INT, check_param
from al_engine.query._checks import check_pool, check_seed, make_rng
from al_engine.query._geometry import (as_float_matrix, check_metric, check_positive_int,
                                       l2_normalize, resolve_rank_n, take_rows)
from al_engine.query.base import top_n
from al_engine.query.embedding_based import EmbeddingBasedQueryStrategy
from al_engine.query.farthest_first import farthest_first

#: small-text 1.4.1's warning for a non-cosine GreedyCoreset (its test matches the start).
METRIC_WARNING = ('Default distance metric has changed from "cosine" to "euclidean" in '
                  'small-text v1.2.0 (and here); pass distance_metric="cosine" for the old one.')


def _check_coreset_size(num_samples: int, n) -> int:
    n = check_param("n", n, POSITIVE_INT)
    if n > num_samples:
        raise ValueError(f"n (n={n}) is greater than the number of available samples "
                         f"(num_samples={num_samples})")
    return n


def greedy_coreset(x, indices_unlabeled, indices_labeled, n: int, distance_metric: str = "cosine",
                   batch_size: int | None = 100, normalized: bool = False) -> np.ndarray:
    """A greedy coreset [SS17]_ of size ``n``: small-text 1.4.1's function, computed by
    :func:`~al_engine.query.farthest_first.farthest_first`.

    Parameters
    ----------
    x : np.ndarray
        Row vectors.
    indices_unlabeled, indices_labeled : np.ndarray
        Rows of ``x`` to choose from, resp. that are covered already.
    n : int
        Size of the coreset, at most ``len(x)``.
    distance_metric : {"cosine", "euclidean"}, default="cosine"
    batch_size : int or None, default=100
        Rows per block of the distance computation (None: 64 MiB blocks); no effect on the
        result.
    normalized : bool, default=False
        small-text's hint that ``x`` is L2-normalized; the cosine distance normalizes
        either way (a no-op on normalized rows).

    Returns
    -------
    np.ndarray
        ``n`` positions into ``indices_unlabeled``, in pick order (small-text returns these;
        they are the rows of ``x`` when ``indices_unlabeled`` is ``arange``, as in
        :meth:`GreedyCoreset.sample`). small-text allows ``n`` up to ``len(x)``: if ``n``
        exceeds the unlabeled rows, all of them come first and position 0 fills the rest
        (small-text's result), with a ``UserWarning``.

    Raises
    ------
    ValueError
        ``Invalid distance metric: ...``; ``n > len(x)``; no unlabeled row.
    """
    metric = check_metric(distance_metric)
    x = np.asarray(x)
    n = _check_coreset_size(x.shape[0], n)
    unl = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
    lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
    if unl.size == 0:
        raise ValueError("indices_unlabeled is empty: there is nothing to choose from")
    x_u, x_l = take_rows(x, unl), take_rows(x, lab)
    if metric == "cosine":
        x_u, x_l = l2_normalize(x_u), l2_normalize(x_l)
    picks = farthest_first(x_u, x_l, min(n, unl.size), metric,
                           check_positive_int(batch_size, "batch_size", allow_none=True))
    if n > unl.size:
        warnings.warn(f"greedy_coreset: n={n} exceeds the {unl.size} unlabeled rows; the "
                      f"last {n - unl.size} entries repeat position 0", UserWarning, stacklevel=2)
        picks = np.concatenate([picks, np.zeros(n - unl.size, dtype=np.int64)])
    return picks


class GreedyCoreset(EmbeddingBasedQueryStrategy):
    r"""Selects a greedy coreset [SS17]_ (farthest-first traversal) of the unlabeled
    embeddings, starting from the labeled ones.

    Same selection as small-text 1.4.1's ``GreedyCoreset`` on the same embeddings (up to
    float32 rounding of near-exact ties), but with the min-distance vector maintained
    incrementally instead of recomputing all distances for every pick. Differences: works
    with an empty labeled set (first pick = the unlabeled row closest to the mean; small-text
    raises), ``batch_size`` is honoured (small-text ignores it), and ``query`` runs the
    traversal even when ``n`` is the whole pool (small-text returns the pool unordered).
    As small-text, a metric other than ``"cosine"`` (including the default) warns that the
    default changed in small-text 1.2.0.

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

    embed_with_proba = False

    def __init__(self, distance_metric: str = "euclidean", normalize: bool = True,
                 batch_size: int | None = None, embed_kwargs: dict | None = None):
        self.distance_metric = check_metric(distance_metric)
        if distance_metric != "cosine":
            warnings.warn(METRIC_WARNING, UserWarning, stacklevel=2)
        self.normalize = normalize
        self.batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        self.embed_kwargs = embed_kwargs

    def _split(self, embeddings, indices_unlabeled, indices_labeled):
        emb = as_float_matrix(embeddings, np.shape(embeddings)[0], "embeddings")
        if self.normalize or self.distance_metric == "cosine":
            emb = l2_normalize(emb)
        return take_rows(emb, indices_unlabeled), take_rows(emb, indices_labeled)

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None) -> np.ndarray:
        x_u, x_l = self._split(embeddings, indices_unlabeled, indices_labeled)
        return farthest_first(x_u, x_l, n, self.distance_metric, self.batch_size)

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y,
             n: int | None = None) -> np.ndarray:
        """Every unlabeled position: the greedy batch of size ``n`` (default 10) first, then
        the rest by decreasing distance to the labeled rows and that batch (the coreset
        criterion frozen after the batch; ties by position)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        head_n = resolve_rank_n(n, unl.size)
        emb = self._embed(clf, dataset[np.concatenate([unl, lab])], None, self.embed_kwargs)[0]
        x_u, x_l = self._split(emb, np.arange(unl.size), np.arange(unl.size, emb.shape[0]))
        picks, dist = farthest_first(x_u, x_l, head_n, self.distance_metric, self.batch_size,
                                     return_min_distances=True)
        self.min_distances_ = dist
        rest = np.flatnonzero(np.isfinite(dist))
        rest = rest[np.argsort(-dist[rest], kind="stable")]
        return unl[np.concatenate([picks, rest])]


def lightweight_coreset_proba(x: np.ndarray, x_mean: np.ndarray | None = None,
                              proba: np.ndarray | None = None) -> np.ndarray:
    r"""Sampling distribution of the lightweight coreset [BLK18]_ (small-text's variant).

    :math:`q_i = \frac{1}{2} p_i + \frac{1}{2} \frac{d_i^2}{\sum_j d_j^2}` with
    :math:`d_i = \arccos(\cos(x_i, \bar x)) / \pi` the angular distance of row :math:`i` to
    ``x_mean`` :math:`\bar x` (default: the mean of the rows) and :math:`p` the normalized
    ``proba`` (default: uniform, :math:`1/|X|`). If every :math:`d_i = 0` the distance half is
    uniform too.

    .. [BLK18] O. Bachem, M. Lucic and A. Krause. Scalable k-means clustering via
       lightweight coresets. KDD 2018.
    """
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0) if x_mean is None else np.asarray(x_mean, dtype=np.float32)
    # an all-zero row has no direction; it stays zero after normalizing (cosine 0)
    sim = (l2_normalize(x) @ l2_normalize(mean.reshape(1, -1)).T)[:, 0].astype(np.float64)
    d2 = np.square(np.arccos(np.clip(sim, -1.0, 1.0)) / np.pi)
    total = d2.sum()
    uniform = np.full(x.shape[0], 1.0 / x.shape[0])
    dist_part = d2 / total if total > 0 and np.isfinite(total) else uniform
    if proba is None:
        base = uniform
    else:
        base = np.asarray(proba, dtype=np.float64).reshape(-1)
        if base.shape[0] != x.shape[0] or (base < 0).any() or not base.sum() > 0:
            raise ValueError(f"proba must hold {x.shape[0]} non-negative weights, not all zero")
        base = base / base.sum()
    q = 0.5 * base + 0.5 * dist_part
    return q / q.sum()


def _weighted_order(q: np.ndarray, seed, n: int | None = None) -> np.ndarray:
    """The first ``n`` (default all) positions of a weighted random permutation with
    probabilities ``q``: Efraimidis-Spirakis keys :math:`\\log(u_i) / q_i`, largest first."""
    u = make_rng(seed).random(q.size)
    with np.errstate(divide="ignore"):
        keys = np.log1p(-u) / q
    return top_n(keys, q.size if n is None else n, lower_is_better=False)


def lightweight_coreset(x, x_mean, n: int, normalized: bool = False, proba=None,
                        seed=None) -> np.ndarray:
    """A lightweight coreset [BLK18]_ of size ``n``: small-text 1.4.1's function.

    ``n`` rows drawn without replacement with the probabilities of
    :func:`lightweight_coreset_proba` (angular distance to ``x_mean``, mixed half and half
    with ``proba`` or the uniform distribution). ``normalized`` is small-text's hint that ``x``
    is L2-normalized; the angular distance does not depend on it. ``seed`` (int, Generator or
    None) seeds the draw (small-text uses the global ``np.random``).

    Returns
    -------
    np.ndarray
        ``n`` distinct positions into ``x``.

    Raises
    ------
    ValueError
        If ``n`` exceeds ``len(x)``.
    """
    x = np.asarray(x)
    n = _check_coreset_size(x.shape[0], n)
    return _weighted_order(lightweight_coreset_proba(x, x_mean, proba), check_seed(seed), n)


class LightweightCoreset(EmbeddingBasedQueryStrategy):
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

    Attributes
    ----------
    proba_ : np.ndarray
        The sampling distribution of the last call, aligned with the unlabeled rows.
    """

    embed_with_proba = False

    def __init__(self, normalize: bool = True, seed=None, embed_kwargs: dict | None = None):
        self.normalize = normalize
        self.seed = check_seed(seed)
        self.embed_kwargs = embed_kwargs

    def _order(self, x_unlabeled, n: int | None = None) -> np.ndarray:
        self.proba_ = lightweight_coreset_proba(x_unlabeled)
        return _weighted_order(self.proba_, self.seed, n)

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None) -> np.ndarray:
        x_u = take_rows(as_float_matrix(embeddings, np.shape(embeddings)[0], "embeddings"),
                        indices_unlabeled)
        return self._order(x_u, _check_coreset_size(x_u.shape[0], n))

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """The whole weighted random permutation (``query(n)`` is its first ``n``)."""
        self._check_label_mode(dataset, y)
        unl = check_pool(indices_unlabeled)
        return unl[self._order(self._embed(clf, dataset[unl], None, self.embed_kwargs)[0])]
