"""al_engine.accuracy: Wilson interval, probe placement and the cross-fitted probe estimate."""
import numpy as np
import pytest

from al_engine.accuracy import place_probes, probe_accuracy, wilson_interval
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError


def test_wilson_interval_hand_computed():
    # 8/10, z = 1.959964: centre (0.8 + z^2/20) / (1 + z^2/10) = 0.7167,
    # half = z / (1 + z^2/10) * sqrt(0.016 + z^2/400) = 0.2266
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    # all correct: high is 1, low = n / (n + z^2) = 10 / 13.8415 = 0.7225
    assert high == 1.0 and low == pytest.approx(10 / (10 + 1.959964 ** 2), abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_place_probes_is_a_permutation_with_probes_in_the_head():
    order = np.arange(100, 200)
    new, probes = place_probes(order, 0.3, 40, np.random.default_rng(1))
    assert sorted(new.tolist()) == order.tolist()
    slots = np.flatnonzero(np.isin(new, probes))
    assert slots.size == probes.size > 0 and slots.max() < 40
    # the other slots keep the strategy's order
    rest = new[~np.isin(new, probes)]
    assert rest.tolist() == order[~np.isin(order, probes)].tolist()


def test_place_probes_extremes():
    order = np.arange(10)
    same, none = place_probes(order, 0.0, 10, np.random.default_rng(0))
    assert same.tolist() == order.tolist() and none.size == 0
    _, every = place_probes(order, 1.0, 4, np.random.default_rng(0))
    assert every.size == 4
    with pytest.raises(InvalidParameterError):
        place_probes(order, 1.5, 4, np.random.default_rng(0))


def test_probes_are_uniform_over_the_pool():
    """Every task of a 20-task pool is drawn as the first slot's probe about equally often
    (2000 draws at share 1: 100 expected per task; 4 sigma = 4 * sqrt(100 * 0.95) = 39)."""
    order = np.arange(20)
    rng = np.random.default_rng(7)
    counts = np.bincount([place_probes(order, 1.0, 1, rng)[1][0] for _ in range(2000)],
                         minlength=20)
    assert np.abs(counts - 100).max() < 39


class Memorizer:
    """Predicts the training label of a text it saw, else class 1 (``wrong`` for class 0)."""

    def fit(self, ds):
        self.seen_ = dict(zip(ds.texts, np.asarray(ds.y).tolist()))
        return self

    def predict(self, ds):
        return np.array([self.seen_.get(t, 1) for t in ds.texts])


def _dataset(y):
    return Dataset.from_texts([f"doc {i}" for i in range(len(y))], [str(v) for v in y],
                              target_labels=["0", "1"])


def test_probe_accuracy_predicts_each_probe_without_it():
    """A memorizer scores 1.0 on texts it was trained on; held out, it answers 1, so the
    estimate is the share of probes of class 1: 2 of 6 -> 1/3."""
    y = [0] * 14 + [1] * 6
    ds = _dataset(y)
    is_probe = np.zeros(20, bool)
    is_probe[[0, 1, 2, 3, 14, 15]] = True
    est = probe_accuracy(Memorizer, ds, is_probe, n_folds=3)
    assert est.n == 6 and est.value == pytest.approx(2 / 6)
    assert (est.low, est.high) == pytest.approx(wilson_interval(2, 6))
    # majority of every training part: class 0 (at least 12 of class 0, at most 6 of class 1)
    # is right on the 4 class-0 probes
    assert est.majority == pytest.approx(4 / 6) and est.majority_label == 0
    assert est.beats_majority is False


def test_probe_accuracy_without_probes():
    est = probe_accuracy(Memorizer, _dataset([0, 1, 0, 1]), np.zeros(4, bool))
    assert est.value is None and (est.low, est.high) == (0.0, 1.0) and est.n == 0
    assert est.beats_majority is None
    with pytest.raises(ValueError):
        probe_accuracy(Memorizer, _dataset([0, 1]), np.zeros(3, bool))


def test_probe_accuracy_single_class_training_part_predicts_it():
    """Training parts with one class predict that class (no fit): probes of class 0 right."""
    y = [0, 0, 0, 0, 1]
    is_probe = np.array([False, False, False, True, True])
    est = probe_accuracy(Memorizer, _dataset(y), is_probe, n_folds=2)
    # fold of probe 3 trains on [0,0,0,1]: two classes -> memorizer answers 1 for doc 3: wrong;
    # fold of probe 4 trains on [0,0,0,0]: one class -> predicts 0 for doc 4: wrong
    assert est.value == 0.0 and est.n == 2
