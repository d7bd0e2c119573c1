"""Discriminative Active Learning (DAL) [GS19]_.

A binary classifier learns to tell the labeled pool (class 0) from the unlabeled pool
(class 1) on ``clf.embed(dataset)``; the unlabeled instances it is most sure are
"unlabeled" -- the ones least like anything labeled -- are queried. As in small-text, the
query of ``n`` is split into ``num_iterations`` sub-batches: after each one the chosen
instances count as labeled and the discriminator is retrained.

.. [GS19] D. Gissin and S. Shalev-Shwartz. Discriminative active learning.
   arXiv:1907.06347, 2019.
"""
from __future__ import annotations

import numpy as np

from al_engine._param_validation import POSITIVE_INT, SEED, Options, validate_params
from al_engine.query._checks import check_pool, make_rng
from al_engine.query.base import QueryStrategy, check_query_args, top_n


def query_sizes(num_iterations: int, n: int) -> list[int]:
    """small-text's split of ``n`` into ``num_iterations`` sub-batches: ``n // k`` each, the
    last one taking the remainder (``num_iterations`` is capped at ``n``)."""
    k = min(num_iterations, n)
    size = n // k
    return [size] * (k - 1) + [n - (k - 1) * size]


def _linear_decision(emb, rows, w, b) -> np.ndarray:
    """``emb[rows] @ w + b`` in the dtype of ``emb`` (float32 embeddings stay float32: no
    float64 copy of the pool). The product is taken over the whole matrix, which avoids
    materializing ``emb[rows]`` (the pool is nearly all of it)."""
    if hasattr(emb, "tocsr"):
        return np.asarray(emb[rows] @ w).ravel() + b
    dtype = emb.dtype if np.issubdtype(emb.dtype, np.floating) else np.float64
    return (np.asarray(emb, dtype=dtype) @ w.astype(dtype))[rows].astype(np.float64) + b


def _default_discriminator(random_state: int):
    from sklearn.linear_model import LogisticRegression
    # warm_start: each sub-batch's fit starts from the previous optimum (the training sets
    # overlap almost entirely), which halves the solver's iterations; the L2-regularized
    # objective is strictly convex, so the optimum is the same as from a cold start.
    return LogisticRegression(max_iter=1000, random_state=random_state, warm_start=True)


