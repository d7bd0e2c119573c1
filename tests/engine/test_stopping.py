"""Stopping criteria: small-text's own test vectors, hand-computed cases, and equivalence
with small-text 1.4.1 (identical to 2.0.0.dev3 for these classes) on random sequences."""
import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError
from al_engine.registry import make_stopping_criterion
from al_engine.stopping import (ClassificationChange, DeltaFScore, KappaAverage, MaxIterations,
                                OverallUncertainty, StoppingCriterion, cohen_kappa)


def csr(rows, width):
    m = np.zeros((len(rows), width), dtype=np.int8)
    for i, r in enumerate(rows):
        m[i, r] = 1
    return sp.csr_matrix(m)


# ------------------------------------------------------------------ design.md §2 vectors
def test_kappa_average_vector():
    crit = KappaAverage(num_classes=2, kappa=0.7)
    a, b = np.array([0, 1, 1, 0]), np.array([0, 1, 1, 1])
    assert [crit.stop(predictions=p) for p in [a, b, b, b]] == [False, False, False, True]
    assert crit.kappa_history == [0.5, 1.0, 1.0]
    assert crit.history_ is crit.kappa_history


def test_delta_f_score_vector():
    crit = DeltaFScore(num_classes=2, threshold=0.15)
    seq = [[0, 1, 1, 0, 1, 1, 0], [0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 1, 1, 0]]
    assert [crit.stop(predictions=np.array(p)) for p in seq] == [False, False, False, True]
    # 1 - 2*4/(2*4+1) = 1/9 ; 1 - 2*5/(2*5+1) = 1/11 ; 1 - 2*5/11 = 1/11
    np.testing.assert_allclose(crit.delta_history, [1 / 9, 1 / 11, 1 / 11], rtol=1e-12)
    np.testing.assert_allclose(crit.delta_history, [.111111, .090909, .090909], atol=1e-6)


def test_classification_change_vector():
    crit = ClassificationChange(num_classes=2, threshold=0.25)
    seq = [[0, 1, 1, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 1, 1]]
    assert [crit.stop(predictions=np.array(p)) for p in seq] == [False, False, False, True]
    assert crit.history_ == [0.5, 1.0, 0.25]


def test_classification_change_multi_label_vector():
    # small-text's multi-label test sequence
    crit = ClassificationChange(num_classes=2, threshold=0.25)
    seq = [[[], [0, 1], [1], [0]], [[1], [0, 1], [0, 1], [0]], [[1], [1], [0, 1], []],
           [[1], [], [0, 1], []]]
    assert [crit.stop(predictions=csr(p, 2)) for p in seq] == [False, False, False, True]
    # a dense indicator matrix is compared the same way; explicit zeros are not labels
    crit2 = ClassificationChange(num_classes=2, threshold=0.0)
    crit2.stop(predictions=csr(seq[0], 2).toarray())
    m = sp.csr_matrix((np.array([0, 1, 1, 1, 1]), np.array([1, 0, 1, 1, 0]), np.array([0, 1, 3, 4, 5])),
                      shape=(4, 2))  # row 0 holds an explicit zero only -> {}; rows = seq[0]
    assert crit2.stop(predictions=m) is True


def test_max_iterations_vector():
    crit = MaxIterations(3)
    assert [crit.stop() for _ in range(4)] == [False, False, True, True]
    assert MaxIterations(1).stop() is True


# ------------------------------------------------------------------ hand-computed
def test_cohen_kappa_hand_computed():
    # small-text's _adapted_cohen_kappa_score tests
    assert cohen_kappa(np.array([0, 0, 0, 0, 0]), np.array([1, 1, 1, 1, 1]), 2) == 0.0
    assert cohen_kappa(np.array([0, 1, 1, 1, 1]), np.array([1, 1, 1, 1, 0]), 2) == pytest.approx(-0.25)
    # confusion [[2,1],[1,1]]: po=3/5, pe=(3*3+2*2)/25=13/25 -> (15/25-13/25)/(12/25)=1/6
    assert cohen_kappa(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 0, 1, 0]), 2) == pytest.approx(1 / 6)
    assert cohen_kappa(np.array([0, 1, 1, 2, 1]), np.array([0, 1, 2, 2, 0]), 3) == pytest.approx(0.4444444)
    assert cohen_kappa(np.array([2, 2]), np.array([2, 2]), 3) == 1.0


