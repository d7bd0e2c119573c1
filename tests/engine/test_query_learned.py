"""DiscriminativeActiveLearning and ClassBalancer: hand-built cases, the sub-batch
procedure, small-text 1.4.1 equivalence for DAL, and ClassBalancer's fixes of small-text
2.0's defects."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from al_engine.classifiers.base import ClassifierFactory
from al_engine.data import Dataset
from al_engine.exceptions import MultiLabelNotSupportedError
from al_engine.query.class_balancer import ClassBalancer, balanced_class_order
from al_engine.query.dal import DiscriminativeActiveLearning, query_sizes
from al_engine.query.uncertainty import BreakingTies
from tests.engine.conftest import FixedProbaClassifier, LinearStubClassifier, make_pool


# ------------------------------------------------------------------ DAL
class EmbedClassifier(LinearStubClassifier):
    """``embed`` returns ``dataset.x`` (the stub's behaviour), counted."""


def dal_pool():
    """1-D embeddings: 4 labeled rows near 0, unlabeled rows at 0.1 .. 0.4 and 3 .. 6."""
    x = np.array([0., .05, -.05, .02,             # labeled
                  .1, 5., .2, 3., .3, 6., .4, 4.])[:, None]
    ds = Dataset(x=x)
    return ds, np.arange(4, 12), np.arange(4)


def test_query_sizes_like_small_text():
    assert query_sizes(3, 10) == [3, 3, 4]
    assert query_sizes(1, 5) == [5]
    assert query_sizes(20, 5) == [1] * 5     # small-text raises; capped here


def test_dal_picks_what_is_least_like_the_labeled_pool():
    ds, unlabeled, labeled = dal_pool()
    clf = EmbedClassifier(num_classes=2, num_features=1)
    result = DiscriminativeActiveLearning(num_iterations=1, seed=0).query(
        clf, ds, unlabeled, labeled, np.zeros(4, dtype=np.int64), n=4)
    assert result.tolist() == [9, 5, 11, 7]             # x = 6, 5, 4, 3: best first
    assert clf.calls["embed"] == 1


class RecordingLR(LogisticRegression):
    """Records every training set it is fitted on (cloned per sub-batch: class-level log)."""
    log: list = []

    def fit(self, X, y, sample_weight=None):
        assert sample_weight is None
        RecordingLR.log.append((np.asarray(X).ravel().copy(), np.asarray(y).copy()))
        return super().fit(X, y)


def test_dal_sub_batches_retrain_with_the_picks_as_labeled():
    RecordingLR.log = []
    ds, unlabeled, labeled = dal_pool()
    strategy = DiscriminativeActiveLearning(classifier_factory=RecordingLR(), num_iterations=2,
                                            unlabeled_factor=1, seed=0)
    result = strategy.query(EmbedClassifier(2, 1), ds, unlabeled, labeled, np.zeros(4), n=4)
    assert len(RecordingLR.log) == 2
    (x1, t1), (x2, t2) = RecordingLR.log
    # 1st fit: min(4 labeled * 1, 8 unlabeled) = 4 unlabeled (target 1) + the 4 labeled (0)
    assert t1.tolist() == [1] * 4 + [0] * 4
    np.testing.assert_array_equal(np.sort(x1[4:]), np.sort(ds.x[labeled].ravel()))
    # 2nd fit: the 2 picks of the 1st sub-batch count as labeled: 6 unlabeled vs 6 labeled
    first = result[:2]
    assert t2.tolist() == [1] * 6 + [0] * 6
    np.testing.assert_array_equal(x2[-2:], ds.x[first].ravel())
    assert not np.isin(x2[:6], ds.x[first].ravel()).any()
    assert np.unique(result).size == 4 and np.isin(result, unlabeled).all()


def test_dal_default_equals_explicit_estimator_and_factory():
    pool = make_pool(80, 8)
    args = pool.args()
    default = DiscriminativeActiveLearning(num_iterations=3, seed=1).query(**args, n=9)
    explicit = DiscriminativeActiveLearning(LogisticRegression(max_iter=1000), num_iterations=3,
                                            seed=1).query(**args, n=9)
    assert default.tolist() == explicit.tolist()

    class LRClassifier:
        def __init__(self, num_classes):
            self.model = LogisticRegression(max_iter=1000)

        def fit(self, train_set, weights=None):
            self.model.fit(train_set.x, train_set.y)
            return self

        def predict_proba(self, dataset):
            return self.model.predict_proba(dataset.x)

    factory = ClassifierFactory(LRClassifier, num_classes=2)
    via_factory = DiscriminativeActiveLearning(factory, num_iterations=3, seed=1).query(**args, n=9)
    assert via_factory.tolist() == default.tolist()


def test_dal_equals_small_text_when_the_subsample_is_the_whole_pool():
    st_q = pytest.importorskip("small_text.query_strategies")
    st_clf = pytest.importorskip("small_text.classifiers")
    st_data = pytest.importorskip("small_text.data")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(70, 6))
    labeled = np.arange(10)                  # 10 * unlabeled_factor 10 >= 60 unlabeled
    unlabeled = np.arange(10, 70)
    y = np.full(70, -1)
    y[labeled] = np.arange(10) % 2
    factory = st_clf.SklearnClassifierFactory(LogisticRegression(max_iter=1000), 2)
    theirs = st_q.DiscriminativeActiveLearning(factory, num_iterations=3, pbar=None)
    st_ds = st_data.SklearnDataset(x, np.where(y < 0, 0, y))
    their_pick = theirs.query(None, st_ds, unlabeled, labeled, y[labeled], n=12)
    ours = DiscriminativeActiveLearning(num_iterations=3, seed=0)
    our_pick = ours.query(EmbedClassifier(2, 6), Dataset(x=x, y=y), unlabeled, labeled,
                          y[labeled], n=12)
    for k in range(3):                      # the same set in every sub-batch
        assert sorted(our_pick[4 * k:4 * k + 4]) == sorted(their_pick[4 * k:4 * k + 4])


