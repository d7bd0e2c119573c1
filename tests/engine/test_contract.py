"""The query-strategy contract, checked for EVERY registered strategy.

The suite is parametrized over ``al_engine.registry.available("query_strategy")``: a new
strategy is picked up by registering it, without editing this file. Strategies with required
constructor parameters get them from ``REQUIRED_PARAMS``; a ``seed`` parameter, when the
strategy has one, is set to 0. Strategies whose instance says ``supports_single_label =
False`` are exercised on multi-label data, all others on single-label data.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.exceptions import (EmptyPoolError, MultiLabelNotSupportedError,
                                  PoolExhaustedError)
from al_engine.query.base import QueryStrategy
from al_engine.registry import accepted_params, available, make_query_strategy
from tests.engine.conftest import make_pool

#: Constructor parameters a strategy cannot be built without (and small values that keep
#: the test fast / exercise the interesting path: a subsample smaller than the pool).
REQUIRED_PARAMS: dict[str, dict] = {
    "subsampling": {"base_query_strategy": "least_confidence", "subsample_size": 16},
}

NAMES = available("query_strategy")
N_ROWS, N_LABELED = 60, 10


def build(name: str) -> QueryStrategy:
    params = dict(REQUIRED_PARAMS.get(name, {}))
    if "seed" in accepted_params("query_strategy", name) and "seed" not in params:
        params["seed"] = 0
    return make_query_strategy(name, **params)


def pool_for(strategy, multi_label: bool, seed: int = 0):
    """The standard pool; strategies that need classifier traits the stub lacks
    (``required_classifier_traits``: dropout sampling, gradients) get it with texts and a
    fitted tiny KimCNN."""
    pool = make_pool(N_ROWS, N_LABELED, multi_label=multi_label, seed=seed)
    if strategy.required_classifier_traits:
        from tests.neural.pools import with_torch_classifier  # skips without torch
        pool = with_torch_classifier(pool)
    return pool


def native_pool(strategy, seed: int = 0):
    """A pool in the label mode the strategy supports (single-label when it supports it)."""
    return pool_for(strategy, multi_label=not strategy.supports_single_label, seed=seed)


def query(strategy, pool, n, **overrides):
    return strategy.query(**pool.args(**overrides), n=n)


def rank(strategy, pool, **overrides):
    return strategy.rank(**pool.args(**overrides))


def test_registry_is_not_empty():
    assert {"random", "least_confidence", "prediction_entropy", "breaking_ties",
            "subsampling"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_is_a_query_strategy_with_params_stored_as_given(name):
    strategy = build(name)
    assert isinstance(strategy, QueryStrategy)
    for key, value in REQUIRED_PARAMS.get(name, {}).items():
        assert getattr(strategy, key) is value
    assert type(strategy).__name__ in repr(strategy)


@pytest.mark.parametrize("n", [1, 7])
@pytest.mark.parametrize("name", NAMES)
def test_returns_n_distinct_unlabeled_ints(name, n):
    strategy = build(name)
    pool = native_pool(strategy)
    result = query(strategy, pool, n)
    assert isinstance(result, np.ndarray)
    assert result.shape == (n,)
    assert np.issubdtype(result.dtype, np.integer)
    assert np.unique(result).size == n
    assert np.isin(result, pool.indices_unlabeled).all()


@pytest.mark.parametrize("name", NAMES)
def test_n_equal_to_pool_size_returns_the_whole_pool(name):
    strategy = build(name)
    pool = native_pool(strategy)
    result = query(strategy, pool, pool.indices_unlabeled.size)
    assert sorted(result.tolist()) == pool.indices_unlabeled.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_n_larger_than_pool_raises_pool_exhausted(name):
    strategy = build(name)
    pool = native_pool(strategy)
    with pytest.raises(PoolExhaustedError):
        query(strategy, pool, pool.indices_unlabeled.size + 1)


@pytest.mark.parametrize("name", NAMES)
def test_empty_pool_raises_empty_pool(name):
    strategy = build(name)
    pool = native_pool(strategy)
    everything = np.arange(N_ROWS)
    empty = np.array([], dtype=np.int64)
    y_all = pool.dataset.y[everything]
    with pytest.raises(EmptyPoolError):
        query(strategy, pool, 1, indices_unlabeled=empty, indices_labeled=everything, y=y_all)
    with pytest.raises(EmptyPoolError):
        rank(strategy, pool, indices_unlabeled=empty, indices_labeled=everything, y=y_all)


@pytest.mark.parametrize("bad_n", [0, -1, 2.5, True])
@pytest.mark.parametrize("name", NAMES)
def test_bad_n_raises_value_error(name, bad_n):
    strategy = build(name)
    pool = native_pool(strategy)
    with pytest.raises(ValueError, match="n must be"):
        query(strategy, pool, bad_n)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    pool = native_pool(build(name))
    first = query(build(name), pool, 7)
    assert query(build(name), pool, 7).tolist() == first.tolist()  # a fresh object
    strategy = build(name)
    assert query(strategy, pool, 7).tolist() == first.tolist()
    assert query(strategy, pool, 7).tolist() == first.tolist()      # the same object, twice
    assert rank(build(name), pool).tolist() == rank(build(name), pool).tolist()


@pytest.mark.parametrize("name", NAMES)
def test_rank_is_a_permutation_of_the_pool(name):
    strategy = build(name)
    pool = native_pool(strategy)
    order = rank(strategy, pool)
    assert isinstance(order, np.ndarray) and np.issubdtype(order.dtype, np.integer)
    assert order.shape == pool.indices_unlabeled.shape
    assert sorted(order.tolist()) == pool.indices_unlabeled.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_label_mode_mismatch_raises(name):
    strategy = build(name)
    if strategy.supports_single_label and strategy.supports_multi_label:
        pytest.skip(f"{name} supports both single- and multi-label data: no mismatch to test")
    wrong = pool_for(strategy, multi_label=strategy.supports_single_label)
    with pytest.raises(MultiLabelNotSupportedError):
        query(strategy, wrong, 3)
    with pytest.raises(MultiLabelNotSupportedError):
        rank(strategy, wrong)


def _snapshot(pool):
    ds = pool.dataset
    y = ds.y.toarray() if sp.issparse(ds.y) else ds.y.copy()
    return (ds.x.copy(), y, ds.labeled_mask.copy(), pool.indices_unlabeled.copy(),
            pool.indices_labeled.copy(), copy.deepcopy(pool.clf.weights))


@pytest.mark.parametrize("name", NAMES)
def test_does_not_mutate_its_inputs(name):
    strategy = build(name)
    pool = native_pool(strategy)
    before = _snapshot(pool)
    query(strategy, pool, 5)
    rank(strategy, pool)
    for a, b in zip(before, _snapshot(pool)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_accepts_unsorted_indices(name):
    strategy = build(name)
    pool = native_pool(strategy)
    shuffled = np.random.default_rng(3).permutation(pool.indices_unlabeled)
    result = query(strategy, pool, 5, indices_unlabeled=shuffled)
    assert np.unique(result).size == 5 and np.isin(result, pool.indices_unlabeled).all()


@pytest.mark.parametrize("name", NAMES)
def test_works_in_every_supported_label_mode(name):
    strategy = build(name)
    modes = [m for m, ok in (("single", strategy.supports_single_label),
                             ("multi", strategy.supports_multi_label)) if ok]
    assert modes, f"{name} supports neither single- nor multi-label data"
    for mode in modes:
        pool = pool_for(strategy, multi_label=mode == "multi")
        result = query(strategy, pool, 4)
        assert np.unique(result).size == 4 and np.isin(result, pool.indices_unlabeled).all()
        assert sorted(rank(strategy, pool).tolist()) == pool.indices_unlabeled.tolist()