def test_kappa_average_perfect_agreement_never_nan():
    crit = KappaAverage(2, kappa=0.7)
    p = np.array([1, 1, 1, 1])
    assert [crit.stop(predictions=p) for _ in range(4)] == [False, False, False, True]
    assert not np.any(np.isnan(crit.kappa_history))


def test_kappa_window_slides_and_average_threshold():
    crit = KappaAverage(2, window_size=2, kappa=0.75)
    a, b = np.array([0, 1, 1, 0]), np.array([0, 1, 1, 1])
    assert crit.stop(predictions=a) is False
    assert crit.stop(predictions=b) is False   # [0.5]
    assert crit.stop(predictions=b) is True    # mean(0.5, 1) = 0.75 >= 0.75
    assert crit.stop(predictions=a) is True    # [1, 0.5]
    assert crit.stop(predictions=b) is False   # [0.5, 0.5]
    assert crit.kappa_history == [0.5, 0.5]


def test_delta_f_no_positives_is_nan_and_does_not_stop():
    crit = DeltaFScore(2, window_size=1, threshold=0.5)
    z = np.zeros(5, dtype=int)
    crit.stop(predictions=z)
    assert crit.stop(predictions=z) is False
    assert np.isnan(crit.delta_history[0])


def test_overall_uncertainty_hand_computed():
    crit = OverallUncertainty(4)
    # small-text's cases: [0,1,1,0] normalizes to [0,.5,.5,0]: ln2/ln4 = 0.5
    assert crit.stop(proba=np.array([[0, 1, 1, 0]]), indices_stopping=np.arange(1)) is False
    assert crit.history_[0] == pytest.approx(0.5)
    assert crit.stop(proba=np.array([[0, 0, 1, 0]]), indices_stopping=np.arange(1)) is True
    # only the rows in indices_stopping count
    crit = OverallUncertainty(2, threshold=0.1)
    proba = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    assert crit.stop(proba=proba, indices_stopping=np.array([1, 2])) is True
    assert crit.stop(proba=proba, indices_stopping=np.array([0, 1])) is False
    assert crit.history_ == [0.0, 0.5]


def test_overall_uncertainty_requires_indices_and_proba():
    crit = OverallUncertainty(2)
    with pytest.raises(ValueError, match="indices_stopping must not be None"):
        crit.stop(proba=np.ones((2, 2)) / 2)
    with pytest.raises(ValueError, match="proba must not be None"):
        crit.stop(indices_stopping=np.arange(2))


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("crit", [KappaAverage(2), DeltaFScore(2), ClassificationChange(2)])
def test_window_based_input_errors(crit):
    with pytest.raises(ValueError, match="must not be None"):
        crit.stop()
    with pytest.raises(ValueError, match="must not be None"):
        crit.stop(predictions=np.array([None, None, None]))
    crit.stop(predictions=np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="differ in size"):
        crit.stop(predictions=np.array([0, 1, 0, 1]))


def test_parameter_errors():
    with pytest.raises(ValueError, match="num_classes=2"):
        DeltaFScore(3)
    with pytest.raises(ValueError, match="Threshold must be between 0 and 1"):
        ClassificationChange(2, threshold=1.01)
    with pytest.raises(ValueError, match="Threshold must be between 0 .inclusive. and 1"):
        OverallUncertainty(2, threshold=1)
    with pytest.raises(ValueError, match="max_iterations must be greater or equal 1"):
        MaxIterations(0)
    with pytest.raises(ValueError, match="window_size"):
        KappaAverage(2, window_size=0)
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\)"):
        KappaAverage(2).stop(predictions=np.array([0, 2]))
    with pytest.raises(InvalidParameterError, match="delta_f_score.*num_classes=2"):
        make_stopping_criterion("delta_f_score", num_classes=4)


def test_multi_label_support():
    p = csr([[0], [1]], 2)
    with pytest.raises(MultiLabelNotSupportedError):
        KappaAverage(2).stop(predictions=p)
    with pytest.raises(MultiLabelNotSupportedError):
        DeltaFScore(2).stop(predictions=p)
    assert ClassificationChange(2).stop(predictions=p) is False


