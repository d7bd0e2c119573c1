"""LabelCardinalityInconsistency, AdaptiveActiveLearning, CategoryVectorInconsistencyAndRanking:
hand-computed cases, dense/CSR probabilities, label-mode errors, and CVIRS's small-text
compatibility mode against small-text 1.4.1 itself."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import al_engine.query.multilabel as ml
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError
from al_engine.query.multilabel import (AdaptiveActiveLearning,
                                        CategoryVectorInconsistencyAndRanking,
                                        LabelCardinalityInconsistency)
from al_engine.registry import make_query_strategy
from tests.engine.conftest import FixedProbaClassifier, make_pool


class SparseProbaClassifier(FixedProbaClassifier):
    """Returns the probabilities as a CSR matrix (as sparse multi-label models do)."""

    def predict_proba(self, dataset):
        return sp.csr_matrix(super().predict_proba(dataset))


def run(strategy, proba_unlabeled, y_labeled, n, sparse=False):
    """Rows 0..u-1 unlabeled with ``proba_unlabeled``; then one labeled row per row of
    ``y_labeled`` (their probabilities are irrelevant: 0.5)."""
    proba_unlabeled = np.asarray(proba_unlabeled, dtype=float)
    y_labeled = np.asarray(y_labeled, dtype=np.int8)
    u, q = proba_unlabeled.shape
    num_labeled = y_labeled.shape[0]
    proba = np.vstack([proba_unlabeled, np.full((num_labeled, q), .5)])
    ind = np.vstack([np.zeros((u, q), dtype=np.int8), y_labeled])
    labeled_mask = np.r_[np.zeros(u, bool), np.ones(num_labeled, bool)]
    ds = Dataset(x=np.zeros((u + num_labeled, 1)), y=sp.csr_matrix(ind), multi_label=True,
                 labeled=labeled_mask)
    clf = (SparseProbaClassifier if sparse else FixedProbaClassifier)(proba, multi_label=True)
    result = strategy.query(clf, ds, np.arange(u), np.arange(u, u + num_labeled),
                            sp.csr_matrix(y_labeled), n=n)
    return result.tolist(), strategy.scores_[:u]


PROBA = [[.6, .7, .1],    # 2 labels predicted
         [.2, .1, .3],    # 0
         [.9, .85, .7],   # 3
         [.6, .1, .2]]    # 1
Y = [[1, 0, 0], [1, 1, 0]]  # mean cardinality 1.5


# ------------------------------------------------------------------ LCI
@pytest.mark.parametrize("sparse", [False, True])
def test_lci_hand_computed(sparse):
    result, scores = run(LabelCardinalityInconsistency(), PROBA, Y, 2, sparse=sparse)
    np.testing.assert_allclose(scores, [.5, 1.5, 1.5, .5])
    assert result == [1, 2]                         # tie of 1.5: by position


def test_lci_threshold():
    # threshold .65: counts [1, 0, 3, 0] -> |c - 1.5| = [.5, 1.5, 1.5, 1.5]
    result, scores = run(LabelCardinalityInconsistency(prediction_threshold=.65), PROBA, Y, 3)
    np.testing.assert_allclose(scores, [.5, 1.5, 1.5, 1.5])
    assert result == [1, 2, 3]


def test_lci_needs_labels():
    ds = Dataset(x=np.zeros((3, 1)), y=sp.csr_matrix((3, 3), dtype=np.int8), multi_label=True)
    with pytest.raises(ValueError, match="y is empty"):
        LabelCardinalityInconsistency().query(FixedProbaClassifier(np.full((3, 3), .5)), ds,
                                              np.arange(3), np.array([], dtype=np.int64),
                                              sp.csr_matrix((0, 3)), n=1)


# ------------------------------------------------------------------ AAL
@pytest.mark.parametrize("sparse", [False, True])
def test_aal_hand_computed(sparse):
    # margins (top1 - top2): .1, .1, .05, .4 -> inverse 10, 10, 20, 2.5
    # LCI + 1: 1.5, 2.5, 2.5, 1.5 ; beta = .5 -> sqrt(product)
    result, scores = run(AdaptiveActiveLearning(), PROBA, Y, 4, sparse=sparse)
    np.testing.assert_allclose(scores, np.sqrt([15, 25, 50, 3.75]))
    assert result == [2, 1, 0, 3]


def test_aal_weights_and_margin_floor():
    proba = [[.5, .5, .0], [.9, .2, .1]]   # margin 0 -> floored at .01 -> inverse 100
    _, only_uncertainty = run(AdaptiveActiveLearning(uncertainty_weight=1.0), proba, Y, 1)
    np.testing.assert_allclose(only_uncertainty, [100, 1 / .7])
    _, only_lci = run(AdaptiveActiveLearning(uncertainty_weight=0.0), proba, Y, 1)
    np.testing.assert_allclose(only_lci, [1.5 + 1, .5 + 1])


def test_aal_applies_its_prediction_threshold():
    # small-text 2.0.0.dev4 ignores prediction_threshold in AAL; here it is applied:
    # threshold .65 gives counts [1, 0, 3, 0] -> LCI + 1 = [1.5, 2.5, 2.5, 2.5]
    _, scores = run(AdaptiveActiveLearning(prediction_threshold=.65), PROBA, Y, 1)
    np.testing.assert_allclose(scores, np.sqrt([10 * 1.5, 10 * 2.5, 20 * 2.5, 2.5 * 2.5]))


# ------------------------------------------------------------------ CVIRS
def binary_entropy(p):
    return -p * np.log2(p) - (1 - p) * np.log2(1 - p)


CV_PROBA = [[.9, .8, .25],   # predicts [1,1,0] = the labeled vector: distance 0
            [.7, .4, .45],   # predicts [1,0,0]: a=1, b=1, c=0, d=1
            [.2, .3, .75]]   # predicts [0,0,1]: disagrees everywhere: distance 1
CV_Y = [[1, 1, 0]]


def test_cvirs_hand_computed():
    # Entropy distance for [1,0,0] vs [1,1,0] (q=3): H(y)=H(y^)=h(1/3);
    # joint = h(1/3) + 1/3*0 + 2/3*(h(1/2)) = log2(3); d = (2 log2 3 - 2 h(1/3)) / log2 3.
    d1 = (2 * np.log2(3) - 2 * binary_entropy(1 / 3)) / np.log2(3)
    # Margins |2p-1| per label (ascending rank, 0-based; label 2 ties rows 0 and 2 -> 1.5):
    # label0 .8 .4 .6 -> ranks 2 0 1 ; label1 .6 .2 .4 -> 2 0 1 ; label2 .5 .1 .5 -> 1.5 0 1.5
    # ranking = sum_j (N-1-r) / (q (N-1)) = [.5/6, 6/6, 2.5/6]
    result, scores = run(CategoryVectorInconsistencyAndRanking(), CV_PROBA, CV_Y, 3)
    np.testing.assert_allclose(scores, [0, d1 * 1.0, 1 * 2.5 / 6], atol=1e-7)
    assert result == [1, 2, 0]


@pytest.mark.parametrize("sparse", [False, True])
def test_cvirs_average_over_labeled(sparse):
    # Two labeled rows: row 2's distances are 1 (to [1,1,0]) and 0 (to [0,0,1]) -> mean .5
    _, scores = run(CategoryVectorInconsistencyAndRanking(), CV_PROBA, CV_Y + [[0, 0, 1]], 3,
                    sparse=sparse)
    assert scores[2] == pytest.approx(.5 * 2.5 / 6, abs=1e-7)


def random_problem(seed=0, n_unlabeled=300, q=6, num_labeled=40):
    rng = np.random.default_rng(seed)
    proba = rng.random((n_unlabeled, q))
    y = (rng.random((num_labeled, q)) < .35).astype(np.int8)
    return proba, y


def test_cvirs_result_does_not_depend_on_batching(monkeypatch):
    proba, y = random_problem()
    _, reference = run(CategoryVectorInconsistencyAndRanking(batch_size=2048), proba, y, 10)
    for batch_size in (1, 7, 64):
        _, scores = run(CategoryVectorInconsistencyAndRanking(batch_size=batch_size),
                        proba, y, 10)
        np.testing.assert_allclose(scores, reference, rtol=1e-12)
    # Without the (a, b, c) lookup table (too many labels): the direct formula, same result.
    monkeypatch.setattr(ml, "_MAX_BLOCK_CELLS", 50)
    _, direct = run(CategoryVectorInconsistencyAndRanking(), proba, y, 10)
    np.testing.assert_allclose(direct, reference, rtol=1e-9)


class _IndexableDataset:
    """The minimum small-text's CVIRS needs of a dataset: len and indexing."""

    def __init__(self, rows):
        self.rows = np.asarray(rows)

    def __len__(self):
        return self.rows.size

    def __getitem__(self, idx):
        return _IndexableDataset(self.rows[idx])


