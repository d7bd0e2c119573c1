"""LeastConfidence, PredictionEntropy, BreakingTies: small-text's test vectors, hand-computed
edge cases, and equivalence with small-text 1.4.1 on random probability matrices."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.exceptions import MultiLabelNotSupportedError
from al_engine.query.uncertainty import BreakingTies, LeastConfidence, PredictionEntropy
from tests.engine.conftest import FixedProbaClassifier, make_pool

EMPTY = np.array([], dtype=np.int64)


def run(strategy, proba, n, indices_unlabeled=None):
    proba = np.asarray(proba, dtype=float)
    ds = Dataset(x=np.zeros((proba.shape[0], 1)))
    pool = np.arange(proba.shape[0]) if indices_unlabeled is None else np.asarray(indices_unlabeled)
    labeled = np.setdiff1d(np.arange(proba.shape[0]), pool)
    result = strategy.query(FixedProbaClassifier(proba), ds, pool, labeled,
                            np.zeros(labeled.size, dtype=np.int64), n=n)
    return result.tolist(), strategy.scores_


# --------------------------------------------------------------- small-text's test vectors
def test_least_confidence_vector():
    result, scores = run(LeastConfidence(), [[.1, .9], [.45, .55], [.2, .8], [.7, .3]], 2)
    assert result == [1, 3]
    np.testing.assert_allclose(scores, [.9, .55, .8, .7], rtol=0, atol=1e-12)


def test_breaking_ties_binary_vector():
    result, scores = run(BreakingTies(), [[.1, .9], [.45, .55], [.5, .5], [.7, .3]], 2)
    assert result == [2, 1]
    np.testing.assert_allclose(scores, [.8, .1, 0, .4], rtol=0, atol=1e-12)


def test_breaking_ties_three_class_vector():
    proba = [[.1, .75, .15], [.45, .5, .05], [.1, .8, .1], [.7, .15, .15]]
    result, scores = run(BreakingTies(), proba, 2)
    assert result == [1, 3]
    np.testing.assert_allclose(scores, [.6, .05, .7, .55], rtol=0, atol=1e-12)


def test_prediction_entropy_binary_vector():
    result, scores = run(PredictionEntropy(), [[.1, .9], [.45, .55], [.5, .5], [.7, .3]], 2)
    assert result == [2, 1]
    np.testing.assert_allclose(scores, [.325083, .688139, .693147, .610864], atol=1e-6)


def test_prediction_entropy_three_class_vector_with_a_zero():
    proba = [[.1, .8, .1], [.45, .25, .3], [.33, .33, .34], [.7, .3, 0]]
    result, scores = run(PredictionEntropy(), proba, 2)
    assert result == [2, 1]
    # 0 * log 0 = 0: the last row's entropy is that of (.7, .3)
    assert scores[3] == pytest.approx(-(.7 * np.log(.7) + .3 * np.log(.3)), abs=1e-12)
    assert np.isfinite(scores).all()


# --------------------------------------------------------------- hand-computed edge cases
@pytest.mark.parametrize("strategy", [LeastConfidence(), PredictionEntropy(), BreakingTies()])
def test_ties_are_broken_by_position(strategy):
    # rows 1, 2, 4 and 5 share the best score; ties keep their order in indices_unlabeled
    proba = [[.9, .1], [.6, .4], [.6, .4], [.95, .05], [.6, .4], [.4, .6]]
    assert run(strategy, proba, 2)[0] == [1, 2]
    assert run(strategy, proba, 3)[0] == [1, 2, 4]
    assert run(strategy, proba, 3, indices_unlabeled=[5, 4, 2, 0])[0] == [5, 4, 2]


@pytest.mark.parametrize("strategy, expected", [
    (LeastConfidence(), [2, 1, 3, 0]),       # max proba .5 < .6 < .7 < .9
    (PredictionEntropy(), [2, 1, 3, 0]),
    (BreakingTies(), [2, 1, 3, 0]),          # margins 0 < .2 < .4 < .8
])
def test_n_equal_to_pool_size_is_fully_ordered(strategy, expected):
    proba = [[.9, .1], [.4, .6], [.5, .5], [.3, .7]]
    assert run(strategy, proba, 4)[0] == expected
    ds = Dataset(x=np.zeros((4, 1)))
    assert strategy.rank(FixedProbaClassifier(proba), ds, np.arange(4), EMPTY, EMPTY).tolist() \
        == expected


def test_multi_class_three_way_tie_has_zero_margin():
    proba = [[.2, .4, .4], [1 / 3, 1 / 3, 1 / 3], [.1, .2, .7]]
    result, scores = run(BreakingTies(), proba, 3)
    np.testing.assert_allclose(scores, [0, 0, .5], atol=1e-12)
    assert result == [0, 1, 2]
    result, scores = run(PredictionEntropy(), proba, 1)
    assert result == [1] and scores[1] == pytest.approx(np.log(3))


def test_one_class_only():
    # A classifier that knows one class: every row has probability 1 -> all tied.
    proba = np.ones((5, 1))
    for strategy, expected_score in [(LeastConfidence(), 1.0), (PredictionEntropy(), 0.0),
                                     (BreakingTies(), 1.0)]:
        result, scores = run(strategy, proba, 3, indices_unlabeled=[0, 1, 3, 4])
        assert result == [0, 1, 3], type(strategy).__name__
        np.testing.assert_array_equal(scores, np.full(5, expected_score))


def test_one_class_certain_in_two_columns():
    proba = [[1, 0], [0, 1], [1, 0]]
    for strategy in (LeastConfidence(), PredictionEntropy(), BreakingTies()):
        assert run(strategy, proba, 2)[0] == [0, 1]


def test_entropy_normalizes_rows_like_scipy():
    # scipy.stats.entropy (small-text) normalizes; [2, 2] has the entropy of [.5, .5]
    _, scores = run(PredictionEntropy(), [[2., 2.], [.5, .5]], 1)
    np.testing.assert_allclose(scores, [np.log(2), np.log(2)], atol=1e-12)


def test_nan_proba_raises():
    with pytest.raises(ValueError, match="NaN"):
        run(LeastConfidence(), [[np.nan, .5], [.5, .5]], 1)
    with pytest.raises(ValueError, match="NaN"):
        run(PredictionEntropy(), [[0., 0.], [.5, .5]], 1)


def test_wrong_proba_shape_raises():
    ds = Dataset(x=np.zeros((3, 1)))

    class Bad(FixedProbaClassifier):
        def predict_proba(self, dataset):
            return self.proba[:2]

    with pytest.raises(ValueError, match="predict_proba"):
        BreakingTies().query(Bad([[.5, .5]] * 3), ds, np.arange(3), EMPTY, EMPTY, n=1)


@pytest.mark.parametrize("cls", [LeastConfidence, PredictionEntropy, BreakingTies])
def test_multi_label_raises(cls):
    pool = make_pool(multi_label=True)
    with pytest.raises(MultiLabelNotSupportedError, match=cls.__name__):
        cls().query(**pool.args(), n=2)


def test_calls_predict_proba_once_and_keeps_full_pool_scores():
    pool = make_pool(num_classes=4)
    strategy = BreakingTies()
    strategy.query(**pool.args(), n=3)
    assert pool.clf.calls == {"predict_proba": 1, "embed": 0}
    assert strategy.scores_.shape == (len(pool.dataset),)


# --------------------------------------------------------------- equivalence with small-text
small_text = pytest.importorskip(
    "small_text", reason="small-text 1.4.1 (the reference) is not installed; "
                         "install the project's [dev] extra")


class _StubClf:
    def __init__(self, proba):
        self.proba = proba

    def predict_proba(self, dataset):
        return self.proba


def _random_proba(rng, rows, k, ties):
    proba = rng.dirichlet(np.full(k, 0.7), size=rows)
    if ties:  # coarse probabilities: many exactly equal scores
        proba = np.round(proba, 1)
        proba[:, -1] = 1 - proba[:, :-1].sum(axis=1)
        proba = np.clip(proba, 0, 1)
    return proba


PAIRS = [("LeastConfidence", LeastConfidence), ("PredictionEntropy", PredictionEntropy),
         ("BreakingTies", BreakingTies)]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("k", [2, 4, 10])
@pytest.mark.parametrize("st_name, ours_cls", PAIRS, ids=[p[0] for p in PAIRS])
def test_same_selection_and_scores_as_small_text(st_name, ours_cls, k, ties):
    from small_text.data import SklearnDataset

    rng = np.random.default_rng(1000 * k + ties)
    rows = 300
    proba = _random_proba(rng, rows, k, ties)
    labeled = np.sort(rng.choice(rows, size=30, replace=False))
    unlabeled = np.setdiff1d(np.arange(rows), labeled)
    y = rng.integers(0, k, size=labeled.size)
    y_full = np.full(rows, -1)
    y_full[labeled] = y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_ds = SklearnDataset(np.zeros((rows, 1)), y_full, target_labels=np.arange(k))
    ours_ds = Dataset(x=np.zeros((rows, 1)), y=y_full)
    for n in (1, 10, 60):
        theirs = getattr(small_text, st_name)()
        st_sel = theirs.query(_StubClf(proba), st_ds, unlabeled, labeled, y, n=n)
        ours = ours_cls()
        our_sel = ours.query(_StubClf(proba), ours_ds, unlabeled, labeled, y, n=n)
        np.testing.assert_allclose(ours.scores_, theirs.scores_, rtol=0, atol=1e-9)
        if not ties:
            assert set(our_sel.tolist()) == set(st_sel.tolist())
        else:
            # among ties small-text's argpartition picks arbitrarily: the selected SCORES
            # must agree (both are a best-n), and ours is the lowest positions among ties
            s = ours.scores_
            assert sorted(s[our_sel]) == pytest.approx(sorted(s[st_sel]), abs=1e-12)
        assert len(set(our_sel.tolist())) == n


@pytest.mark.parametrize("k", list(range(1, 13)))
def test_score_kernels_match_sort_based_formulas(k):
    """Both code paths (column loop for few classes, axis reductions for many) against the
    textbook formulas, with ties (coarse values) and exact zeros."""
    from al_engine.query.uncertainty import (breaking_ties_scores, least_confidence_scores,
                                             prediction_entropy_scores)
    rng = np.random.default_rng(k)
    proba = rng.integers(0, 4, size=(300, k)).astype(float)
    proba[proba.sum(axis=1) == 0, 0] = 1.0
    proba /= proba.sum(axis=1, keepdims=True)
    ordered = np.sort(proba, axis=1)
    second = ordered[:, -2] if k > 1 else np.zeros(300)
    np.testing.assert_array_equal(breaking_ties_scores(proba), ordered[:, -1] - second)
    np.testing.assert_array_equal(least_confidence_scores(proba), ordered[:, -1])
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = -np.nansum(proba * np.log(proba), axis=1)
    np.testing.assert_allclose(prediction_entropy_scores(proba), expected, rtol=0, atol=1e-12)