def test_dal_rank_orders_by_one_discriminator():
    ds, unlabeled, labeled = dal_pool()
    order = DiscriminativeActiveLearning(seed=0).rank(EmbedClassifier(2, 1), ds, unlabeled,
                                                      labeled, np.zeros(4))
    assert order.tolist() == [9, 5, 11, 7, 10, 8, 6, 4]      # descending x


def test_dal_needs_a_labeled_instance():
    ds, unlabeled, _ = dal_pool()
    with pytest.raises(ValueError, match="at least one labeled"):
        DiscriminativeActiveLearning(seed=0).query(EmbedClassifier(2, 1), ds, unlabeled,
                                                   np.array([], dtype=np.int64), None, n=2)


@pytest.mark.parametrize("params", [{"num_iterations": 0}, {"unlabeled_factor": 1.5},
                                    {"pbar": "bar"}, {"classifier_factory": 3}])
def test_dal_bad_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        DiscriminativeActiveLearning(**params)


# ------------------------------------------------------------------ ClassBalancer
def test_balanced_class_order_hand_computed():
    # deficits 2, 0, 1 -> levels c0: 2 1 0 -1, c1: 0 -1, c2: 1 0 -1; ties by priority
    classes, within = balanced_class_order(np.array([2, 0, 1]), np.array([4, 2, 3]),
                                           np.ones(3, bool), np.array([0, 1, 2]))
    assert classes.tolist() == [0, 0, 2, 0, 1, 2, 0, 1, 2]
    assert within.tolist() == [0, 1, 0, 2, 0, 1, 3, 1, 2]
    # class 0 ignored: it comes last, after every active class is exhausted
    classes, _ = balanced_class_order(np.array([2, 0, 1]), np.array([2, 1, 1]),
                                      np.array([False, True, True]), np.array([0, 1, 2]))
    assert classes.tolist() == [2, 1, 0, 0]


# Rows 0..8 unlabeled; argmax classes 0,0,0,1,1,1,2,2,2 with BT margins as commented.
CB_PROBA = np.array([
    [.5, .3, .2], [.9, .05, .05], [.4, .35, .25],     # class 0, margins .2 .85 .05
    [.3, .6, .1], [.45, .5, .05], [.1, .8, .1],        # class 1, margins .3 .05 .7
    [.2, .2, .6], [.3, .25, .45], [.05, .05, .9],      # class 2, margins .4 .15 .85
    [1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0]])       # labeled rows 9..12: y 0 0 0 1


def cb_query(strategy, n, proba=CB_PROBA, unlabeled=np.arange(9), labeled=np.arange(9, 13),  # noqa: B008
             y=np.array([0, 0, 0, 1])):  # noqa: B008 - read-only defaults
    ds = Dataset(x=np.zeros((len(proba), 1)))
    return strategy.query(FixedProbaClassifier(proba), ds, unlabeled, labeled, y, n=n).tolist()


