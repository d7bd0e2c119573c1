import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError
from al_engine.init import (RandomBalancedInitialization, RandomInitialization,
                            RandomStratifiedInitialization, random_initialization,
                            random_initialization_balanced, random_initialization_stratified)
from al_engine.registry import make_initialization

from tests.engine.smalltext_fakes import FakeSklearnDataset

ALL = [RandomInitialization, RandomStratifiedInitialization, RandomBalancedInitialization]


def labels(counts):
    """A shuffled label vector with ``counts[c]`` instances of class c."""
    y = np.repeat(np.arange(len(counts)), counts)
    return np.random.default_rng(123).permutation(y)


@pytest.mark.parametrize("cls", ALL)
def test_distinct_valid_deterministic(cls):
    y = labels([50, 30, 15, 5])
    a = cls(seed=7)(y, 20)
    assert a.shape == (20,) and a.dtype == np.int64
    assert np.unique(a).size == 20 and a.min() >= 0 and a.max() < y.size
    np.testing.assert_array_equal(a, cls(seed=7).select(y, 20))
    assert not np.array_equal(a, cls(seed=8)(y, 20))
    # all instances
    np.testing.assert_array_equal(np.sort(cls(seed=0)(y, y.size)), np.arange(y.size))


@pytest.mark.parametrize("cls", ALL)
def test_bad_n(cls):
    y = labels([3, 2])
    with pytest.raises(ValueError, match="n=6 exceeds the number of instances .5."):
        cls(seed=0)(y, 6)
    with pytest.raises(ValueError, match="n must be at least 1"):
        cls(seed=0)(y, 0)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        cls(seed=0)(y, 2.5)


def test_stratified_hand_computed_proportions():
    # 50/30/20 of 100, n=10 -> exactly 5/3/2 (no remainder to draw)
    y = labels([50, 30, 20])
    for seed in range(5):
        idx = RandomStratifiedInitialization(seed=seed)(y, 10)
        np.testing.assert_array_equal(np.bincount(y[idx], minlength=3), [5, 3, 2])


def test_stratified_remainder_and_min_occurrence():
    # 90/6/4 of 100, n=10: floor -> 9/0/0; every class gets >= 1: 9+1+1 = 11, one taken
    # back from the largest class -> 8/1/1
    y = labels([90, 6, 4])
    for seed in range(5):
        idx = RandomStratifiedInitialization(seed=seed)(y, 10)
        np.testing.assert_array_equal(np.bincount(y[idx], minlength=3), [8, 1, 1])
    # without the guarantee: 9 + one remainder drawn proportionally to the remaining sizes
    counts = [np.bincount(y[RandomStratifiedInitialization(seed=s, enforce_min_occurrence=False)(y, 10)],
                          minlength=3) for s in range(40)]
    assert all(c[0] >= 9 and c.sum() == 10 for c in counts)
    assert any(c[0] == 10 for c in counts)
    # n smaller than the number of classes: no guarantee possible
    idx = RandomStratifiedInitialization(seed=0)(y, 2)
    assert idx.size == 2


def test_stratified_skips_absent_class_ids():
    y = np.array([0] * 10 + [3] * 10)  # classes 1 and 2 absent
    idx = RandomStratifiedInitialization(seed=0)(y, 4)
    np.testing.assert_array_equal(np.bincount(y[idx], minlength=4), [2, 0, 0, 2])


def test_balanced_hand_computed():
    y = labels([50, 30, 20])
    for seed in range(5):
        idx = RandomBalancedInitialization(seed=seed)(y, 9)
        np.testing.assert_array_equal(np.bincount(y[idx], minlength=3), [3, 3, 3])
    # a class smaller than its share gives all it has; the rest is drawn elsewhere
    y = labels([50, 30, 2])
    for seed in range(5):
        c = np.bincount(y[RandomBalancedInitialization(seed=seed)(y, 12)], minlength=3)
        assert c[2] == 2 and c[0] >= 4 and c[1] >= 4 and c.sum() == 12


def test_one_class_only():
    y = np.zeros(10, dtype=int)
    for cls in ALL:
        idx = cls(seed=0)(y, 4)
        assert np.unique(idx).size == 4


