"""The small-text 1.4.1 name each al_engine object stands in for, per component family.

A small-text user swaps our components in by name: ``from small_text.query_strategies import
LeastConfidence`` becomes our ``LeastConfidence``. :data:`FAMILIES` records that substitution
for the six families that small-text's own test suite is run against (``benchmarks/
smalltext_compat.py``): each key is where small-text *defines* a public name
(``"small_text.<module>.<name>"``), each value is the al_engine object that replaces it:

- ``"module:attr"``: that attribute (a class or a function);
- ``"module:Class()"``: an instance built with default arguments (for a small-text function
  whose counterpart is a callable object; none at present: the initialization functions
  have function counterparts in :mod:`al_engine.init`);
- ``None``: al_engine has no counterpart yet. The harness puts a stand-in there that raises
  ``NotImplementedError`` naming the small-text object, so the tests that need it fail and
  count instead of silently running small-text's code.

Names not listed stay small-text's: abstract bases the tests do not touch (``QueryStrategy``,
``ConfidenceBasedQueryStrategy``, ``StoppingCriterion``, ``Classifier``, ``EmbeddingMixin``,
``AbstractClassifierFactory``), private helpers (``_bald``, ``_adapted_cohen_kappa_score``)
and helpers outside the swap surface (``constraints``, ``ClassificationType``,
``check_window_based_predictions``, datasets, sampling and label utilities). A test that only
exercises those is not counted (see the harness).

Nothing is imported here; :func:`resolve` imports a target when asked.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_QS = "small_text.query_strategies"

FAMILIES: dict[str, dict[str, str | None]] = {
    "query_strategies": {
        f"{_QS}.strategies.RandomSampling": "al_engine.query.random:RandomSampling",
        f"{_QS}.strategies.LeastConfidence": "al_engine.query.uncertainty:LeastConfidence",
        f"{_QS}.strategies.PredictionEntropy": "al_engine.query.uncertainty:PredictionEntropy",
        f"{_QS}.strategies.BreakingTies": "al_engine.query.uncertainty:BreakingTies",
        f"{_QS}.strategies.SubsamplingQueryStrategy":
            "al_engine.query.subsampling:SubsamplingQueryStrategy",
        f"{_QS}.strategies.EmbeddingBasedQueryStrategy":
            "al_engine.query.embedding_based:EmbeddingBasedQueryStrategy",
        f"{_QS}.strategies.EmbeddingKMeans": "al_engine.query.embedding:EmbeddingKMeans",
        f"{_QS}.strategies.ContrastiveActiveLearning":
            "al_engine.query.embedding:ContrastiveActiveLearning",
        f"{_QS}.strategies.DiscriminativeActiveLearning":
            "al_engine.query.dal:DiscriminativeActiveLearning",
        f"{_QS}.strategies.SEALS": "al_engine.query.subsampling_index:SEALS",
        f"{_QS}.subsampling.AnchorSubsampling": "al_engine.query.subsampling_index:AnchorSubsampling",
        f"{_QS}.coresets.greedy_coreset": "al_engine.query.coreset:greedy_coreset",
        f"{_QS}.coresets.GreedyCoreset": "al_engine.query.coreset:GreedyCoreset",
        f"{_QS}.coresets.lightweight_coreset": "al_engine.query.coreset:lightweight_coreset",
        f"{_QS}.coresets.LightweightCoreset": "al_engine.query.coreset:LightweightCoreset",
        f"{_QS}.bayesian.BALD": "al_engine.query.bayesian:BALD",
        f"{_QS}.multi_label.CategoryVectorInconsistencyAndRanking":
            "al_engine.query.multilabel:CategoryVectorInconsistencyAndRanking",
    },
    "stopping_criteria": {
        "small_text.stopping_criteria.base.DeltaFScore": "al_engine.stopping:DeltaFScore",
        "small_text.stopping_criteria.change.ClassificationChange":
            "al_engine.stopping:ClassificationChange",
        "small_text.stopping_criteria.kappa.KappaAverage": "al_engine.stopping:KappaAverage",
        "small_text.stopping_criteria.uncertainty.OverallUncertainty":
            "al_engine.stopping:OverallUncertainty",
        "small_text.stopping_criteria.utility.MaxIterations": "al_engine.stopping:MaxIterations",
    },
    "initialization": {
        "small_text.initialization.strategies.random_initialization":
            "al_engine.init:random_initialization",
        "small_text.initialization.strategies.random_initialization_stratified":
            "al_engine.init:random_initialization_stratified",
        "small_text.initialization.strategies.random_initialization_balanced":
            "al_engine.init:random_initialization_balanced",
    },
    "classifiers": {
        "small_text.classifiers.classification.SklearnClassifier":
            "al_engine.classifiers.sklearn:SklearnClassifier",
        "small_text.classifiers.classification.ConfidenceEnhancedLinearSVC":
            "al_engine.classifiers.sklearn:ConfidenceEnhancedLinearSVC",
        "small_text.classifiers.factories.SklearnClassifierFactory":
            "al_engine.classifiers.sklearn:SklearnClassifierFactory",
    },
    "active_learner": {
        "small_text.active_learner.PoolBasedActiveLearner": "al_engine.learner:PoolBasedActiveLearner",
    },
    "exceptions": {
        f"{_QS}.exceptions.EmptyPoolException": "al_engine.exceptions:EmptyPoolError",
        f"{_QS}.exceptions.PoolExhaustedException": "al_engine.exceptions:PoolExhaustedError",
        "small_text.exceptions.LearnerNotInitializedException":
            "al_engine.exceptions:LearnerNotInitializedError",
        "small_text.exceptions.ConstraintViolationError":
            "al_engine.exceptions:MultiLabelNotSupportedError",
    },
}


def resolve(target: str) -> Any:
    """The al_engine object a :data:`FAMILIES` value names (``"module:attr"`` or
    ``"module:Class()"``), imported now.

    Raises
    ------
    ValueError
        If ``target`` is not of either form.
    """
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"target must be 'module:attr' or 'module:Class()', got {target!r}")
    instantiate = attr.endswith("()")
    obj = getattr(import_module(module), attr[:-2] if instantiate else attr)
    return obj() if instantiate else obj
