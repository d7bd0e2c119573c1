"""The base of the strategies that select from document embeddings (small-text's
``EmbeddingBasedQueryStrategy``): GreedyCoreset, LightweightCoreset, EmbeddingKMeans and
ContrastiveActiveLearning.

:meth:`EmbeddingBasedQueryStrategy.query` embeds ``dataset[indices_unlabeled ++
indices_labeled]`` once (or takes precomputed ``embeddings`` of those rows) and hands them to
the subclass's :meth:`~EmbeddingBasedQueryStrategy.sample`, exactly as small-text 1.4.1 does,
so a small-text subclass that only implements ``sample`` works unchanged.
"""
from __future__ import annotations

from abc import abstractmethod

import numpy as np

from al_engine.query._geometry import call_embed, check_embeddings
from al_engine.query.base import QueryStrategy, check_query_args


class EmbeddingBasedQueryStrategy(QueryStrategy):
    """A strategy that selects from the embeddings of the unlabeled and labeled rows.

    Subclasses implement :meth:`sample`. ``embed_with_proba`` (default True, as small-text)
    asks ``clf.embed`` for the class probabilities too; strategies that never use them set
    it to False so that the classifier does not compute them. Subclasses may set
    ``embed_kwargs`` (a dict or None) in their constructor: it is merged under the
    ``embed_kwargs`` of each :meth:`query` call.
    """

    supports_multi_label = True
    embed_with_proba: bool = True
    embed_kwargs: dict | None = None

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10,
              pbar="tqdm", embeddings=None, embed_kwargs: dict | None = None) -> np.ndarray:
        """Return ``n`` positions (into ``dataset``) from ``indices_unlabeled``.

        Parameters
        ----------
        clf, dataset, indices_unlabeled, indices_labeled, y, n
            As for every strategy.
        pbar : 'tqdm' or None, default='tqdm'
            Passed to ``clf.embed`` (small-text's progress bar argument).
        embeddings : array-like of shape (len(indices_unlabeled) + len(indices_labeled), d)
            or None
            Precomputed embeddings of ``dataset[concatenate([indices_unlabeled,
            indices_labeled])]`` (in that order); ``clf.embed`` is not called and no class
            probabilities are available.
        embed_kwargs : dict or None
            Further keyword arguments of ``clf.embed`` (over the constructor's).
        """
        self._check_label_mode(dataset, y)
        unl = check_query_args(indices_unlabeled, n)
        lab = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        rows = np.concatenate([unl, lab])
        subset = dataset[rows]
        if embeddings is None:
            kwargs = {**(self.embed_kwargs or {}), **(embed_kwargs or {})}
            embeddings, proba = self._embed(clf, subset, pbar, kwargs)
        else:
            embeddings, proba = check_embeddings(embeddings, rows.size, "embeddings"), None
        picks = self.sample(clf, subset, np.arange(unl.size), np.arange(unl.size, rows.size),
                            y, n, embeddings, embeddings_proba=proba)
        picks = np.asarray(picks, dtype=np.int64)
        self._on_sampled(rows, len(dataset))
        return rows[picks]

    def _embed(self, clf, subset, pbar, embed_kwargs: dict | None):
        """``(embeddings, proba or None)`` of ``subset`` as ``clf.embed`` returned them
        (checked, not converted: :meth:`sample` gets the classifier's own arrays)."""
        emb, proba = call_embed(clf, subset, self.embed_with_proba, embed_kwargs, pbar)
        return check_embeddings(emb, len(subset)), proba

    def _on_sampled(self, rows: np.ndarray, n_rows: int) -> None:
        """Called after :meth:`sample` with the dataset positions of the embedded rows (e.g. to
        re-align per-row attributes set by :meth:`sample` with ``dataset``)."""

    @abstractmethod
    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None) -> np.ndarray:
        """Select ``n`` of the unlabeled rows of ``embeddings``.

        Parameters
        ----------
        clf : Classifier
        dataset : Dataset
            The rows the embeddings belong to.
        indices_unlabeled, indices_labeled : np.ndarray
            Rows of ``embeddings`` (and ``dataset``) that are unlabeled, resp. labeled.
        y : array-like
            Labels of ``indices_labeled``.
        n : int
        embeddings : np.ndarray of shape (len(dataset), d)
        embeddings_proba : np.ndarray of shape (len(dataset), num_classes) or None

        Returns
        -------
        np.ndarray
            ``n`` positions into ``indices_unlabeled`` (small-text's contract; from
            :meth:`query` they are also rows of ``embeddings``).
        """
