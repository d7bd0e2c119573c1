"""The labels-needed estimate: curve fit against hand-computed curves, the closed form of
n*, the cross-validated points, and end-to-end on data whose learning curve is known."""
import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.estimate import (LearningCurveFit, cross_validate, cross_validated_curve,
                                estimate_from_cv, estimate_from_points,
                                estimate_labels_needed, fit_learning_curve, labels_needed)
from al_engine.exceptions import InvalidParameterError
from al_engine.registry import make_classifier


def test_fit_recovers_an_exact_power_law():
    # f(n) = 0.9 - 2 n^-0.5: f(25) = 0.5, f(100) = 0.7, f(400) = 0.8, f(1600) = 0.85
    n = np.array([25, 100, 400, 1600])
    fit = fit_learning_curve(n, [0.5, 0.7, 0.8, 0.85])
    assert fit.a == pytest.approx(0.9, abs=1e-3)
    assert fit.b == pytest.approx(2.0, rel=1e-2)
    assert fit.c == pytest.approx(0.5, rel=1e-2)
    assert fit.rmse < 1e-3


def test_labels_needed_closed_form():
    fit = LearningCurveFit(a=0.9, b=2.0, c=0.5, rmse=0.0)
    # f(N=10000) = 0.9 - 2/100 = 0.88; target 0.88 - 0.02 = 0.86 -> n* = (2 / 0.04)^2 = 2500
    assert labels_needed(fit, pool_size=10_000, tolerance=0.02) == pytest.approx(2500.0)
    # small pool: f(100) = 0.7, target 0.68 -> n* = (2 / 0.22)^2 = 82.6
    assert labels_needed(fit, pool_size=100, tolerance=0.02) == pytest.approx((2 / 0.22) ** 2)
    # a flat curve needs one label; a vanishing tolerance needs (almost) the whole pool
    assert labels_needed(LearningCurveFit(0.8, 0.0, 1.0, 0.0), 50, 0.02) == 1.0
    assert labels_needed(LearningCurveFit(0.9, 2.0, 0.05, 0.0), 50, 1e-6) == pytest.approx(50, rel=1e-4)


def test_fit_respects_the_bounds():
    # points rising linearly would push a above 1: a is capped, b stays >= 0
    fit = fit_learning_curve([10, 20, 30, 40], [0.7, 0.8, 0.9, 1.0])
    assert fit.a <= 1.0 and fit.b >= 0
    # decreasing points: the best non-increasing-gain curve is flat (b = 0) at their mean
    flat = fit_learning_curve([10, 20, 40], [0.8, 0.7, 0.6])
    assert flat.b == 0.0 and flat.a == pytest.approx(0.7)


@pytest.mark.parametrize("n, scores, match", [
    ([10, 20], [0.5, 0.6], "at least 3"),
    ([10, 10, 10], [0.5, 0.6, 0.7], "3 distinct"),
    ([0, 10, 20], [0.5, 0.6, 0.7], "positive"),
    ([10, 20, 30], [0.5, np.nan, 0.7], "finite"),
    ([10, 20, 30], [0.5, 0.6], "differ in length"),
])
def test_fit_rejects_bad_points(n, scores, match):
    with pytest.raises(InvalidParameterError, match=match):
        fit_learning_curve(n, scores)


def test_estimate_from_points_fields():
    n = np.array([25, 100, 400])
    est = estimate_from_points(n, 0.9 - 2 * n ** -0.5, labeled=500, pool_size=10_000)
    assert est.labels_needed == pytest.approx(2500, abs=30)
    assert est.additional == est.labels_needed - 500
    assert est.accuracy_at_pool == pytest.approx(0.88, abs=1e-3)
    assert est.to_dict()["points"][0] == [25, 0.5, 0.0]
    with pytest.raises(InvalidParameterError, match="pool_size"):
        estimate_from_points(n, [0.5, 0.7, 0.8], labeled=500, pool_size=100)


def _blobs(n, seed, noise):
    """Two classes separated along one axis of 20 dims, labels flipped with prob ``noise``:
    the Bayes accuracy is known (about 1 - noise for well-separated means)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 20))
    x[:, 0] += np.where(y == 1, 2.5, -2.5)
    flip = rng.random(n) < noise
    return Dataset(x=x, y=np.where(flip, 1 - y, y), target_labels=["a", "b"])


def _svc():
    return make_classifier("linear_svc", num_classes=2, featurizer=None)


def test_cross_validated_curve_points():
    data = _blobs(200, 0, 0.0)
    sizes, mean, std = cross_validated_curve(_svc, data, n_sizes=4, n_splits=4, min_size=8)
    assert sizes[0] == 8 and sizes[-1] == 150 and np.all(np.diff(sizes) > 0)
    assert mean.shape == std.shape == sizes.shape
    # separable up to 2.5 sigma: nearly perfect with 150 training points
    assert mean[-1] > 0.97
    with pytest.raises(InvalidParameterError, match="n_splits"):
        cross_validated_curve(_svc, data, n_splits=1)


def test_estimate_on_data_with_known_truth():
    """Noise-free separable data: the curve saturates at once, so few more labels are
    needed; the estimate must say so and predict the true accuracy of the full pool."""
    pool = _blobs(3000, 1, 0.0)
    test = _blobs(3000, 2, 0.0)
    labeled = pool[np.arange(200)]
    est = estimate_labels_needed(_svc, labeled, pool_size=len(pool), tolerance=0.02)
    clf = _svc().fit(pool)
    truth_full = float(np.mean(clf.predict(test) == test.y))
    assert truth_full > 0.98
    assert est.accuracy_at_pool == pytest.approx(truth_full, abs=0.02)
    assert est.labels_needed is not None and est.labels_needed <= 200


def test_estimate_refuses_without_signal():
    data = _blobs(60, 3, 0.0)
    few = estimate_labels_needed(_svc, data[np.arange(8)], pool_size=100)
    assert few.labels_needed is None and "at least 10" in few.reason
    # labels independent of the features: nothing beats the majority class
    rng = np.random.default_rng(0)
    noise = Dataset(x=rng.normal(size=(100, 5)), y=(rng.random(100) < 0.2).astype(int),
                    target_labels=["a", "b"])
    est = estimate_labels_needed(_svc, noise, pool_size=1000)
    assert est.labels_needed is None and "majority" in est.reason


def test_cross_validate_keeps_folds_and_macro_f1():
    """The per-fold record behind the curve: its mean/std are cross_validated_curve's, and
    the estimate is estimate_from_cv of it (one computation for the estimate and the
    backend's figures)."""
    data = _blobs(120, 4, 0.1)
    cv = cross_validate(_svc, data, n_sizes=4, n_splits=4, min_size=8, seed=3)
    assert cv.accuracy.shape == (4, cv.sizes.size) and cv.macro_f1.shape == (4,) and cv.n == 120
    assert np.all((cv.macro_f1 > 0.5) & (cv.macro_f1 <= 1.0))
    sizes, mean, std = cross_validated_curve(_svc, data, n_sizes=4, n_splits=4, min_size=8,
                                             seed=3)
    assert np.array_equal(sizes, cv.sizes) and np.array_equal(mean, cv.mean)
    assert np.array_equal(std, cv.std)
    full = estimate_labels_needed(_svc, data, pool_size=1000, seed=3)
    assert full == estimate_from_cv(cross_validate(_svc, data, seed=3), data.y, pool_size=1000)
    later = estimate_from_cv(cv, data.y, pool_size=1000, labeled=150)
    assert later.labeled == 150 and later.points == estimate_from_cv(cv, data.y, 1000).points
