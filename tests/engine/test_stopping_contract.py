"""The stopping-criterion contract, checked for EVERY registered criterion.

Parametrized over ``al_engine.registry.available("stopping_criterion")``: a new criterion
is picked up by registering it. Criteria get ``num_classes`` when they take it and the
parameters in ``REQUIRED_PARAMS``; they are called as the learner and the backend call them,
with keyword arguments, on a fixed stopping set.
"""
from __future__ import annotations

import numpy as np
import pytest

from al_engine.exceptions import InvalidParameterError
from al_engine.registry import accepted_params, available, make_stopping_criterion
from al_engine.stopping import StoppingCriterion

NAMES = available("stopping_criterion")
#: Parameters a criterion cannot be built without.
REQUIRED_PARAMS: dict[str, dict] = {"max_iterations": {"max_iterations": 4}}
N, NUM_CLASSES = 50, 2


def build(name: str, **params) -> StoppingCriterion:
    params = {**REQUIRED_PARAMS.get(name, {}), **params}
    if "num_classes" in accepted_params("stopping_criterion", name):
        params.setdefault("num_classes", NUM_CLASSES)
    return make_stopping_criterion(name, **params)


def call(criterion, predictions, proba):
    return criterion.stop(active_learner=None, predictions=predictions, proba=proba,
                          indices_stopping=np.arange(N))


def stable_and_confident():
    predictions = np.arange(N) % NUM_CLASSES
    proba = np.full((N, NUM_CLASSES), 0.001 / (NUM_CLASSES - 1))
    proba[np.arange(N), predictions] = 0.999
    return predictions, proba


def changing(i: int):
    rng = np.random.default_rng(i)
    predictions = rng.integers(0, NUM_CLASSES, N)
    proba = np.full((N, NUM_CLASSES), 1.0 / NUM_CLASSES)
    return predictions, proba


def test_registry_has_the_small_text_criteria():
    assert {"kappa_average", "delta_f_score", "classification_change", "overall_uncertainty",
            "max_iterations"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_is_a_criterion_with_params_stored_as_given(name):
    criterion = build(name)
    assert isinstance(criterion, StoppingCriterion)
    for key, value in REQUIRED_PARAMS.get(name, {}).items():
        assert getattr(criterion, key) == value


@pytest.mark.parametrize("name", NAMES)
def test_returns_a_python_bool(name):
    criterion = build(name)
    for i in range(3):
        assert type(call(criterion, *changing(i))) is bool


@pytest.mark.parametrize("name", NAMES)
def test_stable_confident_predictions_stop_within_ten_calls(name):
    criterion = build(name)
    decisions = [call(criterion, *stable_and_confident()) for _ in range(10)]
    assert decisions[-1] is True
    first = decisions.index(True)
    assert all(decisions[first:]), "once stopped on unchanged input, a criterion stays stopped"


def decisions(name: str, inputs) -> list[bool]:
    criterion = build(name)
    return [call(criterion, *pq) for pq in inputs]


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_leaves_its_inputs_alone(name):
    inputs = [changing(i) for i in range(4)] + [stable_and_confident()] * 4
    copies = [(p.copy(), q.copy()) for p, q in inputs]
    assert decisions(name, inputs) == decisions(name, inputs)
    for (p, q), (p0, q0) in zip(inputs, copies):
        np.testing.assert_array_equal(p, p0)
        np.testing.assert_array_equal(q, q0)


@pytest.mark.parametrize("bad", [0, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_integer_parameters_are_named(name, bad):
    ints = {"num_classes", "window_size", *REQUIRED_PARAMS.get(name, {})}
    taken = sorted(ints & accepted_params("stopping_criterion", name))
    with pytest.raises(InvalidParameterError, match="|".join(taken)):
        make_stopping_criterion(name, **{k: bad for k in taken})
