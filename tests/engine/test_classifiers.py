import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from al_engine.classifiers.sklearn import (ConfidenceEnhancedLinearSVC, SklearnClassifier,
                                           SklearnClassifierFactory, make_linear_svc,
                                           make_logistic_regression)
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError, NotFittedError
from al_engine.features import TfidfFeaturizer
from al_engine.registry import make_classifier

from tests.engine.smalltext_fakes import FakeSklearnDataset

TEXTS = ["great fun film", "awful boring film", "great acting", "boring plot",
         "fun and great", "awful awful", "a great story", "boring and awful"]
LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"]


def blobs(n=60, num_classes=3, d=5, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % num_classes
    centers = rng.normal(scale=3, size=(num_classes, d))
    x = centers[y] + rng.normal(size=(n, d))
    return (sp.csr_matrix(x) if sparse else x), y


# ------------------------------------------------------------------ ConfidenceEnhancedLinearSVC
def test_cesvc_formula_binary_and_multiclass():
    for k in (2, 4):
        x, y = blobs(num_classes=k)
        clf = ConfidenceEnhancedLinearSVC(linearsvc_kwargs={"random_state": 0}).fit(x, y)
        d = clf.decision_function(x)
        proba = clf.predict_proba(x)
        if k == 2:
            np.testing.assert_allclose(proba, np.column_stack([1 - expit(d), expit(d)]), rtol=1e-12)
        else:
            np.testing.assert_allclose(proba, expit(d) / expit(d).sum(1, keepdims=True), rtol=1e-12)
        np.testing.assert_allclose(proba.sum(1), 1.0)
        pred, p2 = clf.predict(x, return_proba=True)
        np.testing.assert_array_equal(pred, proba.argmax(1))
        np.testing.assert_array_equal(clf.predict(x), LinearSVC(random_state=0).fit(x, y).predict(x))


def test_cesvc_extreme_decision_values_do_not_overflow():
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    far = np.array([[-1e6], [1e6]])  # decision values around -+1e6
    for k in (2, 3):
        y = [0, 0, 1, 1] if k == 2 else [0, 1, 2, 2]
        clf = ConfidenceEnhancedLinearSVC(linearsvc_kwargs={"random_state": 0}).fit(x, y)
        assert np.abs(clf.decision_function(far)).max() > 1e3
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflow in exp
            proba = clf.predict_proba(far)
        assert np.all(np.isfinite(proba))
        np.testing.assert_allclose(proba.sum(1), 1.0)
        if k == 2:
            np.testing.assert_allclose(proba, [[1, 0], [0, 1]], atol=1e-12)


def test_cesvc_is_a_cloneable_sklearn_estimator():
    from sklearn.base import clone
    est = ConfidenceEnhancedLinearSVC(linearsvc_kwargs={"C": 0.5})
    assert clone(est).get_params() == {"linearsvc_kwargs": {"C": 0.5}}
    with pytest.raises(NotFittedError):
        est.predict_proba(np.zeros((1, 2)))


@pytest.mark.parametrize("k,sparse", [(2, False), (2, True), (3, False), (5, True)])
def test_cesvc_equals_small_text(k, sparse):
    small_text = pytest.importorskip("small_text.classifiers", reason="small-text (the reference) not installed")
    x, y = blobs(n=80, num_classes=k, seed=k, sparse=sparse)
    kw = {"C": 0.7, "random_state": 0}
    ours = ConfidenceEnhancedLinearSVC(linearsvc_kwargs=kw).fit(x, y)
    theirs = small_text.ConfidenceEnhancedLinearSVC(linearsvc_kwargs=kw).fit(x, y)
    np.testing.assert_allclose(ours.predict_proba(x), theirs.predict_proba(x), rtol=0, atol=1e-9)
    np.testing.assert_array_equal(ours.predict(x), theirs.predict(x))


# ------------------------------------------------------------------ SklearnClassifier
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # small-text's own internals
def test_single_label_fit_predict_and_small_text_equivalence():
    small_text = pytest.importorskip("small_text", reason="small-text (the reference) not installed")
    x, y = blobs(n=90, num_classes=3, seed=4, sparse=True)
    train, test = Dataset(x=x[:60], y=y[:60]), Dataset(x=x[60:])
    ours = SklearnClassifier(LogisticRegression(random_state=0), num_classes=3).fit(train)
    theirs = small_text.SklearnClassifier(LogisticRegression(random_state=0), num_classes=3).fit(
        small_text.SklearnDataset(x[:60], y[:60], target_labels=np.arange(3)))
    ref = small_text.SklearnDataset(x[60:], np.zeros(30, dtype=int), target_labels=np.arange(3))
    np.testing.assert_allclose(ours.predict_proba(test), theirs.predict_proba(ref), atol=1e-12)
    np.testing.assert_array_equal(ours.predict(test), theirs.predict(ref))
    pred, proba = ours.predict(test, return_proba=True)
    np.testing.assert_array_equal(pred, proba.argmax(1))
    assert (pred == y[60:]).mean() > 0.9


def test_proba_has_full_width_when_classes_are_absent():
    x, y = blobs(n=40, num_classes=2, seed=1)
    y = np.where(y == 1, 3, 0)  # classes 0 and 3 of 5
    clf = SklearnClassifier(LogisticRegression(), num_classes=5).fit(Dataset(x=x, y=y))
    proba = clf.predict_proba(Dataset(x=x))
    assert proba.shape == (40, 5)
    np.testing.assert_array_equal(proba[:, [1, 2, 4]], 0)
    ref = LogisticRegression().fit(x, y).predict_proba(x)
    np.testing.assert_allclose(proba[:, [0, 3]], ref)
    assert set(clf.predict(Dataset(x=x))) <= {0, 3}


def test_one_class_training_set_predicts_it_with_probability_one():
    x = np.random.default_rng(0).normal(size=(4, 3))
    clf = make_linear_svc(num_classes=3, featurizer=None).fit(Dataset(x=x, y=[2, 2, 2, 2]))
    assert clf.estimator_ is None and clf.single_class_ == 2
    proba = clf.predict_proba(Dataset(x=x[:2]))
    np.testing.assert_array_equal(proba, [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(clf.predict(Dataset(x=x)), [2, 2, 2, 2])
    # and a later fit with two classes trains a real model
    clf.fit(Dataset(x=x, y=[0, 2, 0, 2]))
    assert clf.single_class_ is None and clf.estimator_ is not None


def test_sample_weights_are_passed():
    x, y = blobs(n=30, num_classes=2, seed=2)
    w = np.linspace(0.1, 3, 30)
    clf = SklearnClassifier(LogisticRegression(), num_classes=2).fit(Dataset(x=x, y=y), weights=w)
    ref = LogisticRegression().fit(x, y, sample_weight=w)
    np.testing.assert_allclose(clf.predict_proba(Dataset(x=x)), ref.predict_proba(x))
    unweighted = LogisticRegression().fit(x, y).predict_proba(x)
    assert not np.allclose(unweighted, ref.predict_proba(x))
    with pytest.raises(ValueError, match="weights must have shape"):
        clf.fit(Dataset(x=x, y=y), weights=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        clf.fit(Dataset(x=x, y=y), weights=-w)


def test_multi_label_one_vs_rest():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6))
    ind = np.column_stack([x[:, 0] > 0, x[:, 1] > 0.3, np.zeros(80, bool)]).astype(np.int8)
    ind[:5, 2] = 0  # label 2 never present: constant predictor, probability 0
    y = sp.csr_matrix(ind)
    clf = SklearnClassifier(LogisticRegression(), num_classes=3, multi_label=True)
    train = Dataset(x=x, y=y, multi_label=True, labeled=np.ones(80, bool))  # empty rows are answers
    clf.fit(train)
    proba = clf.predict_proba(Dataset(x=x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Label not 2 is present in all training examples"
        ref = OneVsRestClassifier(LogisticRegression()).fit(x, ind).predict_proba(x)
    np.testing.assert_allclose(proba, ref)
    assert proba.shape == (80, 3) and np.all(proba[:, 2] == 0)
    pred = clf.predict(Dataset(x=x))
    assert sp.issparse(pred)
    np.testing.assert_array_equal(pred.toarray(), (proba > 0.5).astype(int))
    assert (pred.toarray() == ind).mean() > 0.9
    # no sample weights in multi-label mode (small-text's SklearnClassifier refuses them too)
    with pytest.raises(ValueError, match="Sample weights are not supported for multi-label"):
        clf.fit(train, weights=np.ones(80))


def test_label_mode_mismatch_and_unlabeled_rows_rejected():
    x, y = blobs(n=10, num_classes=2)
    with pytest.raises(MultiLabelNotSupportedError, match="single-label"):
        SklearnClassifier(LogisticRegression(), 2, multi_label=True).fit(Dataset(x=x, y=y))
    y = y.copy()
    y[0] = -1
    with pytest.raises(ValueError, match="unlabeled rows"):
        SklearnClassifier(LogisticRegression(), 2).fit(Dataset(x=x, y=y))
    with pytest.raises(ValueError, match="num_classes=2"):
        SklearnClassifier(LogisticRegression(), 2).fit(Dataset(x=x, y=np.arange(10) % 3))


def test_not_fitted_and_empty_dataset():
    clf = make_linear_svc(num_classes=2, featurizer=None)
    with pytest.raises(NotFittedError):
        clf.predict(Dataset(x=np.zeros((2, 2))))
    x, y = blobs(n=10, num_classes=2)
    clf.fit(Dataset(x=x, y=y))
    assert clf.predict_proba(Dataset(x=np.zeros((0, 5)))).shape == (0, 2)
    assert clf.predict(Dataset(x=np.zeros((0, 5)))).shape == (0,)


# ------------------------------------------------------------------ featurizer ownership
def test_featurize_fits_once_on_the_pool_then_only_transforms():
    pool = Dataset.from_texts(TEXTS, LABELS)
    clf = make_linear_svc(num_classes=2)
    featurized = clf.featurize(pool)
    vocab = dict(clf.featurizer.vectorizer_.vocabulary_)
    assert featurized.x.shape == (8, len(vocab)) and pool.x is None
    clf.featurize(Dataset.from_texts(["brand new words"]))  # transform only
    assert clf.featurizer.vectorizer_.vocabulary_ == vocab
    clf.fit(featurized)
    # texts-only datasets are featurized on the fly with the pool's vocabulary
    test = Dataset.from_texts(["great film", "awful plot"])
    np.testing.assert_array_equal(clf.predict(test), [1, 0])  # classes: neg=0, pos=1
    np.testing.assert_allclose(clf.predict_proba(test), clf.predict_proba(clf.featurize(test)))


def test_fit_on_texts_only_fits_the_featurizer_on_the_training_texts():
    clf = make_logistic_regression(num_classes=2)
    clf.fit(Dataset.from_texts(TEXTS, LABELS))
    assert "boring" in clf.featurizer.vectorizer_.vocabulary_
    assert clf.predict(Dataset.from_texts(["boring awful"]))[0] == 0


def test_featurizer_none_uses_x_and_needs_it():
    clf = make_linear_svc(num_classes=2, featurizer=None)
    with pytest.raises(ValueError, match="no featurizer"):
        clf.fit(Dataset.from_texts(TEXTS, LABELS))
    ds = Dataset(x=np.eye(8), y=np.arange(8) % 2)
    assert clf.featurize(ds) is ds


def test_embed_returns_dense_features_and_proba():
    pool = Dataset.from_texts(TEXTS, LABELS)
    clf = make_linear_svc(num_classes=2)
    pool = clf.featurize(pool)
    clf.fit(pool)
    emb = clf.embed(pool)
    assert isinstance(emb, np.ndarray) and emb.dtype == np.float64
    np.testing.assert_array_equal(emb, pool.x.toarray())
    emb2, proba = clf.embed(pool, return_proba=True)
    np.testing.assert_array_equal(emb2, emb)
    np.testing.assert_allclose(proba, clf.predict_proba(pool))


# ------------------------------------------------------------------ factories and registry
def test_factories_through_the_registry_are_deterministic():
    pool = Dataset.from_texts(TEXTS * 3, LABELS * 3)
    probas = []
    for _ in range(2):
        clf = make_classifier("linear_svc", num_classes=2, C=0.5)
        assert clf.estimator.linearsvc_kwargs == {"random_state": 0, "C": 0.5}
        probas.append(clf.fit(clf.featurize(pool)).predict_proba(pool))
    np.testing.assert_array_equal(probas[0], probas[1])
    lr = make_classifier("logistic_regression", num_classes=2, C=2.0)
    assert lr.estimator.get_params()["C"] == 2.0 and lr.estimator.random_state == 0
    assert isinstance(lr.featurizer, TfidfFeaturizer)
    assert make_classifier("linear_svc", num_classes=2, featurizer=None).featurizer is None


@pytest.mark.parametrize("name,params,match", [
    ("linear_svc", {"Cee": 1}, "unknown parameter 'Cee' for LinearSVC"),
    ("linear_svc", {"C": -1.0}, "'C' parameter"),
    ("logistic_regression", {"penalty_": "l2"}, "unknown parameter 'penalty_' for LogisticRegression"),
    ("logistic_regression", {"max_iter": "many"}, "'max_iter' parameter"),
    ("linear_svc", {"featurizer": "bert"}, "unknown featurizer 'bert'"),
    ("linear_svc", {"num_classes": 0}, "num_classes"),
])
def test_bad_classifier_params_name_the_parameter(name, params, match):
    params = {"num_classes": 2, **params}
    with pytest.raises(InvalidParameterError, match=match):
        make_classifier(name, **params)


def test_estimator_template_stays_unfitted_and_model_pickles():
    import pickle
    pool = Dataset.from_texts(TEXTS, LABELS)
    clf = make_linear_svc(num_classes=2)
    pool = clf.featurize(pool)
    clf.fit(pool)
    assert not hasattr(clf.estimator, "estimator_")  # a clone was fitted
    restored = pickle.loads(pickle.dumps(clf))
    test = Dataset.from_texts(["great film", "awful plot"])
    np.testing.assert_array_equal(restored.predict_proba(test), clf.predict_proba(test))


def test_estimator_without_predict_proba_rejected():
    # small-text builds and fits SklearnClassifier(LinearSVC(), 2): only probabilities fail
    x, y = blobs(n=20, num_classes=2)
    clf = SklearnClassifier(LinearSVC(), 2).fit(Dataset(x=x, y=y))
    with pytest.raises(ValueError, match="LinearSVC has no predict_proba"):
        clf.predict_proba(Dataset(x=x))
    with pytest.raises(ValueError, match="must be a scikit-learn estimator with fit"):
        SklearnClassifier(object(), num_classes=2)
    with pytest.raises(ValueError, match="featurizer must have fit"):
        SklearnClassifier(LogisticRegression(), num_classes=2, featurizer="tfidf")


# ------------------------------------------------------------------ small-text's conventions
def test_fits_and_predicts_small_text_datasets_as_ours():
    x, y = blobs(n=30, num_classes=3, seed=4)
    ours = SklearnClassifier(LogisticRegression(), 3).fit(Dataset(x=x, y=y))
    theirs = SklearnClassifier(LogisticRegression(), 3).fit(FakeSklearnDataset(x, y))
    np.testing.assert_allclose(theirs.predict_proba(FakeSklearnDataset(x, y)),
                               ours.predict_proba(Dataset(x=x)))
    assert theirs.model is theirs.estimator_  # the fitted model


def test_small_text_error_messages():
    x, y = blobs(n=10, num_classes=2)
    clf = SklearnClassifier(LogisticRegression(), 2)
    with pytest.raises(ValueError, match="Training set labels must be labeled"):
        clf.fit(FakeSklearnDataset(x, np.full(10, -1)))
    with pytest.raises(ValueError, match="Training data and weights must have the same size"):
        clf.fit(FakeSklearnDataset(x, y), weights=np.ones(9))
    indicator = sp.csr_matrix(np.eye(10, 3, dtype=int))
    with pytest.raises(ValueError, match="Given labeling is recognized as multi-label labeling"):
        clf.fit(FakeSklearnDataset(x, indicator))
    bad = indicator.copy()
    bad.data[0] = 2
    with pytest.raises(ValueError, match="Given labeling must be recognized as multi-label"):
        SklearnClassifier(LogisticRegression(), 3, multi_label=True).fit(FakeSklearnDataset(x, bad))


def test_model_before_fit_is_the_template_wrapped_when_multi_label():
    est = LinearSVC()
    assert SklearnClassifier(est, 2).model is est
    multi = SklearnClassifier(est, 2, True)
    assert isinstance(multi.model, OneVsRestClassifier) and multi.model.estimator is est


def test_empty_data_gives_small_text_empty_results():
    x = np.random.default_rng(0).normal(size=(12, 2))
    indicator = sp.csr_matrix((x[:, :2] > 0).astype(int))
    clf = SklearnClassifier(LogisticRegression(), 2, multi_label=True).fit(
        FakeSklearnDataset(x, indicator))
    empty = FakeSklearnDataset(np.array([]), np.array([], dtype=int))
    proba = clf.predict_proba(empty)
    assert sp.issparse(proba) and proba.shape == (0, 2) and proba.dtype == np.float64
    pred = clf.predict(empty)
    assert sp.issparse(pred) and pred.shape == (0, 2) and pred.dtype == np.int64


def test_factory_clones_its_template_and_rejects_non_estimators():
    template = LogisticRegression(C=3.0)
    factory = SklearnClassifierFactory(template, 4, kwargs={"multi_label": True})
    a, b = factory.new(), factory.new()
    assert a.estimator is not template and a.estimator is not b.estimator
    assert a.estimator.C == 3.0 and a.num_classes == 4 and a.multi_label
    with pytest.raises(ValueError, match="Given classifier template must be a subclass"):
        SklearnClassifierFactory(object(), 2)


def test_empty_data_of_ours_keeps_the_dense_contract():
    x = np.random.default_rng(0).normal(size=(12, 2))
    train = Dataset(x=x, y=sp.csr_matrix((x > 0).astype(int)), multi_label=True,
                    labeled=np.ones(12, bool))
    clf = SklearnClassifier(LogisticRegression(), 2, multi_label=True).fit(train)
    empty = Dataset(x=np.zeros((0, 2)))
    proba = clf.predict_proba(empty)
    assert isinstance(proba, np.ndarray) and proba.shape == (0, 2)
    pred = clf.predict(empty)
    assert sp.issparse(pred) and pred.shape == (0, 2)
