"""The classifier contract, checked for EVERY registered classifier (scikit-learn's
``check_estimator`` in spirit).

The suite is parametrized over ``al_engine.registry.available("classifier")``: a new
classifier is picked up by registering it. Each is built tiny (``classifier_pools.py``);
torch classifiers are skipped, with the reason, when torch is not installed.
"""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.classifiers.base import TRAITS, Classifier
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError, NotFittedError
from al_engine.registry import (CHEAP_CLASSIFIERS, TORCH_CLASSIFIERS, available, classifier_class,
                                classifier_traits, make_classifier)
from tests.engine.classifier_pools import N_ROWS, NUM_CLASSES, build, fitted_pool, text_pool

NAMES = available("classifier")


@pytest.mark.parametrize("name", NAMES)
def test_is_a_classifier_whose_traits_the_registry_reads(name, tiny_model_path):
    clf = build(name, tiny_model_path)
    assert isinstance(clf, Classifier) and isinstance(clf, classifier_class(name))
    traits = classifier_traits(name)
    assert set(traits) == set(TRAITS)
    assert traits == {t: getattr(clf, t) for t in TRAITS}
    assert all(isinstance(v, bool) for v in traits.values())
    assert (name in TORCH_CLASSIFIERS) == traits["needs_torch"]
    assert (name in CHEAP_CLASSIFIERS) == traits["cheap_to_refit"]
    assert clf.num_classes == NUM_CLASSES and clf.multi_label is False
    assert type(clf).__name__ in repr(clf)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_num_classes_is_named(name, bad):
    with pytest.raises(InvalidParameterError, match="num_classes"):
        make_classifier(name, num_classes=bad)


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_predict_raises_not_fitted(name, tiny_model_path):
    clf = build(name, tiny_model_path)
    ds = clf.featurize(text_pool().dataset)
    with pytest.raises(NotFittedError):
        clf.predict_proba(ds)


@pytest.mark.parametrize("name", NAMES)
def test_featurize_keeps_rows_and_labels(name, tiny_model_path):
    pool = text_pool()
    featurized = build(name, tiny_model_path).featurize(pool.dataset)
    assert isinstance(featurized, Dataset) and len(featurized) == N_ROWS
    np.testing.assert_array_equal(featurized.y, pool.dataset.y)


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_proba_predict_and_embed_shapes(name, multi_label, tiny_model_path):
    pool = fitted_pool(name, tiny_model_path, multi_label)
    clf, ds = pool.clf, pool.dataset
    proba = clf.predict_proba(ds)
    assert proba.shape == (N_ROWS, NUM_CLASSES) and np.all((proba >= 0) & (proba <= 1))
    pred, proba2 = clf.predict(ds, return_proba=True)
    np.testing.assert_allclose(proba2, proba)
    if multi_label:
        assert sp.issparse(pred) and pred.shape == (N_ROWS, NUM_CLASSES)
    else:
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    emb, proba3 = clf.embed(ds, return_proba=True)
    assert emb.ndim == 2 and emb.shape[0] == N_ROWS and np.all(np.isfinite(emb))
    np.testing.assert_allclose(proba3, proba)


@pytest.mark.parametrize("name", NAMES)
def test_subsets_get_the_rows_they_hold(name, tiny_model_path):
    pool = fitted_pool(name, tiny_model_path)
    idx = np.array([5, 0, 17])
    np.testing.assert_allclose(pool.clf.predict_proba(pool.dataset[idx]),
                               pool.clf.predict_proba(pool.dataset)[idx], atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_label_mode_mismatch_raises(name, tiny_model_path):
    multi = text_pool(multi_label=True)
    clf = build(name, tiny_model_path)
    ds = clf.featurize(multi.dataset)
    with pytest.raises(MultiLabelNotSupportedError):
        clf.fit(ds[multi.indices_labeled])


@pytest.mark.parametrize("name", NAMES)
def test_fit_is_deterministic_and_leaves_the_training_set_alone(name, tiny_model_path):
    pool = fitted_pool(name, tiny_model_path)
    train = pool.dataset[pool.indices_labeled]
    before = (train.y.copy(), list(train.texts))
    again = build(name, tiny_model_path)
    again.featurize(pool.dataset)
    assert again.fit(train) is again
    np.testing.assert_allclose(again.predict_proba(pool.dataset),
                               pool.clf.predict_proba(pool.dataset), atol=1e-6)
    np.testing.assert_array_equal(train.y, before[0])
    assert list(train.texts) == before[1]


@pytest.mark.parametrize("name", NAMES)
def test_pickles(name, tiny_model_path):
    pool = fitted_pool(name, tiny_model_path)
    copy = pickle.loads(pickle.dumps(pool.clf))
    np.testing.assert_allclose(copy.predict_proba(pool.dataset),
                               pool.clf.predict_proba(pool.dataset), atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES
                                  if classifier_traits(n)["supports_dropout_sampling"]])
def test_dropout_sampling_trait_means_monte_carlo_samples(name, tiny_model_path):
    pool = fitted_pool(name, tiny_model_path)
    samples = pool.clf.predict_proba(pool.dataset[:6], dropout_sampling=3)
    assert samples.shape == (6, 3, NUM_CLASSES)


@pytest.mark.parametrize("name", [n for n in NAMES if classifier_traits(n)["supports_gradients"]])
def test_gradient_trait_means_the_torch_model_protocol(name, tiny_model_path):
    clf = fitted_pool(name, tiny_model_path).clf
    for attr in ("model_", "tensorize", "forward", "head", "input_embedding", "token_mask"):
        assert getattr(clf, attr, None) is not None, attr


@pytest.mark.parametrize("name", [n for n in NAMES if classifier_traits(n)["reads_texts"]])
def test_text_readers_need_texts(name, tiny_model_path):
    with pytest.raises(ValueError, match="texts"):
        build(name, tiny_model_path).featurize(Dataset(x=np.zeros((2, 3))))


def test_reading_traits_imports_no_torch():
    code = ("import sys\n"
            "from al_engine import registry\n"
            "[registry.classifier_traits(n) for n in registry.available('classifier')]\n"
            "assert registry.TORCH_CLASSIFIERS and registry.CHEAP_CLASSIFIERS\n"
            "registry.check_compatible('bald', 'kimcnn')\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') "
            "if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
