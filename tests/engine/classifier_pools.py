"""Every registered classifier, built tiny and fitted on a small text pool, for the
registry-wide classifier contract and strategy x classifier compatibility suites.

Torch classifiers are built small: KimCNN with a few filters; the transformer, SetFit and the
sentence-embedding classifier on the 2-layer BERT of ``tests/neural/conftest.py``, built from
a config (the ``tiny_model_path`` fixture of ``tests/engine/conftest.py``). Without torch
they are skipped with the reason printed. Fitted classifiers are cached per (name, label
mode): the suites query the same ones many times.
"""
from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.registry import accepted_params, classifier_traits, make_classifier
from tests.engine.conftest import Pool, make_pool

HAVE_TORCH = all(find_spec(m) is not None for m in ("torch", "transformers"))

#: Constructor parameters that keep each classifier small and fast on CPU.
TINY_PARAMS: dict[str, dict] = {
    "kimcnn": {"embed_dim": 8, "num_kernels": 4, "kernel_heights": (2, 3), "num_epochs": 2,
               "mini_batch_size": 16},
    "transformer": {"num_epochs": 1, "mini_batch_size": 16},
    "setfit": {"num_iterations": 1, "mini_batch_size": 16},
}
N_ROWS, N_LABELED, NUM_CLASSES = 40, 12, 3
_VOCAB = np.array(["apple", "banana", "car", "truck", "red", "blue", "the", "a", "very", "on"])
_FITTED: dict = {}


def classifier_params(name: str, model_path: str | None) -> dict:
    """The tiny parameters of ``name``, with the local ``model_path`` where it takes one."""
    params = dict(TINY_PARAMS.get(name, {}))
    accepted = accepted_params("classifier", name)
    if "model_path" in accepted:
        params["model_path"] = model_path
    if "device" in accepted:
        params["device"] = "cpu"
    return params


def skip_without_torch(name: str) -> None:
    if classifier_traits(name)["needs_torch"] and not HAVE_TORCH:
        pytest.skip(f"{name} needs torch, which is not installed")


def build(name: str, model_path: str | None, multi_label: bool = False, **overrides):
    """A fresh, unfitted, tiny ``name``."""
    skip_without_torch(name)
    return make_classifier(name, num_classes=NUM_CLASSES, multi_label=multi_label,
                           **{**classifier_params(name, model_path), **overrides})


def text_pool(multi_label: bool = False) -> Pool:
    """The engine's standard pool (:func:`tests.engine.conftest.make_pool`) with texts."""
    pool = make_pool(N_ROWS, N_LABELED, NUM_CLASSES, multi_label=multi_label)
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(_VOCAB, size=5)) for _ in range(N_ROWS)]
    ds = pool.dataset
    with_texts = Dataset(x=ds.x, y=ds.y, texts=texts, multi_label=ds.multi_label,
                         labeled=ds.labeled_mask if ds.multi_label else None)
    return Pool(with_texts, pool.indices_labeled, pool.clf)


def fitted_pool(name: str, model_path: str | None, multi_label: bool = False) -> Pool:
    """:func:`text_pool` featurized by, and with, a tiny ``name`` fitted on its labeled rows."""
    key = (name, multi_label)
    if key not in _FITTED:
        clf = build(name, model_path, multi_label=multi_label)
        pool = text_pool(multi_label)
        featurized = clf.featurize(pool.dataset)
        clf.fit(featurized[pool.indices_labeled])
        _FITTED[key] = Pool(featurized, pool.indices_labeled, clf)
    return _FITTED[key]
