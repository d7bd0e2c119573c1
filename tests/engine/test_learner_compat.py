"""PoolBasedActiveLearner with small-text's conventions: signatures and positional order,
small-text datasets as the pool, fit_kwargs, representation, ignored labels, save/load."""
import io
from unittest.mock import Mock

import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.classifiers.base import ClassifierFactory
from al_engine.data import Dataset
from al_engine.learner import LABEL_IGNORED, PoolBasedActiveLearner
from al_engine.query.random import RandomSampling

from tests.engine.learner_stubs import CentroidClassifier
from tests.engine.smalltext_fakes import FakeSklearnDataset
from tests.engine.test_learner import FirstPositions

X = np.arange(10, dtype=float)[:, None]
Y_TRUE = (np.arange(10) >= 5).astype(np.int64)


class RecordingClassifier(CentroidClassifier):
    """Records every fit's keyword arguments and training labels."""

    def fit(self, train_set, weights=None, **kwargs):
        self.calls = getattr(self, "calls", []) + [(np.asarray(train_set.y).tolist(), kwargs)]
        return super().fit(train_set, weights)


def learner(pool=None, **kw):
    return PoolBasedActiveLearner(lambda: RecordingClassifier(2), FirstPositions(),
                                  Dataset(x=X) if pool is None else pool, **kw)


def test_trains_on_a_small_text_pool_without_touching_it():
    pool = FakeSklearnDataset(X, np.full(10, -1))
    al = learner(pool)
    al.initialize_data(np.array([0, 9]), Y_TRUE[[0, 9]])
    al.update(Y_TRUE[al.query(3)])
    assert al.classifier.calls[-1][0] == [0, 1, 0, 0, 0]
    assert isinstance(al.training_set(), FakeSklearnDataset)
    np.testing.assert_array_equal(pool.y, -1)


def test_positional_order_and_fit_kwargs_follow_small_text():
    al = PoolBasedActiveLearner(lambda: RecordingClassifier(2), FirstPositions(), Dataset(x=X),
                                {"C": 2.0}, True)  # fit_kwargs, reuse_model
    assert al.reuse_model and al.incremental_training
    # initialize_data(indices, y, indices_ignored, indices_validation): position 1 of [0, 9, 8]
    al.initialize_data(np.array([0, 9, 8]), Y_TRUE[[0, 9, 8]], None, [1])
    assert al.classifier.calls[-1] == ([0, 1], {"C": 2.0, "validation_set": ANY_DATASET})
    al.query(1)
    al.update(np.array([0]), [0])  # update(y, indices_validation)
    labels, kwargs = al.classifier.calls[-1]
    assert labels == [1, 1, 0] and kwargs["validation_set"].y.tolist() == [0]


class _AnyDataset:
    def __eq__(self, other):
        return isinstance(other, Dataset)


ANY_DATASET = _AnyDataset()


def test_query_after_initialize_data_without_training_passes_no_classifier():
    al = PoolBasedActiveLearner(lambda: RecordingClassifier(2), RandomSampling(seed=0),
                                Dataset(x=X))
    al.initialize_data(np.array([0, 9]), Y_TRUE[[0, 9]], retrain=False)
    assert al.classifier is None
    queried = al.query(3)
    assert queried.size == 3 and not np.isin(queried, [0, 9]).any()


def test_representation_and_a_strategy_return_value_are_passed_through():
    strategy = Mock()
    al = PoolBasedActiveLearner(lambda: RecordingClassifier(2), strategy, Dataset(x=X))
    indices, y = np.array([0, 9]), Y_TRUE[[0, 9]]
    al.initialize_data(indices, y)
    custom = np.zeros((10, 4))
    result = al.query(2, custom)
    args = strategy.query.call_args.args
    assert args[1] is custom and args[3] is indices and args[4] is y
    assert result is strategy.query.return_value and al.query_history_[-1]["indices"] is None
    with pytest.raises(ValueError, match="representation has 9 rows but the pool has 10"):
        al.query(2, representation=np.zeros((9, 4)))


