"""DiverseMiniBatch: uncertainty pre-filter, one pick per weighted k-means cluster."""
import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError
from al_engine.query.diverse import DiverseMiniBatch
from al_engine.query.uncertainty import BreakingTies
from tests.engine.conftest import FixedProbaClassifier

# margins of rows 0..9: four near-duplicates (rows 0-3, all at (1, 0)) are the most
# uncertain, two rows at (0, 1) come next, four confident rows at (-1, 0)
MARGINS = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.9, 0.9, 0.9, 0.9])
POINTS = np.array([[1, 0]] * 4 + [[0, 1]] * 2 + [[-1, 0]] * 4, dtype=float)


class EmbeddingClassifier(FixedProbaClassifier):
    def __init__(self):
        super().__init__(np.c_[0.5 + MARGINS / 2, 0.5 - MARGINS / 2])

    def embed(self, dataset, return_proba=False, **kwargs):
        x = dataset.x
        return (x, self.proba) if return_proba else x


def args():
    ds = Dataset(x=POINTS, y=np.full(10, -1))
    return dict(clf=EmbeddingClassifier(), dataset=ds, indices_unlabeled=np.arange(10),
                indices_labeled=np.array([], dtype=np.int64), y=np.array([], dtype=np.int64))


def test_one_pick_per_cluster_where_breaking_ties_takes_duplicates():
    # candidates: the 3 * 2 smallest margins = rows 0-5; two clusters {0..3} and {4, 5};
    # the first row nearest each centre (ties by position), ordered by margin
    np.testing.assert_array_equal(DiverseMiniBatch(beta=3).query(**args(), n=2), [0, 4])
    np.testing.assert_array_equal(BreakingTies().query(**args(), n=2), [0, 1])


def test_beta_one_is_breaking_ties():
    np.testing.assert_array_equal(DiverseMiniBatch(beta=1).query(**args(), n=3),
                                  BreakingTies().query(**args(), n=3))


def test_rank_puts_the_batch_first_then_the_rest_by_margin():
    order = DiverseMiniBatch(beta=3).rank(**args(), n=2)
    np.testing.assert_array_equal(order, [0, 4, 1, 2, 3, 5, 6, 7, 8, 9])


def test_bad_parameters():
    with pytest.raises(InvalidParameterError, match="beta"):
        DiverseMiniBatch(beta=0)
    with pytest.raises(ValueError, match="seed"):
        DiverseMiniBatch(seed=-1)


def test_density_weighting_passes_over_an_isolated_outlier():
    # row 0: the smallest margin but alone at (0, 1); rows 1-5 at (1, 0) with margin 0.05
    margins = np.array([0.01, 0.05, 0.05, 0.05, 0.05, 0.05])
    points = np.array([[0, 1]] + [[1, 0]] * 5, dtype=float)
    clf = FixedProbaClassifier(np.c_[0.5 + margins / 2, 0.5 - margins / 2])
    clf.embed = lambda dataset, return_proba=False, **kw: dataset.x
    a = dict(clf=clf, dataset=Dataset(x=points, y=np.full(6, -1)), indices_unlabeled=np.arange(6),
             indices_labeled=np.array([], dtype=np.int64), y=np.array([], dtype=np.int64))
    assert DiverseMiniBatch(beta=1).query(**a, n=1).tolist() == [0]
    # density of row 0 = mean cosine similarity to its 2 nearest = 0, so w_0 = 0;
    # rows 1..3 (the 4 * beta * n pre-filter) have density 1 and w = 0.95: the first wins
    assert DiverseMiniBatch(beta=1, density_power=1.0, n_neighbors=2).query(**a, n=1).tolist() == [1]


def test_bad_density_parameters():
    with pytest.raises(InvalidParameterError, match="density_power"):
        DiverseMiniBatch(density_power=-1)
    with pytest.raises(InvalidParameterError, match="n_neighbors"):
        DiverseMiniBatch(n_neighbors=0)