def test_registry_builds_every_criterion_with_small_text_defaults():
    k = make_stopping_criterion("kappa_average", num_classes=3)
    assert (k.window_size, k.kappa) == (3, 0.99)
    d = make_stopping_criterion("delta_f_score", num_classes=2)
    assert (d.window_size, d.threshold) == (3, 0.05)
    assert make_stopping_criterion("classification_change", num_classes=2).threshold == 0.0
    assert make_stopping_criterion("overall_uncertainty", num_classes=2).threshold == 0.05
    assert make_stopping_criterion("max_iterations", max_iterations=5).max_iterations == 5
    for c in (k, d):
        assert isinstance(c, StoppingCriterion)


# ------------------------------------------------------------------ small-text equivalence
st = pytest.importorskip("small_text.stopping_criteria", reason="small-text (the reference) not installed")


def _converging_sequence(rng, length, n, num_classes):
    """Predictions that change less and less: step t re-draws a 0.4 * 0.6**t share."""
    seq = [rng.integers(0, num_classes, size=n)]
    for t in range(length - 1):
        nxt = seq[-1].copy()
        change = rng.random(n) < 0.4 * 0.6 ** t
        nxt[change] = rng.integers(0, num_classes, size=change.sum())
        seq.append(nxt)
    return seq


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_equivalence_with_small_text_random_sequences(num_classes):
    outcomes = {}
    for seed in range(8):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(20, 300))
        seq = _converging_sequence(rng, 10, n, num_classes)
        pairs = [
            (KappaAverage(num_classes, window_size=2, kappa=0.9),
             st.KappaAverage(num_classes, window_size=2, kappa=0.9)),
            (KappaAverage(num_classes), st.KappaAverage(num_classes)),
            (ClassificationChange(num_classes, threshold=0.05),
             st.ClassificationChange(num_classes, threshold=0.05)),
            (MaxIterations(4), st.MaxIterations(4)),
        ]
        if num_classes == 2:
            pairs.append((DeltaFScore(2, threshold=0.05), st.DeltaFScore(2, threshold=0.05)))
        for ours, theirs in pairs:
            got = [ours.stop(predictions=p) for p in seq]
            want = [theirs.stop(predictions=p) for p in seq]
            assert got == want, (type(ours).__name__, seed)
            outcomes.setdefault(type(ours).__name__, set()).update(got)
        np.testing.assert_allclose(pairs[0][0].kappa_history, pairs[0][1].kappa_history, rtol=1e-12)
        if num_classes == 2:
            np.testing.assert_allclose(pairs[-1][0].delta_history, pairs[-1][1].delta_history,
                                       rtol=1e-12)
    # the sequences exercise both decisions of every criterion
    assert all(v == {False, True} for v in outcomes.values()), outcomes


@pytest.mark.parametrize("seed", range(4))
def test_equivalence_with_small_text_multi_label_change(seed):
    rng = np.random.default_rng(seed)
    seq = [sp.csr_matrix((rng.random((30, 4)) < 0.3).astype(np.int64))]
    for _ in range(5):
        m = seq[-1].toarray()
        flip = rng.random(m.shape) < 0.02
        seq.append(sp.csr_matrix(np.where(flip, 1 - m, m)))
    ours, theirs = ClassificationChange(4, threshold=0.1), st.ClassificationChange(4, threshold=0.1)
    assert [ours.stop(predictions=p) for p in seq] == [theirs.stop(predictions=p) for p in seq]


@pytest.mark.parametrize("seed", range(4))
def test_equivalence_with_small_text_overall_uncertainty(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    for temperature in [0.05, 0.5, 5.0]:
        logits = rng.normal(size=(50, k)) / temperature
        proba = np.exp(logits - logits.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
        proba[0] = 0
        proba[0, 0] = 1  # exact zeros (0 log 0 = 0)
        idx = rng.choice(50, size=20, replace=False)
        for thr in [0.05, 0.3, 0.6]:
            ours, theirs = OverallUncertainty(k, threshold=thr), st.OverallUncertainty(k, threshold=thr)
            assert ours.stop(proba=proba, indices_stopping=idx) == theirs.stop(proba=proba, indices_stopping=idx)