def test_ignored_labels_and_ignore_sample_at():
    al = learner()
    al.initialize_data(np.array([0, 9]), Y_TRUE[[0, 9]])
    np.testing.assert_array_equal(al.query(3), [1, 2, 3])
    al.update(np.array([0, LABEL_IGNORED, 0]))
    np.testing.assert_array_equal(al.indices_labeled, [0, 9, 1, 3])
    np.testing.assert_array_equal(al.indices_ignored, [2])
    np.testing.assert_array_equal(al.y, [0, 1, 0, 0])
    al.ignore_sample_at(9, retrain=True)
    np.testing.assert_array_equal(al.indices_labeled, [0, 1, 3])
    np.testing.assert_array_equal(al.indices_ignored, [2, 9])
    assert al.classifier.calls[-1][0] == [0, 0, 0]
    np.testing.assert_array_equal(al.query(2), [4, 5])


def test_update_checks_the_count_and_duplicates():
    al = learner()
    al.initialize_data(np.array([0, 9]), Y_TRUE[[0, 9]])
    al.query(2)
    with pytest.raises(ValueError, match="Query-update mismatch: indices queried - 2 / labels provided - 3"):
        al.update(np.array([0, 0, 0]))
    al.indices_queried = np.array([0, 4])
    with pytest.raises(ValueError, match="Duplicate indices"):
        al.update(np.array([0, 0]))


@pytest.mark.parametrize("kind", ["path", "str", "handle"])
def test_save_and_load(tmp_path, kind):
    al = PoolBasedActiveLearner(ClassifierFactory(CentroidClassifier, 2), RandomSampling(seed=1),
                                Dataset(x=X))
    al.initialize_data(np.array([0, 9]), Y_TRUE[[0, 9]])
    al.update(Y_TRUE[al.query(2)])
    target = tmp_path / "learner.pkl"
    if kind == "handle":
        buffer = io.BytesIO()
        al.save(buffer)
        buffer.seek(0)
        loaded = PoolBasedActiveLearner.load(buffer)
    else:
        al.save(target if kind == "path" else str(target))
        loaded = PoolBasedActiveLearner.load(target if kind == "path" else str(target))
    np.testing.assert_array_equal(loaded.indices_labeled, al.indices_labeled)
    np.testing.assert_array_equal(loaded.classifier.predict_proba(Dataset(x=X)),
                                  al.classifier.predict_proba(Dataset(x=X)))
    with pytest.raises(TypeError, match="not a PoolBasedActiveLearner"):
        PoolBasedActiveLearner.load(io.BytesIO(b"\x80\x04K\x01."))  # pickled int 1


def test_save_names_an_unpicklable_factory():
    al = learner()
    with pytest.raises(TypeError, match="cannot pickle this PoolBasedActiveLearner"):
        al.save(io.BytesIO())


# ------------------------------------------------------------------ small-text 2.0's initialize
def test_cold_start_initialize_none_then_query_and_update():
    al = PoolBasedActiveLearner(lambda: RecordingClassifier(2), RandomSampling(seed=0),
                                Dataset(x=X))
    al.initialize(None)
    assert al.classifier is None and al.y.shape == (0,) and al.indices_labeled.size == 0
    queried = al.query(4)
    al.update(Y_TRUE[queried])
    np.testing.assert_array_equal(al.indices_labeled, queried)
    assert al.classifier.calls[-1][0] == Y_TRUE[queried].tolist()


def test_initialize_with_a_classifier_or_the_pools_own_labels():
    pool = Dataset(x=X, y=np.array([0, -1, -1, -1, -1, -1, -1, -1, 1, 1]))
    al = learner(pool)
    fitted = CentroidClassifier(2).fit(pool[[0, 8]])
    al.initialize(fitted)
    assert al.classifier is fitted and al.indices_labeled.size == 0
    np.testing.assert_array_equal(al.query(2), [0, 1])  # FirstPositions: all unlabeled
    al = learner(pool)
    al.initialize(np.array([0, 9]))
    np.testing.assert_array_equal(al.y, [0, 1])
    assert al.classifier.calls[-1][0] == [0, 1]
    with pytest.raises(ValueError, match=r"no label at positions \[1\]"):
        learner(pool).initialize(np.array([0, 1]))
    with pytest.raises(ValueError, match="clf_or_indices must be"):
        learner(pool).initialize("random")


def test_cold_start_of_a_multi_label_pool_keeps_csr_labels():
    pool = Dataset(x=X, y=sp.csr_matrix((10, 3), dtype=np.int8), multi_label=True)
    al = learner(pool)
    al.initialize(None)
    assert sp.issparse(al.y) and al.y.shape == (0, 3)
