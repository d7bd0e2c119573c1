"""Initialization strategies: which ``n`` pool instances to label first.

Each strategy is a small object, seeded at construction, called as ``strategy(y, n)``
(or ``strategy.select(y, n)``) with the TRUE labels ``y`` of the pool -- an int vector
(single-label) or a CSR indicator matrix (multi-label) -- and returning ``n`` distinct
positions into ``y`` in random order. They follow small-text's
``random_initialization``, ``random_initialization_stratified`` and
``random_initialization_balanced`` (which use the global ``np.random`` state; ours use a
private ``np.random.Generator`` built from ``seed``, so the same seed gives the same
indices, and successive calls of one object draw fresh samples).

Only simulations know all true labels; the Label Studio backend starts from what
annotators label.

small-text's functions are here too, with its names and signatures
(:func:`random_initialization`, :func:`random_initialization_stratified`,
:func:`random_initialization_balanced`); like small-text's they draw from numpy's global
random state, so ``np.random.seed`` makes them reproducible.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from al_engine.compat.datasets import dataset_length
from al_engine.data import is_multi_label_target
from al_engine.exceptions import MultiLabelNotSupportedError


def _check_n(size: int, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if n > size:
        raise ValueError(f"n={n} exceeds the number of instances ({size})")
    return int(n)


def _check_single_label(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D vector of class ids, got shape {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer class ids, got dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError("y must hold the true class ids (>= 0) of every instance; "
                         "found unlabeled (negative) entries")
    return y.astype(np.int64, copy=False)


def _labelsets(y) -> np.ndarray:
    """Id of each row's label set (small-text's "labelsets" multi-label strategy)."""
    dense = sp.csr_matrix(y).toarray() != 0
    _, inverse = np.unique(dense, axis=0, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64)


def _draw(rng: np.random.Generator, y: np.ndarray, per_class: np.ndarray,
          counts: np.ndarray, n: int) -> np.ndarray:
    """small-text's ``_random_sampling``: cap ``per_class`` at ``counts``, draw the
    ``n - sum`` missing samples class by class with probability proportional to the
    remaining class sizes (without replacement, i.e. multivariate hypergeometric), then
    pick the instances of each class uniformly at random."""
    per_class = np.minimum(per_class, counts)
    remainder = n - int(per_class.sum())
    if remainder > 0:
        per_class = per_class + rng.multivariate_hypergeometric(counts - per_class, remainder)
    order = np.argsort(y, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    # A random key per instance; the k smallest keys within a class are a uniform k-subset.
    keys = rng.random(y.size)
    picked = []
    for c in np.flatnonzero(per_class):
        members = order[starts[c]:starts[c] + counts[c]]
        k = per_class[c]
        picked.append(members[np.argpartition(keys[members], k - 1)[:k]] if k < members.size
                      else members)
    indices = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
    return rng.permutation(indices).astype(np.int64)


class InitializationStrategy:
    """Base class: ``select(y, n)`` returns ``n`` distinct positions into ``y``.

    Parameters
    ----------
    seed : int, np.random.Generator or None
        Seed of the private random generator (None: fresh entropy).
    """

    supports_multi_label: bool = True

    def __init__(self, seed=None):
        self.seed = seed
        self.rng_ = np.random.default_rng(seed)

    def __call__(self, y, n: int = 10) -> np.ndarray:
        return self.select(y, n)

    def select(self, y, n: int = 10) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed!r})"


class RandomInitialization(InitializationStrategy):
    """``n`` positions drawn uniformly without replacement (small-text's
    ``random_initialization``); only the length of ``y`` is used, so ``y`` may be any
    sequence, matrix or dataset (ours or small-text's)."""

    def select(self, y, n: int = 10) -> np.ndarray:
        size = dataset_length(y)
        n = _check_n(size, n)
        return self.rng_.choice(size, size=n, replace=False).astype(np.int64)


class RandomStratifiedInitialization(InitializationStrategy):
    """A random sample whose class distribution follows the pool's (small-text's
    ``random_initialization_stratified`` / ``stratified_sampling``).

    Class :math:`c` with :math:`N_c` of :math:`N` instances gets
    :math:`\\lfloor n N_c / N \\rfloor` samples; the remaining ones are drawn among classes
    proportionally to their remaining sizes. With ``enforce_min_occurrence`` (default, as in
    small-text) every present class gets at least one sample when ``n`` is at least the
    number of present classes; the samples this adds are taken back one at a time from the
    class with the largest allocation (ties: lower class id). small-text instead takes them
    from the lowest class ids first, which can starve a small class with a low id.

    Multi-label (CSR ``y``): stratified over label sets (each distinct set of labels is one
    stratum), small-text's ``labelsets`` strategy [STV11]_.

    .. [STV11] Sechidis, K., Tsoumakas, G. and Vlahavas, I. On the stratification of
       multi-label data. ECML PKDD 2011.
    """

    def __init__(self, seed=None, enforce_min_occurrence: bool = True):
        super().__init__(seed)
        self.enforce_min_occurrence = enforce_min_occurrence

    def select(self, y, n: int = 10) -> np.ndarray:
        strata = _labelsets(y) if sp.issparse(y) else _check_single_label(y)
        n = _check_n(strata.shape[0], n)
        counts = np.bincount(strata)
        per_class = np.floor(counts * (n / counts.sum())).astype(np.int64)
        present = counts > 0
        if (self.enforce_min_occurrence and np.any(per_class[present] == 0)
                and n >= np.count_nonzero(present)):
            per_class[present & (per_class == 0)] = 1
            excess = int(per_class.sum()) - n
            for _ in range(max(excess, 0)):  # at most the number of classes
                per_class[np.argmax(per_class)] -= 1
        return _draw(self.rng_, strata, per_class, counts, n)


class RandomBalancedInitialization(InitializationStrategy):
    """A sample with (as nearly as possible) the same number of instances per class
    (small-text's ``random_initialization_balanced`` / ``balanced_sampling``).

    Each present class gets :math:`\\lfloor n / K_{present} \\rfloor` samples (capped at its
    size); the rest are drawn among classes proportionally to their remaining sizes.
    Single-label only, as in small-text.
    """

    supports_multi_label = False

    def select(self, y, n: int = 10) -> np.ndarray:
        if sp.issparse(y) or np.ndim(y) == 2:
            raise MultiLabelNotSupportedError(
                "RandomBalancedInitialization supports single-label targets only; "
                "use random_stratified for multi-label data")
        y = _check_single_label(y)
        n = _check_n(y.shape[0], n)
        counts = np.bincount(y)
        present = counts > 0
        per_class = np.where(present, n // np.count_nonzero(present), 0)
        return _draw(self.rng_, y, per_class, counts, n)


# ------------------------------------------------------------------ small-text's functions
def _global_seed() -> int:
    """A seed drawn from numpy's global random state (which small-text's functions use)."""
    return int(np.random.randint(0, 2**31 - 1))


def random_initialization(x, n_samples: int = 10) -> np.ndarray:
    """``n_samples`` distinct positions of ``x`` drawn uniformly (small-text's function).

    Parameters
    ----------
    x : dataset, matrix or sequence
        Only its length is used (ours or small-text's datasets included).
    n_samples : int, default=10

    Raises
    ------
    ValueError
        If ``n_samples`` exceeds the length of ``x`` or is not a positive integer, or if
        ``x`` has no length.
    """
    return RandomInitialization(_global_seed()).select(x, n_samples)


def random_initialization_stratified(y, n_samples: int = 10,
                                     multilabel_strategy: str = "labelsets") -> np.ndarray:
    """A random sample stratified by the labels ``y`` (small-text's function; see
    :class:`RandomStratifiedInitialization`).

    Parameters
    ----------
    y : array-like of int or CSR matrix
        Class ids, or a label indicator matrix (multi-label).
    n_samples : int, default=10
    multilabel_strategy : {'labelsets'}, default='labelsets'
        How multi-label ``y`` is stratified: by label set.

    Raises
    ------
    ValueError
        For an unknown ``multilabel_strategy`` or an invalid ``n_samples``.
    """
    if multilabel_strategy != "labelsets":
        raise ValueError(f"Invalid multilabel_strategy: {multilabel_strategy!r}; allowed: 'labelsets'")
    return RandomStratifiedInitialization(_global_seed()).select(y, n_samples)


def random_initialization_balanced(y, n_samples: int = 10) -> np.ndarray:
    """A random sample with about as many instances per class (small-text's function; see
    :class:`RandomBalancedInitialization`).

    Raises
    ------
    NotImplementedError
        For multi-label ``y`` (a CSR or 2-D matrix), as small-text.
    ValueError
        For an invalid ``n_samples``.
    """
    if is_multi_label_target(y):
        raise NotImplementedError("random_initialization_balanced supports single-label y only; "
                                  "use random_initialization_stratified for multi-label data")
    return RandomBalancedInitialization(_global_seed()).select(y, n_samples)
