"""studio-al's active-learning engine: small-text compatible, vectorized.

Importing this package is cheap (no scikit-learn, no torch): the public names are
loaded on first access.
"""
from importlib import import_module

from al_engine.exceptions import (  # noqa: F401  (cheap, always available)
    EmptyPoolError,
    EmptyPoolException,
    InvalidParameterError,
    LearnerNotInitializedError,
    MultiLabelNotSupportedError,
    PoolExhaustedError,
    PoolExhaustedException,
)

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "al_engine.data",
    "UNLABELED": "al_engine.data",
    "PoolBasedActiveLearner": "al_engine.learner",
    "make_query_strategy": "al_engine.registry",
    "make_stopping_criterion": "al_engine.registry",
    "make_classifier": "al_engine.registry",
    "make_initialization": "al_engine.registry",
    "available": "al_engine.registry",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'al_engine' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
