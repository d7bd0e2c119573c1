"""Sentence embeddings of a project's tasks, filled in the background of the rounds.

Embedding a pool takes minutes (MiniLM on 2 CPU cores: ~200 short texts/s, ~40 long ones/s,
so ~1 min for 10k tweets and ~10 min for 100k); a round that embedded every text before
ranking would hold the queue that long. So with a classifier on sentence embeddings
(``embedding_logistic_regression``) a round first asks how many of the pool's texts are
embedded already (the per-text cache under ``MODEL_DIR/embeddings``); until all are, it
trains on TF-IDF (:data:`FALLBACK_CLASSIFIER`) and, after its push, embeds missing texts a
chunk at a time for at most :data:`FILL_BUDGET_S` seconds, while no newer round is waiting or
the next round could not start yet anyway (``AL_MIN_ROUND_INTERVAL``), and asks for another
round. The round after the last chunk trains on the
embeddings. Progress is the round record's ``features`` field (``/status``, dashboard).
"""
from __future__ import annotations

import time
from typing import Callable

#: trained on while embeddings are incomplete (TF-IDF + ConfidenceEnhancedLinearSVC)
FALLBACK_CLASSIFIER = "linear_svc"
#: texts encoded between two checks for a newer round
CHUNK = 64
#: seconds of embedding per round at most
FILL_BUDGET_S = 20.0


def embedding_featurizer(clf):
    """The classifier's sentence-embedding featurizer, or None for any other classifier."""
    featurizer = getattr(clf, "featurizer", None)
    return featurizer if hasattr(featurizer, "missing") and hasattr(featurizer, "embed") else None


def progress(featurizer, texts: list[str]) -> dict:
    """``{"embedded", "total"}``: distinct texts of the pool with a cached embedding."""
    if not featurizer.is_fitted:
        featurizer.fit()
    missing = len(featurizer.missing(texts))
    total = len(set(texts))
    return {"embedded": total - missing, "total": total}


def fill(featurizer, texts: list[str], keep_going: Callable[[], bool],
         budget_s: float | None = None) -> dict:
    """Embed missing texts, :data:`CHUNK` at a time, while ``keep_going()`` and within
    ``budget_s`` (default :data:`FILL_BUDGET_S`); save the cache once. Returns
    ``{"encoded", "seconds", "embedded", "total"}``."""
    budget_s = FILL_BUDGET_S if budget_s is None else budget_s
    if not featurizer.is_fitted:
        featurizer.fit()
    t0 = time.perf_counter()
    todo = featurizer.missing(texts)
    encoded = 0
    try:
        while todo and time.perf_counter() - t0 < budget_s and keep_going():
            chunk, todo = todo[:CHUNK], todo[CHUNK:]
            encoded += featurizer.embed(chunk, save=False)
    finally:
        featurizer.save_cache()
    total = len(set(texts))
    return {"encoded": encoded, "seconds": round(time.perf_counter() - t0, 3),
            "embedded": total - len(todo), "total": total}
