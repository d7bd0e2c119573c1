import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.data import Dataset
from al_engine.exceptions import LearnerNotInitializedError
from al_engine.learner import PoolBasedActiveLearner
from al_engine.query.base import ScoringQueryStrategy

from tests.engine.learner_stubs import CentroidClassifier


class FirstPositions(ScoringQueryStrategy):
    """Scores = -position: always prefers the smallest unlabeled position."""
    lower_is_better = False

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y):
        return -np.arange(len(dataset), dtype=float)


def make_pool(n=10):
    x = np.arange(n, dtype=float)[:, None]
    y_true = (np.arange(n) >= n // 2).astype(np.int64)
    return Dataset(x=x), y_true


def make_learner(**kw):
    pool, y_true = make_pool()
    learner = PoolBasedActiveLearner(lambda: CentroidClassifier(2), FirstPositions(), pool, **kw)
    return learner, y_true


def test_query_before_initialize_raises():
    learner, _ = make_learner()
    with pytest.raises(LearnerNotInitializedError):
        learner.query(2)


def test_initialize_query_update_cycle_tracks_labels_and_history():
    learner, y_true = make_learner()
    learner.initialize_data([0, 9], y_true[[0, 9]])
    np.testing.assert_array_equal(learner.indices_unlabeled, np.arange(1, 9))
    q = learner.query(3)
    np.testing.assert_array_equal(q, [1, 2, 3])
    learner.update(y_true[q])
    np.testing.assert_array_equal(learner.indices_labeled, [0, 9, 1, 2, 3])
    np.testing.assert_array_equal(learner.y, [0, 1, 0, 0, 0])
    assert learner.classifier.train_size_ == 5
    np.testing.assert_array_equal(learner.query(2), [4, 5])
    assert [h["indices"] for h in learner.query_history_] == [[1, 2, 3], [4, 5]]
    assert learner.query_history_[0]["scores"] == [-1.0, -2.0, -3.0]
    assert learner.query_history_[1]["labeled"] == 5


def test_update_without_query_and_wrong_label_count_raise():
    learner, y_true = make_learner()
    learner.initialize_data([0, 9], y_true[[0, 9]])
    with pytest.raises(LearnerNotInitializedError):
        learner.update([0])
    learner.query(2)
    with pytest.raises(ValueError, match="expected 2"):
        learner.update([0])


def test_full_retraining_builds_new_classifier_incremental_reuses_it():
    learner, y_true = make_learner()
    learner.initialize_data([0, 9], y_true[[0, 9]])
    first = learner.classifier
    learner.update(y_true[learner.query(1)])
    assert learner.classifier is not first

    learner, y_true = make_learner(incremental_training=True)
    learner.initialize_data([0, 9], y_true[[0, 9]])
    first = learner.classifier
    learner.update(y_true[learner.query(1)])
    assert learner.classifier is first and first.fit_calls == 2


def test_update_label_at_corrects_or_adds_and_remove_label_at():
    learner, y_true = make_learner()
    learner.initialize_data([0, 9], y_true[[0, 9]])
    learner.update_label_at(9, 0)
    np.testing.assert_array_equal(learner.y, [0, 0])
    learner.update_label_at(4, 1, retrain=True)
    np.testing.assert_array_equal(learner.indices_labeled, [0, 9, 4])
    assert learner.classifier.train_size_ == 3
    learner.remove_label_at(0)
    np.testing.assert_array_equal(learner.indices_labeled, [9, 4])
    np.testing.assert_array_equal(learner.y, [0, 1])
    assert 0 in learner.indices_unlabeled
    with pytest.raises(ValueError, match="not labeled"):
        learner.remove_label_at(0)


def test_ignored_positions_are_never_queried():
    learner, y_true = make_learner()
    learner.initialize_data([0, 9], y_true[[0, 9]], indices_ignored=[1, 2])
    np.testing.assert_array_equal(learner.query(2), [3, 4])
    with pytest.raises(ValueError, match="overlap"):
        learner.initialize_data([0, 1], y_true[[0, 1]], indices_ignored=[1])


def test_bad_initial_indices_raise():
    learner, y_true = make_learner()
    with pytest.raises(IndexError):
        learner.initialize_data([0, 10], [0, 1])
    with pytest.raises(ValueError, match="duplicates"):
        learner.initialize_data([0, 0], [0, 0])
    with pytest.raises(ValueError, match="negative"):
        learner.initialize_data([0, 1], [0, -1])


def test_multi_label_labels_are_stacked_as_csr():
    x = np.arange(6, dtype=float)[:, None]
    pool = Dataset(x=x, y=sp.csr_matrix((6, 3), dtype=np.int8), multi_label=True)

    class Dummy(CentroidClassifier):
        def fit(self, train_set, weights=None):
            self.seen_ = train_set.y.toarray()
            return self

    learner = PoolBasedActiveLearner(lambda: Dummy(3, multi_label=True), FirstPositions(), pool)
    learner.initialize_data([5], sp.csr_matrix([[1, 0, 1]]))
    learner.query_strategy.supports_multi_label = True
    q = learner.query(2)
    learner.update(sp.csr_matrix([[0, 1, 0], [0, 0, 0]]))
    np.testing.assert_array_equal(q, [0, 1])
    np.testing.assert_array_equal(learner.classifier.seen_, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="indicator"):
        learner.update_label_at(2, 1)


def test_retrained_classifier_predicts_raw_texts_with_the_pool_featurizer():
    from al_engine.registry import make_classifier, make_query_strategy
    texts = [f"{w} {w} item {i}" for i in range(20) for w in ("apple", "rocket")]
    y_true = np.array([0, 1] * 20)
    pool = Dataset.from_texts(texts)
    learner = PoolBasedActiveLearner(lambda: make_classifier("linear_svc", num_classes=2),
                                     make_query_strategy("least_confidence"), pool)
    learner.initialize_data([0, 1, 2, 3], y_true[[0, 1, 2, 3]])
    learner.update(y_true[learner.query(2)])
    new = Dataset.from_texts(["apple apple fresh", "rocket rocket launch"])
    np.testing.assert_array_equal(learner.classifier.predict(new), [0, 1])
    # the vocabulary is the pool's, not refitted on the two new texts
    assert learner.classifier.featurizer is learner._featurizer_owner.featurizer