def test_class_balancer_hand_computed():
    # labeled histogram [3, 1, 0] -> deficits [0, 2, 3]: picks go c2 (level 3), then c1 and
    # c2 at level 2, then c0/c1/c2 at level 1 ... ; within a class BreakingTies' order.
    strategy = ClassBalancer(seed=0)
    result = cb_query(strategy, 3)
    assert result[0] == 7                                   # c2's smallest margin
    assert sorted(result) == [4, 6, 7]                      # c1: 4 ; c2: 7, 6
    assert strategy.class_counts_.tolist() == [0, 1, 2]
    # n=6: levels 3 2 2 1 1 give c2 c1 c2 c1 c2; the 6th is a tie at level 0 between c0's
    # best (row 2) and c1's last (row 5), decided by the seeded class priority.
    result = cb_query(ClassBalancer(seed=0), 6)
    assert result[:5] == [7, 4, 6, 3, 8] or result[:5] == [7, 6, 4, 3, 8]
    assert result[5] in (2, 5)
    sixth = {cb_query(ClassBalancer(seed=s), 6)[5] for s in range(20)}
    assert sixth == {2, 5}


def test_class_balancer_predicts_once():
    pool = make_pool(60, 10)
    ClassBalancer(seed=0).query(**pool.args(), n=7)
    assert pool.clf.calls["predict_proba"] == 1


def test_class_balancer_exhausted_class_does_not_raise():
    # Only one row predicted as class 2 although it needs 3 (small-text 2.0 asks its base
    # strategy for 2 of class 2 and raises PoolExhausted); the greedy goes on with class 1.
    proba = CB_PROBA.copy()
    proba[[6, 7]] = [[.2, .7, .1], [.1, .6, .3]]           # now class 1 (margins .5, .3)
    strategy = ClassBalancer(seed=0)
    result = cb_query(strategy, 4, proba=proba)
    assert strategy.class_counts_.tolist() == [0, 3, 1]
    assert result[0] == 8 and sorted(result) == [3, 4, 7, 8]


def test_class_balancer_ignored_classes_fill_only_at_the_end():
    strategy = ClassBalancer(ignored_classes=[2], seed=0)
    result = cb_query(strategy, 5)
    # active classes 0 (3 rows) and 1 (3 rows) can give 5: class 2 is not used
    assert strategy.class_counts_[2] == 0 and len(result) == 5
    result = cb_query(strategy, 8)
    # 6 active rows, then 2 from the ignored class, which small-text would drop
    assert strategy.class_counts_.tolist() == [3, 3, 2] and len(set(result)) == 8


def test_class_balancer_base_strategy_and_rank():
    by_name = cb_query(ClassBalancer("breaking_ties", seed=0), 5)
    by_instance = cb_query(ClassBalancer(BreakingTies(), seed=0), 5)
    assert by_name == by_instance
    ds = Dataset(x=np.zeros((13, 1)))
    order = ClassBalancer(seed=0).rank(FixedProbaClassifier(CB_PROBA), ds, np.arange(9),
                                       np.arange(9, 13), np.array([0, 0, 0, 1]))
    assert order[:5].tolist() == by_name
    assert sorted(order.tolist()) == list(range(9))


def test_class_balancer_subsample():
    pool = make_pool(60, 10)
    strategy = ClassBalancer(subsample_size=12, seed=3)
    result = strategy.query(**pool.args(), n=5)
    assert len(set(result.tolist())) == 5 and np.isin(result, pool.indices_unlabeled).all()
    order = strategy.rank(**pool.args())
    assert sorted(order.tolist()) == pool.indices_unlabeled.tolist()


def test_class_balancer_rejects_multi_label_and_bad_params():
    pool = make_pool(multi_label=True)
    with pytest.raises(MultiLabelNotSupportedError):
        ClassBalancer(seed=0).query(**pool.args(), n=2)
    with pytest.raises(ValueError, match="subsample_size"):
        ClassBalancer(subsample_size=0)
    with pytest.raises(ValueError, match="ignored_classes"):
        ClassBalancer(ignored_classes=[-1])
    with pytest.raises(ValueError, match="base_query_strategy"):
        ClassBalancer(base_query_strategy="label_cardinality_inconsistency")


def test_dal_indices_out_of_range_are_a_clear_error():
    """small-text's own tests pass 100 indices into a 10-row dataset: a ValueError naming the
    range, not an IndexError from deep inside."""
    ds, unlabeled, labeled = dal_pool()
    clf = EmbedClassifier(num_classes=2, num_features=1)
    with pytest.raises(ValueError, match="out of range for a dataset of 12 rows"):
        DiscriminativeActiveLearning(num_iterations=1).query(
            clf, ds, np.array([4, 5, 40]), labeled, np.zeros(4, dtype=np.int64), n=2)
