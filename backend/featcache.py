"""Features of every mirrored task, computed once per text (``<MODEL_DIR>/<project>/features.pkl``).

A round on a 100k-task project must refit only the classifier: re-fitting TF-IDF on 100k
texts takes ~14 s. So the classifier's featurizer (TF-IDF, sentence embeddings) is fitted
once on the pool and kept with the feature matrix, one row per task id; a round transforms
only new tasks and tasks whose text changed, with the fitted featurizer, and drops deleted
ones. The vocabulary (the fit) is refreshed when the pool has doubled since it was fitted
(:meth:`FeatureCache.refit_due`), by the round after it has pushed its predictions, so
annotators never wait for it. Classifiers without a featurizer (transformers, SetFit, KimCNN)
tokenize texts themselves and are not cached here.

The file is rewritten (atomically) only when rows changed; each process keeps the open cache
in memory and reloads it only when another process rewrote it.
"""
from __future__ import annotations

import copy
import os
import pickle
import threading
from typing import Any

import numpy as np
import scipy.sparse as sp

from backend.store import atomic_write_bytes

#: Refit the featurizer once the pool is this many times the size it was fitted on.
REFIT_GROWTH = 2.0


def _rows(x, idx: np.ndarray):
    return x[idx] if sp.issparse(x) else np.asarray(x)[idx]


def _stack(parts: list):
    return sp.vstack(parts, format="csr") if sp.issparse(parts[0]) else np.vstack(parts)


def _transform(featurizer, texts: list[str]):
    return featurizer.transform(texts)


class FeatureCache:
    """The cached features of one project. Open with :meth:`open`."""

    _cache: dict[str, tuple[tuple, "FeatureCache"]] = {}
    _cache_lock = threading.Lock()

    def __init__(self, path: str):
        self.path = path
        self.spec: Any = None
        self.featurizer = None
        self.ids = np.zeros(0, dtype=np.int64)
        self.x = None
        self.fitted_on = 0

    @classmethod
    def open(cls, path: str) -> "FeatureCache":
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        with cls._cache_lock:
            hit = cls._cache.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        cache = cls(path)
        if stamp is not None:
            try:
                with open(path, "rb") as fh:
                    state = pickle.load(fh)
                cache.spec, cache.featurizer = state["spec"], state["featurizer"]
                cache.ids, cache.x, cache.fitted_on = state["ids"], state["x"], state["fitted_on"]
            except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
                cache = cls(path)
        with cls._cache_lock:
            cls._cache[path] = (stamp, cache)
        return cache

    def _save(self) -> None:
        atomic_write_bytes(self.path, pickle.dumps(
            {"spec": self.spec, "featurizer": self.featurizer, "ids": self.ids, "x": self.x,
             "fitted_on": self.fitted_on}, protocol=pickle.HIGHEST_PROTOCOL))
        st = os.stat(self.path)
        with self._cache_lock:
            self._cache[self.path] = ((st.st_ino, st.st_size, st.st_mtime_ns), self)

    def refit_due(self, n: int) -> bool:
        """True when a pool of ``n`` tasks has outgrown the fitted vocabulary."""
        return self.featurizer is not None and n >= REFIT_GROWTH * max(self.fitted_on, 1)

    def fit(self, template, spec: Any, ids: np.ndarray, texts: list[str]) -> None:
        """Fit a copy of ``template`` on ``texts`` and store every row (raises ValueError when
        the texts give no features, e.g. all empty)."""
        featurizer = copy.deepcopy(template)
        x = featurizer.fit_transform(texts) if hasattr(featurizer, "fit_transform") else \
            featurizer.fit(texts).transform(texts)
        self.spec, self.featurizer = spec, featurizer
        self.ids, self.x, self.fitted_on = np.asarray(ids, dtype=np.int64), x, len(texts)
        self._save()

    def features(self, template, spec: Any, ids: np.ndarray, texts: list[str],
                 changed: set[int] = frozenset()) -> tuple[Any, Any]:
        """``(featurizer, x)`` with ``x`` aligned with ``ids`` (sorted, unique): cached rows,
        new or changed texts transformed with the fitted featurizer (fitted first when there
        is none yet or the configuration ``spec`` changed)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.featurizer is None or self.spec != spec or not len(self.ids):
            self.fit(template, spec, ids, texts)
            return self.featurizer, self.x
        pos = np.searchsorted(self.ids, ids)
        pos = np.minimum(pos, len(self.ids) - 1)
        cached = self.ids[pos] == ids
        if changed:
            cached &= ~np.isin(ids, np.fromiter(changed, dtype=np.int64, count=len(changed)))
        new = np.flatnonzero(~cached)
        if not new.size and len(ids) == len(self.ids):
            return self.featurizer, self.x
        parts, order = [], []
        if cached.any():
            parts.append(_rows(self.x, pos[cached]))
            order.append(np.flatnonzero(cached))
        if new.size:
            parts.append(_transform(self.featurizer, [texts[i] for i in new.tolist()]))
            order.append(new)
        x = _stack(parts)
        inverse = np.empty(len(ids), dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(len(ids))
        self.ids, self.x = ids, _rows(x, inverse)
        self._save()
        return self.featurizer, self.x