class _RowsClassifier:
    def __init__(self, proba):
        self.proba = proba

    def predict_proba(self, dataset):
        return self.proba[dataset.rows]


@pytest.mark.parametrize("batch_size", [2048, 64])
def test_cvirs_compat_mode_equals_small_text_1_4_1(batch_size):
    st = pytest.importorskip("small_text.query_strategies")
    proba, y = random_problem(seed=1)
    u = proba.shape[0]
    theirs = st.CategoryVectorInconsistencyAndRanking(batch_size=batch_size, pbar=None)
    indices_unlabeled = np.arange(u)
    their_scores = theirs._compute_scores(indices_unlabeled, sp.csr_matrix(y), proba)
    their_pick = theirs.query(_RowsClassifier(proba), _IndexableDataset(np.arange(u)),
                              indices_unlabeled, np.arange(u, u + y.shape[0]),
                              sp.csr_matrix(y), n=10)
    ours = CategoryVectorInconsistencyAndRanking(batch_size=batch_size, small_text_compat=True)
    our_pick, our_scores = run(ours, proba, y, 10)
    np.testing.assert_allclose(our_scores, their_scores, rtol=1e-12)
    assert sorted(our_pick) == sorted(their_pick.tolist())


def test_cvirs_compat_reproduces_the_batch_dependence():
    # The defect kept in compat mode: the last, smaller batch divides by its own size.
    proba, y = random_problem(n_unlabeled=10)
    _, one_batch = run(CategoryVectorInconsistencyAndRanking(batch_size=10,
                                                             small_text_compat=True), proba, y, 1)
    _, split = run(CategoryVectorInconsistencyAndRanking(batch_size=6,
                                                         small_text_compat=True), proba, y, 1)
    np.testing.assert_allclose(split, one_batch * 10 / 5)      # array_split: 5 + 5


# ------------------------------------------------------------------ common
@pytest.mark.parametrize("cls", [LabelCardinalityInconsistency, AdaptiveActiveLearning,
                                 CategoryVectorInconsistencyAndRanking])
def test_single_label_input_is_rejected(cls):
    pool = make_pool(multi_label=False)
    with pytest.raises(MultiLabelNotSupportedError, match="multi-label classification only"):
        cls().query(**pool.args(), n=2)


@pytest.mark.parametrize("name,param", [
    ("label_cardinality_inconsistency", {"prediction_threshold": 1.5}),
    ("adaptive_active_learning", {"uncertainty_weight": -0.1}),
    ("category_vector_inconsistency_and_ranking", {"batch_size": 0}),
    ("category_vector_inconsistency_and_ranking", {"epsilon": 0}),
])
def test_bad_parameters_name_the_parameter(name, param):
    with pytest.raises(InvalidParameterError, match=next(iter(param))):
        make_query_strategy(name, **param)
