import pytest

from al_engine import registry
from al_engine.exceptions import InvalidParameterError


@pytest.mark.parametrize("kind", ["query_strategy", "stopping_criterion", "classifier", "initialization"])
def test_every_registered_name_resolves(kind):
    names = registry.available(kind)
    assert names, kind
    for name in names:
        assert callable(registry.resolve(kind, name))


def test_names_from_design_are_registered():
    assert {"random", "least_confidence", "prediction_entropy", "breaking_ties", "subsampling"} <= set(
        registry.available("query_strategy"))
    assert set(registry.available("stopping_criterion")) >= {
        "kappa_average", "delta_f_score", "classification_change", "overall_uncertainty", "max_iterations"}
    assert set(registry.available("initialization")) == {"random", "random_stratified", "random_balanced",
                                                         "typiclust", "kmeans_centres"}
    assert {"linear_svc", "logistic_regression"} <= set(registry.available("classifier"))


def test_unknown_name_lists_allowed_values():
    with pytest.raises(InvalidParameterError, match="unknown query strategy 'nope'; allowed: .*breaking_ties"):
        registry.make_query_strategy("nope")
    with pytest.raises(InvalidParameterError, match="unknown kind"):
        registry.available("strategies")


def test_unknown_parameter_is_named():
    with pytest.raises(InvalidParameterError, match="unknown parameter 'kapa' for stopping criterion 'kappa_average'"):
        registry.make_stopping_criterion("kappa_average", num_classes=2, kapa=0.9)


def test_missing_required_parameter_is_named():
    with pytest.raises(InvalidParameterError, match="missing required parameter 'num_classes'"):
        registry.make_stopping_criterion("kappa_average")


def test_bad_value_is_wrapped_and_names_the_parameter():
    with pytest.raises(InvalidParameterError, match="max_iterations"):
        registry.make_stopping_criterion("max_iterations", max_iterations=0)
