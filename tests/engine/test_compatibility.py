"""Strategy x classifier compatibility (:func:`al_engine.registry.check_compatible`), over the
whole registry: every pair it accepts queries without error on a small pool with the real
(tiny) classifier, every pair it refuses genuinely fails (``TypeError``) when queried anyway.
"""
from __future__ import annotations

import numpy as np
import pytest

from al_engine.classifiers.base import TRAITS
from al_engine.exceptions import IncompatibleComponentsError, InvalidParameterError
from al_engine.registry import available, check_compatible
from tests.engine.classifier_pools import fitted_pool
from tests.engine.test_contract import REQUIRED_PARAMS, build

STRATEGIES = available("query_strategy")
CLASSIFIERS = available("classifier")


@pytest.mark.parametrize("classifier", CLASSIFIERS)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_accepted_pairs_query_and_refused_pairs_cannot(strategy, classifier, tiny_model_path):
    qs = build(strategy)
    pool = fitted_pool(classifier, tiny_model_path, multi_label=not qs.supports_single_label)
    try:
        check_compatible(strategy, classifier, REQUIRED_PARAMS.get(strategy))
    except IncompatibleComponentsError as exc:
        message = str(exc)
        assert "\n" not in message and repr(strategy) in message and repr(classifier) in message
        with pytest.raises(TypeError):
            qs.query(**pool.args(), n=3)
        return
    result = qs.query(**pool.args(), n=3)
    assert result.shape == (3,) and np.unique(result).size == 3
    assert np.isin(result, pool.indices_unlabeled).all()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_strategies_require_only_declared_traits(strategy):
    assert set(build(strategy).required_classifier_traits) <= set(TRAITS)


def test_the_known_incompatible_pairs_are_refused():
    for strategy in ("bald", "expected_gradient_length", "expected_gradient_length_max_word"):
        with pytest.raises(IncompatibleComponentsError, match=f"'{strategy}'.*'linear_svc'"):
            check_compatible(strategy, "linear_svc")
    with pytest.raises(IncompatibleComponentsError, match="setfit"):
        check_compatible("expected_gradient_length", "setfit")
    check_compatible("bald", "setfit")
    check_compatible("expected_gradient_length_layer", "linear_svc")  # the closed form


def test_parameters_and_wrappers_count():
    with pytest.raises(IncompatibleComponentsError, match="'subsampling'"):
        check_compatible("subsampling", "logistic_regression",
                         {"base_query_strategy": "bald"})
    with pytest.raises(IncompatibleComponentsError):
        check_compatible("class_balancer", "linear_svc", {"base_query_strategy": "bald"})
    with pytest.raises(IncompatibleComponentsError):
        check_compatible("expected_gradient_length_layer", "linear_svc", {"layer_name": "fc"})
    check_compatible("seals", "kimcnn", {"base_query_strategy": "bald"})


def test_unknown_names_are_invalid_parameters():
    with pytest.raises(InvalidParameterError, match="unknown query strategy"):
        check_compatible("nope", "linear_svc")
    with pytest.raises(InvalidParameterError, match="unknown classifier"):
        check_compatible("random", "nope")
