"""KimCNN, TransformerBasedClassification and SetFitClassification with tiny models:
learning, determinism, multi-label, embed/proba shapes, MC dropout, pickling, errors."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.exceptions import MultiLabelNotSupportedError, NotFittedError
from al_engine.registry import make_classifier
from tests.neural.conftest import multi_label_dataset, text_dataset

NAMES = ["kimcnn", "transformer", "setfit"]


def params(name, path):
    if name == "kimcnn":
        return {"embed_dim": 16, "num_kernels": 8, "kernel_heights": (2, 3), "num_epochs": 15,
                "lr": 1e-2, "mini_batch_size": 8}
    if name == "transformer":
        return {"model_path": path, "num_epochs": 12, "lr": 1e-3, "mini_batch_size": 8}
    return {"model_path": path, "lr": 1e-3, "num_iterations": 8, "mini_batch_size": 16}


def build(name, path, **kw):
    return make_classifier(name, num_classes=3, device="cpu", **{**params(name, path), **kw})


@pytest.fixture(scope="module")
def fitted(tiny_bert_path):
    ds = text_dataset(60)
    out = {}
    for name in NAMES:
        clf = build(name, tiny_bert_path)
        clf.featurize(ds)
        out[name] = clf.fit(ds[:45])
    return ds, out


@pytest.mark.parametrize("name", NAMES)
def test_learns_word_classes_and_proba_is_a_distribution(fitted, name):
    ds, clfs = fitted
    proba = clfs[name].predict_proba(ds[45:])
    assert proba.shape == (15, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(clfs[name].predict(ds[45:]) == ds.y[45:]) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_seeded_training_is_deterministic_on_cpu(fitted, tiny_bert_path, name):
    ds, clfs = fitted
    again = build(name, tiny_bert_path)
    again.featurize(ds)
    again.fit(ds[:45])
    np.testing.assert_array_equal(again.predict_proba(ds[45:]), clfs[name].predict_proba(ds[45:]))


@pytest.mark.parametrize("name", NAMES)
def test_embed_and_return_proba(fitted, name):
    ds, clfs = fitted
    emb, proba = clfs[name].embed(ds[:7], return_proba=True)
    assert emb.ndim == 2 and emb.shape[0] == 7 and emb.dtype == np.float64
    np.testing.assert_allclose(proba, clfs[name].predict_proba(ds[:7]), atol=1e-9)
    np.testing.assert_array_equal(clfs[name].embed(ds[:7]), emb)
    pred, p2 = clfs[name].predict(ds[:7], return_proba=True)
    np.testing.assert_array_equal(pred, p2.argmax(axis=1))


@pytest.mark.parametrize("name", NAMES)
def test_mc_dropout_samples(fitted, name):
    ds, clfs = fitted
    samples = clfs[name].predict_proba(ds[:5], dropout_sampling=4)
    assert samples.shape == (5, 4, 3)
    np.testing.assert_allclose(samples.sum(axis=2), 1.0, atol=1e-9)
    assert np.ptp(samples, axis=1).max() > 0                  # dropout is really active
    np.testing.assert_array_equal(samples, clfs[name].predict_proba(ds[:5], dropout_sampling=4))
    # and switched off again afterwards
    np.testing.assert_array_equal(clfs[name].predict_proba(ds[:5]), clfs[name].predict_proba(ds[:5]))


@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip(fitted, name):
    ds, clfs = fitted
    clone = pickle.loads(pickle.dumps(clfs[name]))
    np.testing.assert_array_equal(clone.predict_proba(ds[45:]), clfs[name].predict_proba(ds[45:]))


@pytest.mark.parametrize("name", NAMES)
def test_multi_label(tiny_bert_path, name):
    ds = multi_label_dataset(48)
    extra = {"num_epochs": 25} if name != "setfit" else {}
    clf = make_classifier(name, num_classes=3, multi_label=True, device="cpu",
                          **{**params(name, tiny_bert_path), **extra})
    clf.featurize(ds)
    clf.fit(ds[:36])
    proba = clf.predict_proba(ds[36:])
    assert proba.shape == (12, 3) and ((proba >= 0) & (proba <= 1)).all()
    pred = clf.predict(ds[36:])
    assert pred.shape == (12, 3)
    assert np.mean(pred.toarray() == ds.y[36:].toarray()) >= 0.75


@pytest.mark.parametrize("name", NAMES)
def test_errors(tiny_bert_path, name):
    clf = build(name, tiny_bert_path)
    ds = text_dataset(9)
    with pytest.raises(NotFittedError):
        clf.predict_proba(ds)
    with pytest.raises(ValueError, match="unlabeled"):
        clf.fit(text_dataset(9, labeled=False))
    with pytest.raises(MultiLabelNotSupportedError):
        clf.fit(multi_label_dataset(9))
    with pytest.raises(ValueError, match="texts"):
        clf.fit(Dataset(x=np.zeros((3, 2)), y=np.array([0, 1, 2])))
    with pytest.raises(ValueError, match="num_epochs|num_iterations"):
        make_classifier(name, num_classes=3, **({"num_iterations": 0} if name == "setfit"
                                                 else {"num_epochs": 0}))


def test_weights_change_the_model(fitted, tiny_bert_path):
    ds, clfs = fitted
    w = np.ones(45)
    w[ds.y[:45] == 0] = 0.0          # class 0 carries no weight: never learned
    clf = build("kimcnn", tiny_bert_path)
    clf.featurize(ds)
    clf.fit(ds[:45], weights=w)
    assert (clf.predict(ds[45:]) != 0).all()


def test_building_does_not_import_torch():
    code = ("import sys\nfrom al_engine.registry import make_classifier\n"
            "for n in ('kimcnn', 'transformer', 'setfit', 'embedding_logistic_regression'):\n"
            "    make_classifier(n, num_classes=3)\n"
            "import al_engine.query.gradient, al_engine.query.bayesian\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