class DiscriminativeActiveLearning(QueryStrategy):
    r"""Queries the unlabeled instances a labeled-vs-unlabeled classifier most confidently
    puts in the unlabeled pool [GS19]_.

    For each sub-batch of size :math:`q` (see :func:`query_sizes`): draw
    :math:`m = \min(|L| \cdot \text{unlabeled\_factor}, |U|)` unlabeled instances, fit the
    discriminator on them (target 1) and the labeled ones (target 0), score every remaining
    unlabeled instance with :math:`P(\text{unlabeled} \mid x)` and take the :math:`q`
    highest (ties by position); then move them to the labeled side and repeat.

    Differences from small-text 1.4.1, all deliberate:

    * features are ``clf.embed(dataset)``, computed once per call (small-text fits its
      factory's classifier on the dataset itself, as we do, on ``dataset.x``, when ``clf``
      has no ``embed``); the default discriminator is a seeded scikit-learn
      ``LogisticRegression``, fitted without ``sample_weight`` and warm-started from the
      previous sub-batch's solution (same optimum, about half the solver steps);
    * ``classifier_factory`` may be None, a scikit-learn estimator (cloned per sub-batch)
      or an object with ``new()`` whose classifiers follow our/small-text's ``fit(dataset)``
      / ``predict_proba(dataset)`` (they get a :class:`~al_engine.data.Dataset` of the
      embeddings);
    * ``num_iterations > n`` uses ``n`` sub-batches of 1 instead of raising;
    * the subsample is seeded (``seed``) instead of drawn from ``np.random``;
    * the result is ordered: sub-batches in order, each best first (small-text's
      ``argpartition`` leaves each sub-batch unordered), and ``n == len(pool)`` still runs
      the procedure, so the order is meaningful;
    * it works for multi-label data too (the discriminator never looks at the labels).

    :meth:`rank` orders the whole pool by one discriminator (one sub-batch), i.e.
    :math:`P(\text{unlabeled} \mid x)` of a model trained as for the first sub-batch.

    Parameters
    ----------
    classifier_factory : None, scikit-learn estimator or factory with ``new()``
        The discriminator; None means ``LogisticRegression(max_iter=1000)``.
    num_iterations : int, default=10
        Number of sub-batches (and discriminator fits) per query.
    unlabeled_factor : int, default=10
        Ratio of unlabeled to labeled training instances of the discriminator.
    pbar : 'tqdm' or None, default=None
        Show a progress bar over the sub-batches (needs ``tqdm``).
    seed : int, numpy.random.Generator or None, default=None
        Seed of the unlabeled subsample and of the default discriminator.

    Attributes
    ----------
    clf_ : object
        The last discriminator fitted.
    """

    supports_multi_label = True
    supports_single_label = True

    LABEL_LABELED_POOL = 0
    LABEL_UNLABELED_POOL = 1

    _parameter_constraints = {"num_iterations": POSITIVE_INT, "unlabeled_factor": POSITIVE_INT,
                              "pbar": [None, Options(["tqdm"])], "seed": SEED}

    def __init__(self, classifier_factory=None, num_iterations: int = 10,
                 unlabeled_factor: int = 10, pbar=None, seed=None):
        validate_params(self._parameter_constraints, locals())
        if classifier_factory is not None and not (
                callable(getattr(classifier_factory, "new", None))
                or callable(getattr(classifier_factory, "fit", None))):
            raise ValueError("classifier_factory must be None, a scikit-learn estimator or an "
                             f"object with a new() method, got {classifier_factory!r}")
        self.classifier_factory = classifier_factory
        self.num_iterations = num_iterations
        self.unlabeled_factor = unlabeled_factor
        self.pbar = pbar
        self.seed = seed
        self.clf_ = None

    # ------------------------------------------------------------------ discriminator
    def _fit(self, x, target, rng):
        factory = self.classifier_factory
        if factory is None:
            # within one call clf_ is the previous sub-batch's model: warm-start it
            model = self.clf_ if self.clf_ is not None else \
                _default_discriminator(int(rng.integers(2**31 - 1)))
            return model.fit(x, target)
        if callable(getattr(factory, "new", None)):
            from al_engine.data import Dataset
            return factory.new().fit(Dataset(x=x, y=target))
        from sklearn.base import clone
        return clone(factory).fit(x, target)

    def _proba_unlabeled(self, model, emb, rows) -> np.ndarray:
        """P(unlabeled | x) for ``emb[rows]``, or a monotone transform of it."""
        coef = getattr(model, "coef_", None)
        if self.classifier_factory is None and coef is not None:
            # Linear model: rank by the decision value w.x + b (sigmoid is monotone);
            # computing it on the whole matrix avoids copying emb[rows].
            return _linear_decision(emb, rows, coef.ravel(), float(model.intercept_[0]))
        if callable(getattr(self.classifier_factory, "new", None)):
            from al_engine.data import Dataset
            proba = model.predict_proba(Dataset(x=emb[rows]))
            return np.asarray(proba)[:, self.LABEL_UNLABELED_POOL]
        proba = model.predict_proba(emb[rows])
        column = int(np.flatnonzero(model.classes_ == self.LABEL_UNLABELED_POOL)[0])
        return np.asarray(proba)[:, column]

    def _select(self, emb, pool, labeled, sizes, rng) -> np.ndarray:
        pool = pool.copy()
        num_labeled = labeled.size
        if num_labeled == 0:
            raise ValueError("DiscriminativeActiveLearning needs at least one labeled "
                             "instance (indices_labeled is empty)")
        selected = []
        self.clf_ = None
        steps = sizes
        if self.pbar == "tqdm":
            from tqdm.auto import tqdm
            steps = tqdm(sizes)
        for q in steps:
            m = min(num_labeled * self.unlabeled_factor, pool.size)
            sub = rng.choice(pool, m, replace=False)
            train_rows = np.concatenate([sub, labeled] + selected)
            target = np.repeat([self.LABEL_UNLABELED_POOL, self.LABEL_LABELED_POOL],
                               [m, train_rows.size - m])
            self.clf_ = self._fit(emb[train_rows], target, rng)
            scores = self._proba_unlabeled(self.clf_, emb, pool)
            picked = top_n(np.asarray(scores, dtype=np.float64), q, lower_is_better=False)
            selected.append(pool[picked])
            num_labeled += q
            pool = np.delete(pool, picked)
        return np.concatenate(selected)

    @staticmethod
    def _check_in_range(dataset, *index_arrays) -> None:
        n = len(dataset)
        for idx in index_arrays:
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"indices out of range for a dataset of {n} rows: "
                                 f"min {idx.min()}, max {idx.max()}")

    def _embed(self, clf, dataset):
        # a classifier without embed (e.g. a bare estimator, as small-text allows): the
        # dataset's own features, which is what small-text's discriminator is trained on
        emb = clf.embed(dataset) if callable(getattr(clf, "embed", None)) else dataset.x
        if isinstance(emb, tuple):
            emb = emb[0]
        if not hasattr(emb, "shape") or len(emb.shape) != 2 or emb.shape[0] != len(dataset):
            raise ValueError(f"clf.embed(dataset) must return shape (len(dataset)="
                             f"{len(dataset)}, d), got {getattr(emb, 'shape', type(emb))}")
        return emb if hasattr(emb, "tocsr") else np.asarray(emb)

    # ------------------------------------------------------------------ API
    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        indices_unlabeled = check_query_args(indices_unlabeled, n)
        indices_labeled = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        self._check_in_range(dataset, indices_unlabeled, indices_labeled)
        emb = self._embed(clf, dataset)
        return self._select(emb, indices_unlabeled, indices_labeled,
                            query_sizes(self.num_iterations, n), make_rng(self.seed))

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """The whole pool by :math:`P(\\text{unlabeled} \\mid x)` of one discriminator."""
        indices_unlabeled = check_pool(indices_unlabeled)
        indices_labeled = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        emb = self._embed(clf, dataset)
        return self._select(emb, indices_unlabeled, indices_labeled,
                            [int(indices_unlabeled.size)], make_rng(self.seed))