def test_multi_label():
    rng = np.random.default_rng(0)
    # label sets: {0} x 40, {0,1} x 40, {} x 20
    ind = np.zeros((100, 3), dtype=np.int8)
    ind[:80, 0] = 1
    ind[40:80, 1] = 1
    perm = rng.permutation(100)
    y = sp.csr_matrix(ind[perm])
    idx = RandomStratifiedInitialization(seed=1)(y, 10)
    sets = ind[perm][idx]
    assert np.unique(idx).size == 10
    assert (sets[:, 1] == 1).sum() == 4                      # {0,1}
    assert ((sets[:, 0] == 1) & (sets[:, 1] == 0)).sum() == 4  # {0}
    assert (sets.sum(1) == 0).sum() == 2                     # {}
    assert np.unique(RandomInitialization(seed=1)(y, 10)).size == 10
    with pytest.raises(MultiLabelNotSupportedError, match="single-label"):
        RandomBalancedInitialization(seed=0)(y, 10)


def test_unlabeled_entries_rejected():
    with pytest.raises(ValueError, match="unlabeled"):
        RandomStratifiedInitialization(seed=0)(np.array([0, 1, -1]), 2)


def test_registry():
    s = make_initialization("random_stratified", seed=3)
    assert isinstance(s, RandomStratifiedInitialization) and s.seed == 3
    assert isinstance(make_initialization("random"), RandomInitialization)
    with pytest.raises(InvalidParameterError, match="unknown parameter 'sed'"):
        make_initialization("random_balanced", sed=1)


def test_small_text_agreement_on_class_counts():
    """Where small-text's allocation is deterministic (no remainder, no min-occurrence
    adjustment), its samples and ours have the same class counts."""
    sampling = pytest.importorskip("small_text.data.sampling", reason="small-text (the reference) not installed")
    y = labels([60, 24, 12, 24])
    np.random.seed(0)
    for n in (10, 20, 40):  # 60/24/12/24 of 120: n=10 -> exactly 5/2/1/2
        ours = np.bincount(y[RandomStratifiedInitialization(seed=0)(y, n)], minlength=4)
        theirs = np.bincount(y[sampling.stratified_sampling(y, n_samples=n)], minlength=4)
        np.testing.assert_array_equal(ours, theirs)
    for n in (8, 20):
        ours = np.bincount(y[RandomBalancedInitialization(seed=0)(y, n)], minlength=4)
        theirs = np.bincount(y[sampling.balanced_sampling(y, n_samples=n)], minlength=4)
        np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------ small-text's functions
def test_random_initialization_uses_only_the_length_of_a_dataset():
    pool = FakeSklearnDataset(sp.random(100, 2, density=0.5, format="csr", random_state=0),
                              np.zeros(100, dtype=int))
    indices = random_initialization(pool)
    assert indices.shape == (10,) and np.unique(indices).size == 10
    assert indices.min() >= 0 and indices.max() < 100
    with pytest.raises(ValueError, match="exceeds the number of instances"):
        random_initialization(pool, n_samples=101)


def test_functions_follow_numpys_global_seed_like_small_text():
    y = np.array([0] * 10 + [1] * 10 + [2] * 10 + [3] * 70)
    np.random.seed(5)
    first = random_initialization_stratified(y, n_samples=10)
    np.random.seed(5)
    np.testing.assert_array_equal(random_initialization_stratified(y, n_samples=10), first)
    # floor(10 * 10 / 100) = 1 of each small class, floor(10 * 70 / 100) = 7 of class 3
    np.testing.assert_array_equal(np.bincount(y[first]), [1, 1, 1, 7])


def test_stratified_multilabel_strategy_and_balanced_multi_label():
    y = sp.csr_matrix(np.array([[0, 0, 1]] * 10 + [[1, 0, 0]] * 10))
    assert np.unique(random_initialization_stratified(y, n_samples=4)).size == 4
    with pytest.raises(ValueError, match="Invalid multilabel_strategy"):
        random_initialization_stratified(y, multilabel_strategy="does-not-exist")
    with pytest.raises(NotImplementedError):
        random_initialization_balanced(y)
    balanced = random_initialization_balanced([0] * 25 + [1] * 25 + [2] * 50, n_samples=9)
    np.testing.assert_array_equal(np.bincount(np.array([0] * 25 + [1] * 25 + [2] * 50)[balanced]),
                                  [3, 3, 3])
