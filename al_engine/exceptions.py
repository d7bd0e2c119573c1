"""Typed errors of the engine. small-text's names are kept as aliases."""


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
