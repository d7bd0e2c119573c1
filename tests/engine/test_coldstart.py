"""Label-free cold starts (al_engine.coldstart): hand-built pools whose answer is known."""
import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.coldstart import KMeansCentres, TypiClust
from al_engine.exceptions import InvalidParameterError

STRATEGIES = [TypiClust, KMeansCentres]


SIZES = (120, 60, 20)


def blobs():
    """Three well separated Gaussian groups of 120, 60 and 20 points in the plane (rows in
    group order)."""
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(c, 1.0, size=(n, 2))
                           for c, n in zip(((0, 0), (50, 0), (0, 50)), SIZES)])


def groups():
    bounds = np.cumsum((0,) + SIZES)
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def most_typical(x, members, k=20):
    """The paper's definition, by brute force: 1 / mean distance to the k nearest others."""
    best, best_t = None, -1.0
    for i in members:
        d = sorted(np.linalg.norm(x[i] - x[j]) for j in members if j != i)[:k]
        t = 1.0 / np.mean(d)
        if t > best_t:
            best, best_t = i, t
    return best


def nearest_to_mean(x, members):
    m = x[members].mean(axis=0)
    return members[np.argmin(((x[members] - m) ** 2).sum(axis=1))]


EXPECTED = {TypiClust: most_typical, KMeansCentres: nearest_to_mean}


@pytest.mark.parametrize("cls", STRATEGIES)
def test_one_pick_per_cluster_largest_first(cls):
    x = blobs()
    picks = cls(seed=0).select(x, 3)
    np.testing.assert_array_equal(picks, [EXPECTED[cls](x, g) for g in groups()])


@pytest.mark.parametrize("cls", STRATEGIES)
def test_covered_clusters_are_skipped(cls):
    x = blobs()
    # the largest group already has a label: the two picks go to the other groups
    picks = cls(seed=0).select(x, 2, indices_labeled=[5])
    np.testing.assert_array_equal(picks, [EXPECTED[cls](x, g) for g in groups()[1:]])


@pytest.mark.parametrize("cls", STRATEGIES)
def test_more_picks_than_clusters_are_distinct_and_unlabeled(cls):
    x = np.repeat(np.eye(3), 4, axis=0)          # only 3 distinct points, 12 rows
    picks = cls(seed=1).select(x, 7, indices_labeled=[0, 1])
    assert picks.size == 7 and np.unique(picks).size == 7
    assert not set(picks.tolist()) & {0, 1}


def test_typicality_prefers_the_dense_point_over_the_centre_of_mass():
    # one cluster: a tight clump of 30 points near (0, 0) and 10 scattered far to the right;
    # the mean lies between them, the most typical point is in the clump
    rng = np.random.default_rng(0)
    clump = rng.normal(0.0, 0.05, size=(30, 2))
    far = np.c_[np.linspace(3, 4, 10), np.zeros(10)]
    x = np.concatenate([clump, far])
    pick = TypiClust(seed=0).select(x, 1)[0]
    assert pick < 30
    mean = x.mean(axis=0)
    assert KMeansCentres(seed=0).select(x, 1)[0] == np.argmin(((x - mean) ** 2).sum(axis=1))


@pytest.mark.parametrize("cls", STRATEGIES)
def test_sparse_and_dense_agree(cls):
    x = blobs()
    np.testing.assert_array_equal(cls(seed=0).select(sp.csr_matrix(x), 3), cls(seed=0).select(x, 3))


@pytest.mark.parametrize("cls", STRATEGIES)
def test_seeded_and_subsampled(cls):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 8)).astype(np.float32)
    a = cls(seed=5, max_samples=100).select(x, 10)
    np.testing.assert_array_equal(a, cls(seed=5, max_samples=100).select(x, 10))
    assert np.unique(a).size == 10


@pytest.mark.parametrize("cls", STRATEGIES)
def test_bad_input_is_a_clear_error(cls):
    x = blobs()
    with pytest.raises(ValueError, match="n=200 exceeds the 199 unlabeled rows"):
        cls().select(x, 200, indices_labeled=[0])
    with pytest.raises(InvalidParameterError, match="n must be a positive integer, got 0"):
        cls().select(x, 0)
    with pytest.raises(ValueError, match="indices_labeled must be row positions"):
        cls().select(x, 1, indices_labeled=[1000])
    with pytest.raises(ValueError, match="NaN or infinite"):
        cls().select(np.full((3, 2), np.nan), 1)
    with pytest.raises(ValueError, match="2-D"):
        cls().select(np.zeros(5), 1)
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        cls(n_neighbors=True)
