"""Typed errors of the engine. small-text's names are kept as aliases.

When small-text is installed, four of our classes are also real subclasses of small-text's, so
that code written for small-text catches ours (``except small_text.query_strategies.
EmptyPoolException``):

=============================  ======================================================
ours                           also a subclass of (small-text 1.4.1)
=============================  ======================================================
EmptyPoolError                 ``small_text.query_strategies.EmptyPoolException``
PoolExhaustedError             ``small_text.query_strategies.PoolExhaustedException``
LearnerNotInitializedError     ``small_text.exceptions.LearnerNotInitializedException``
MultiLabelNotSupportedError    ``small_text.exceptions.ConstraintViolationError``
=============================  ======================================================

This module never imports small-text (it pulls in torch): the base is added when small-text
defines its class, at once if it already has, by an import hook otherwise
(:func:`al_engine.compat.bridge.add_bases_when_imported`). Our own bases come first, so an
``EmptyPoolError`` is still a ``ValueError``. Without small-text, nothing changes.
"""
from al_engine.compat.bridge import add_bases_when_imported


class EmptyPoolError(ValueError):
    """Raised when a query is made but no unlabeled instance is left."""


class PoolExhaustedError(ValueError):
    """Raised when more instances are requested than remain unlabeled."""


#: small-text's names, so that code written for small-text catches ours.
EmptyPoolException = EmptyPoolError
PoolExhaustedException = PoolExhaustedError


class MultiLabelNotSupportedError(ValueError):
    """Raised when a single-label-only component receives multi-label data (or vice versa)."""


class InvalidParameterError(ValueError):
    """Raised for an unknown component name or a bad constructor parameter.

    The message always names the offending parameter and, where finite, the allowed values.
    """


class IncompatibleComponentsError(InvalidParameterError):
    """Raised when a query strategy cannot work with a classifier (e.g. BALD needs Monte-Carlo
    dropout sampling, which a linear SVM does not have). The message is one line naming both."""


class LearnerNotInitializedError(RuntimeError):
    """Raised when the active learner is queried before it was initialized."""


class NotFittedError(RuntimeError):
    """Raised when a classifier or featurizer is used before ``fit``."""


add_bases_when_imported({
    EmptyPoolError: "small_text.query_strategies.exceptions.EmptyPoolException",
    PoolExhaustedError: "small_text.query_strategies.exceptions.PoolExhaustedException",
    LearnerNotInitializedError: "small_text.exceptions.LearnerNotInitializedException",
    MultiLabelNotSupportedError: "small_text.exceptions.ConstraintViolationError",
})
