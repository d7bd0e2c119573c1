"""al_engine.stopping_set: the one definition of what a stopping criterion sees (predictions
from probabilities over a fixed set, its unlabeled members as ``indices_stopping``)."""
import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.stopping import (ClassificationChange, KappaAverage, MaxIterations,
                                OverallUncertainty)
from al_engine.stopping_set import StoppingSet, criterion_step, stop_arguments


def test_stop_arguments_single_and_multi_label():
    proba = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    kw = stop_arguments(proba, False, [2, 0])
    assert kw["predictions"].tolist() == [1, 0, 0]  # argmax, ties to the lower id
    assert kw["indices_stopping"].tolist() == [2, 0] and kw["indices_stopping"].dtype == np.int64
    assert kw["proba"] is not None and np.array_equal(kw["proba"], proba)
    ml = stop_arguments(proba, True, [])
    assert sp.issparse(ml["predictions"])
    assert ml["predictions"].toarray().tolist() == [[0, 1], [1, 0], [0, 0]]  # p > 0.5
    assert ml["indices_stopping"].size == 0


def test_stopping_set_follows_its_members_across_rounds():
    members = StoppingSet(np.array([10, 11, 12]))
    assert len(members) == 3
    # a later round: rows in another order, a new task 13 that is not a member
    ids = np.array([13, 12, 10, 11])
    proba = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2], [0.4, 0.6]])
    assert members.covers(ids) and not members.covers(np.array([10, 12, 13]))
    assert members.positions(ids).tolist() == [2, 3, 1]
    kw = members.stop_arguments(ids, proba, labeled_ids=np.array([11, 13]), multi_label=False)
    assert kw["proba"].tolist() == [[0.8, 0.2], [0.4, 0.6], [0.3, 0.7]]  # members' rows
    assert kw["predictions"].tolist() == [0, 1, 1]
    assert kw["indices_stopping"].tolist() == [0, 2]  # 10 and 12 are unlabeled


def test_overall_uncertainty_sees_only_the_unlabeled_members():
    """The labeled members are certain; the unlabeled ones are not: a criterion fed the whole
    set would average them away."""
    proba = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.5]])
    kw = StoppingSet(np.array([1, 2, 3])).stop_arguments(
        np.array([1, 2, 3]), proba, labeled_ids=np.array([1, 2]), multi_label=False)
    crit = OverallUncertainty(num_classes=2, threshold=0.5)
    stop, value = criterion_step(crit, **kw)
    assert value == pytest.approx(1.0) and stop is False  # entropy of [.5, .5] only


def test_criterion_step_reports_the_statistic_of_this_call():
    a, b = np.array([0, 1, 1, 0]), np.array([0, 1, 1, 1])
    kappa = KappaAverage(num_classes=2, window_size=2, kappa=0.5)
    steps = [criterion_step(kappa, predictions=p) for p in (a, b, b, b)]
    assert steps[0] == (False, None)  # nothing to compare yet
    assert steps[1][1] == pytest.approx(0.5) and steps[1][0] is False  # window not full
    assert steps[2] == (True, 1.0)  # window [0.5, 1.0] full: mean 0.75 >= 0.5
    assert steps[3] == (True, 1.0)  # full window cut to its size: still a new value
    change = ClassificationChange(num_classes=2)
    assert criterion_step(change, predictions=a) == (False, None)
    assert criterion_step(change, predictions=b) == (False, 0.25)
    assert criterion_step(MaxIterations(1)) == (True, None)  # no history: no statistic
