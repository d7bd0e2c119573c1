"""RandomSampling and SubsamplingQueryStrategy."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError
from al_engine.query.base import QueryStrategy
from al_engine.query.random import RandomSampling
from al_engine.query.subsampling import SubsamplingQueryStrategy
from al_engine.query.uncertainty import BreakingTies, LeastConfidence
from al_engine.registry import make_query_strategy
from tests.engine.conftest import LinearStubClassifier, make_pool


# --------------------------------------------------------------------------- random
def test_random_seeded_query_is_a_prefix_of_rank():
    pool = make_pool()
    order = RandomSampling(seed=5).rank(**pool.args())
    assert RandomSampling(seed=5).query(**pool.args(), n=8).tolist() == order[:8].tolist()
    assert RandomSampling(seed=6).query(**pool.args(), n=8).tolist() != order[:8].tolist()


def test_random_is_uniform_over_the_pool():
    pool = make_pool(n_rows=15, n_labeled=10)                # 5 unlabeled
    picks = [RandomSampling(seed=s).query(**pool.args(), n=1)[0] for s in range(3000)]
    _, counts = np.unique(picks, return_counts=True)
    assert counts.size == 5
    # expected 600 each; a binomial sd is ~22, so +-120 is > 5 sd
    assert np.all(np.abs(counts - 600) < 120), counts


def test_random_generator_seed_advances_between_calls():
    pool = make_pool()
    strategy = RandomSampling(seed=np.random.default_rng(0))
    assert strategy.query(**pool.args(), n=10).tolist() != strategy.query(**pool.args(), n=10).tolist()


def test_random_supports_multi_label_and_ignores_the_classifier():
    pool = make_pool(multi_label=True)
    result = RandomSampling(seed=0).query(**pool.args(clf=None), n=5)
    assert np.unique(result).size == 5 and np.isin(result, pool.indices_unlabeled).all()


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_random_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        RandomSampling(seed=seed)
    with pytest.raises(InvalidParameterError, match="seed"):
        make_query_strategy("random", seed=seed)


# --------------------------------------------------------------------------- subsampling
class RecordingStrategy(QueryStrategy):
    """Records its arguments; selects the first n of indices_unlabeled."""

    def __init__(self):
        self.calls = []

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n=10):
        self.calls.append((len(dataset), np.asarray(indices_unlabeled).copy(),
                           np.asarray(indices_labeled).copy(), y, dataset))
        return np.asarray(indices_unlabeled)[:n]


def least_confident_order(pool, positions):
    """Hand-computed: ``positions`` sorted by max probability ascending (stable)."""
    conf = pool.clf.predict_proba(pool.dataset).max(axis=1)[positions]
    return np.asarray(positions)[np.argsort(conf, kind="stable")]


def test_subsampling_passes_small_texts_subset_to_the_base():
    pool = make_pool(n_rows=60, n_labeled=10)
    base = RecordingStrategy()
    strategy = SubsamplingQueryStrategy(base, subsample_size=20, seed=0)
    result = strategy.query(**pool.args(), n=4)
    (n_rows, sub_unlabeled, sub_labeled, y, subset), = base.calls
    assert n_rows == 30
    assert sub_unlabeled.tolist() == list(range(20))
    assert sub_labeled.tolist() == list(range(20, 30))
    assert y is not None and np.array_equal(y, pool.y)
    # the subset's rows are the subsample's rows, then the labeled rows, in order
    np.testing.assert_array_equal(subset.x[:20], pool.dataset.x[strategy.subsample_])
    np.testing.assert_array_equal(subset.x[20:], pool.dataset.x[pool.indices_labeled])
    assert result.tolist() == strategy.subsample_[:4].tolist()
    assert strategy.subsample_.size == 20
    assert np.isin(strategy.subsample_, pool.indices_unlabeled).all()


def test_subsampling_selects_the_base_best_within_the_subsample():
    pool = make_pool(n_rows=60, n_labeled=10)
    strategy = SubsamplingQueryStrategy("least_confidence", subsample_size=20, seed=1)
    result = strategy.query(**pool.args(), n=5)
    assert isinstance(strategy.base_query_strategy_, LeastConfidence)
    expected = least_confident_order(pool, strategy.subsample_)[:5]
    assert result.tolist() == expected.tolist()
    # scores_ are the base scores of the subsample rows, aligned with subsample_
    conf = pool.clf.predict_proba(pool.dataset).max(axis=1)
    np.testing.assert_allclose(strategy.scores_, conf[strategy.subsample_])


def test_subsampling_classifier_sees_only_the_subset():
    class Counting(LinearStubClassifier):
        rows = []

        def predict_proba(self, dataset):
            self.rows.append(len(dataset))
            return super().predict_proba(dataset)

    pool = make_pool(n_rows=60, n_labeled=10)
    pool.clf = Counting(num_classes=3, seed=1)
    SubsamplingQueryStrategy(BreakingTies(), subsample_size=16, seed=0).query(**pool.args(), n=3)
    assert pool.clf.rows == [16 + 10]


def test_subsampling_rank_covers_the_pool_subsample_first():
    pool = make_pool(n_rows=60, n_labeled=10)
    strategy = SubsamplingQueryStrategy("least_confidence", subsample_size=20, seed=2)
    order = strategy.rank(**pool.args())
    assert sorted(order.tolist()) == pool.indices_unlabeled.tolist()
    sub = strategy.subsample_
    assert order[:20].tolist() == least_confident_order(pool, sub).tolist()
    # the remainder is the rest of the same seeded permutation
    perm = np.random.default_rng(2).permutation(pool.indices_unlabeled)
    assert sub.tolist() == perm[:20].tolist()
    assert order[20:].tolist() == perm[20:].tolist()
    # query(n) is the prefix of rank, also beyond the subsample
    for n in (3, 20, 35, 50):
        assert SubsamplingQueryStrategy("least_confidence", subsample_size=20, seed=2) \
            .query(**pool.args(), n=n).tolist() == order[:n].tolist()


def test_subsampling_small_pool_delegates_to_the_base():
    pool = make_pool(n_rows=60, n_labeled=10)               # 50 unlabeled <= 64
    strategy = SubsamplingQueryStrategy(LeastConfidence(), subsample_size=64, seed=0)
    result = strategy.query(**pool.args(), n=6)
    assert result.tolist() == LeastConfidence().query(**pool.args(), n=6).tolist()
    assert strategy.subsample_.tolist() == pool.indices_unlabeled.tolist()


def test_subsampling_label_modes_follow_the_base():
    multi = make_pool(multi_label=True)
    strategy = SubsamplingQueryStrategy("random", subsample_size=8, seed=0)
    assert strategy.supports_multi_label and strategy.supports_single_label
    assert np.unique(strategy.query(**multi.args(), n=4)).size == 4
    lc = SubsamplingQueryStrategy("least_confidence", subsample_size=8, seed=0)
    assert not lc.supports_multi_label
    with pytest.raises(MultiLabelNotSupportedError):
        lc.query(**multi.args(), n=4)


@pytest.mark.parametrize("params, match", [
    ({"base_query_strategy": "no_such_strategy"}, "no_such_strategy"),
    ({"base_query_strategy": 42}, "base_query_strategy"),
    ({"base_query_strategy": "subsampling"}, "base_query_strategy"),
    ({"base_query_strategy": "least_confidence", "subsample_size": 0}, "subsample_size"),
    ({"base_query_strategy": "least_confidence", "subsample_size": 2.5}, "subsample_size"),
    ({"base_query_strategy": "least_confidence", "seed": -3}, "seed"),
])
def test_subsampling_bad_params(params, match):
    with pytest.raises(InvalidParameterError, match=match):
        make_query_strategy("subsampling", **params)


def test_subsampling_same_as_small_text_when_the_pool_fits():
    small_text = pytest.importorskip("small_text", reason="small-text 1.4.1 not installed")
    from small_text.data import SklearnDataset

    pool = make_pool(n_rows=200, n_labeled=20, num_classes=4)
    proba = pool.clf.predict_proba(pool.dataset)

    class Stub:
        def predict_proba(self, dataset):
            return proba[: len(dataset)] if len(dataset) == len(proba) else None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st_ds = SklearnDataset(pool.dataset.x, pool.dataset.y, target_labels=np.arange(4))
    theirs = small_text.SubsamplingQueryStrategy(small_text.BreakingTies(), subsample_size=4096)
    st_sel = theirs.query(Stub(), st_ds, pool.indices_unlabeled, pool.indices_labeled, pool.y, n=10)
    ours = SubsamplingQueryStrategy("breaking_ties", subsample_size=4096, seed=0)
    our_sel = ours.query(**pool.args(clf=Stub()), n=10)
    assert set(our_sel.tolist()) == set(st_sel.tolist())
