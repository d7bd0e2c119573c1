import math

import numpy as np
import pytest

from al_engine._param_validation import (NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_REAL, SEED,
                                         InstanceOf, Integral, Interval, Options, Real,
                                         SequenceOf, check_param, validate_params)
from al_engine.exceptions import InvalidParameterError


@pytest.mark.parametrize("constraint, good, bad", [
    (POSITIVE_INT, [1, np.int64(7)], [0, -1, True, np.bool_(True), 2.0, "3", None]),
    (NON_NEGATIVE_INT, [0, 5], [-1, False, 0.5]),
    (POSITIVE_REAL, [1e-9, 3, np.float32(0.5)], [0, -1.0, math.nan, True]),
    (Interval(Real, 0, 1, closed="left"), [0, 0.999], [1, 1.0, -0.1]),
    (Interval(Integral, 2, None), [2, 10], [1, True]),
    (Options(["tqdm"]), ["tqdm"], ["tq", None]),
    (SequenceOf(POSITIVE_INT), [(3, 4), [1]], [(), (3, 0), "ab", (True,)]),
    (InstanceOf(dict, "a dict"), [{}], [[], None]),
])
def test_constraints(constraint, good, bad):
    assert all(constraint.is_satisfied_by(v) for v in good)
    assert not any(constraint.is_satisfied_by(v) for v in bad)


def test_messages_name_the_parameter_what_it_must_be_and_the_value():
    with pytest.raises(InvalidParameterError, match=r"^k must be a positive integer, got True$"):
        check_param("k", True, POSITIVE_INT)
    with pytest.raises(ValueError, match=r"^lr must be a positive number, got 0$"):
        check_param("lr", 0, POSITIVE_REAL)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1"):
        check_param("dropout", 1, Interval(Real, 0, 1, closed="left"))
    with pytest.raises(ValueError, match="seed must be None, a non-negative integer or a "
                                         "numpy.random.Generator, got -1"):
        check_param("seed", -1, SEED)
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        check_param("n", 1, Interval(Integral, 2, None))


def test_none_in_the_list_allows_none_and_values_come_back_as_given():
    assert check_param("b", None, [None, POSITIVE_INT]) is None
    value = np.int64(3)
    assert check_param("b", value, [None, POSITIVE_INT]) is value
    rng = np.random.default_rng(0)
    assert check_param("seed", rng, SEED) is rng


def test_validate_params_checks_declared_names_only():
    constraints = {"k": POSITIVE_INT, "lr": POSITIVE_REAL}
    validate_params(constraints, {"k": 1, "lr": 0.1, "self": object(), "other": -5})
    with pytest.raises(InvalidParameterError, match="lr"):
        validate_params(constraints, {"k": 1, "lr": -0.1})
