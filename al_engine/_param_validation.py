"""Declared parameter constraints, in the style of scikit-learn's ``_param_validation``.

A component declares its constructor constraints once, as a class attribute::

    _parameter_constraints = {
        "k": [Interval(Integral, 1, None)],              # an int (never a bool), >= 1
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [None, Interval(Integral, 1, None)],
        "seed": SEED,
    }

and validates its arguments with ``validate_params(self._parameter_constraints, locals())``.
A value is valid when it satisfies ANY constraint of its list; otherwise
:class:`~al_engine.exceptions.InvalidParameterError` (a ``ValueError``) names the parameter,
what it must be and the value, e.g. ``k must be a positive integer, got 0``.

Booleans are never numbers here (``True`` is not an ``Integral``), unlike in Python.
"""
from __future__ import annotations

from numbers import Integral, Real
from typing import Any, Iterable, Mapping

import numpy as np

from al_engine.exceptions import InvalidParameterError

__all__ = ["Integral", "Real", "Interval", "Options", "InstanceOf", "SequenceOf",
           "POSITIVE_INT", "NON_NEGATIVE_INT", "POSITIVE_REAL", "SEED",
           "check_param", "validate_params"]


def _is_number(value, kind) -> bool:
    return isinstance(value, kind) and not isinstance(value, (bool, np.bool_))


class Interval:
    """Numbers of ``type`` (``Integral`` or ``Real``) between ``left`` and ``right``.

    Parameters
    ----------
    type : {numbers.Integral, numbers.Real}
        ``Real`` accepts ints too; neither accepts a bool.
    left, right : number or None
        Bounds; None is unbounded.
    closed : {'left', 'right', 'both', 'neither'}, default='left'
        Which bounds belong to the interval.
    """

    def __init__(self, type, left, right, *, closed: str = "left"):
        if type not in (Integral, Real) or closed not in ("left", "right", "both", "neither"):
            raise ValueError(f"bad Interval({type!r}, closed={closed!r})")
        self.type = type
        self.left = left
        self.right = right
        self.closed = closed

    def is_satisfied_by(self, value) -> bool:
        if not _is_number(value, self.type):
            return False
        # written as "inside" tests, so that NaN is outside every bounded interval
        if self.left is not None and not (value >= self.left if self.closed in ("left", "both")
                                          else value > self.left):
            return False
        if self.right is not None and not (value <= self.right if self.closed in ("right", "both")
                                           else value < self.right):
            return False
        return True

    def __str__(self) -> str:
        integer = self.type is Integral
        noun = "an integer" if integer else "a number"
        lo_in, hi_in = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.right is None and self.left is None:
            return noun
        if self.right is None:
            if self.left == 0 and lo_in:
                return f"a non-negative {noun.split()[-1]}"
            if (self.left == 0 and not lo_in) or (integer and self.left == 1 and lo_in):
                return f"a positive {noun.split()[-1]}"
            return f"{noun} {'>=' if lo_in else '>'} {self.left}"
        left = "-inf" if self.left is None else self.left
        return f"{noun} in {'[' if lo_in else '('}{left}, {self.right}{']' if hi_in else ')'}"


class Options:
    """One of a finite set of values (compared with ``==``)."""

    def __init__(self, values: Iterable):
        self.values = tuple(values)

    def is_satisfied_by(self, value) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def __str__(self) -> str:
        return f"one of {list(self.values)}"


class InstanceOf:
    """An instance of ``type`` (``description`` names it in messages)."""

    def __init__(self, type, description: str | None = None):
        self.type = type
        self.description = description or f"an instance of {type.__name__}"

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.type)

    def __str__(self) -> str:
        return self.description


class SequenceOf:
    """A non-empty list or tuple whose every item satisfies ``item``."""

    def __init__(self, item):
        self.item = item

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, (list, tuple)) and len(value) > 0 \
            and all(self.item.is_satisfied_by(v) for v in value)

    def __str__(self) -> str:
        return f"a non-empty sequence, each item {self.item}"


class _NoneConstraint:
    def is_satisfied_by(self, value) -> bool:
        return value is None

    def __str__(self) -> str:
        return "None"


#: The recurring ones.
POSITIVE_INT = Interval(Integral, 1, None)
NON_NEGATIVE_INT = Interval(Integral, 0, None)
POSITIVE_REAL = Interval(Real, 0, None, closed="neither")
#: A random seed: None, a non-negative int, or a generator whose stream is continued.
SEED = [None, NON_NEGATIVE_INT, InstanceOf(np.random.Generator, "a numpy.random.Generator")]


def _as_list(constraints) -> list:
    if not isinstance(constraints, list):
        constraints = [constraints]
    return [_NoneConstraint() if c is None else c for c in constraints]


def _describe(constraints: list) -> str:
    words = [str(c) for c in constraints]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def check_param(name: str, value: Any, constraints) -> Any:
    """``value`` when it satisfies one of ``constraints`` (a constraint or a list of them;
    ``None`` in the list allows None); :class:`InvalidParameterError` otherwise."""
    constraints = _as_list(constraints)
    if any(c.is_satisfied_by(value) for c in constraints):
        return value
    raise InvalidParameterError(f"{name} must be {_describe(constraints)}, got {value!r}")


def validate_params(constraints: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """Check every parameter of ``params`` that ``constraints`` declares (others are
    ignored, so ``locals()`` of a constructor can be passed as is)."""
    for name, allowed in constraints.items():
        if name in params:
            check_param(name, params[name], allowed)
