"""The vector index: exact (BLAS) and HNSW behind one interface, and make_index's choice."""
from __future__ import annotations

import numpy as np
import pytest

from al_engine.exceptions import InvalidParameterError
from al_engine.vector_index import (AUTO_EXACT_MAX_PAIRS, ExactIndex, HNSWIndex, VectorIndex,
                                    make_index)


def _hnswlib_or_skip():
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        pytest.skip("hnswlib is not installed (pip install studio-al[index])")


LINE = np.array([[0.0], [1.0], [3.0], [7.0], [12.0]])


def test_exact_euclidean_on_a_line():
    index = ExactIndex().build(LINE, ids=[10, 11, 12, 13, 14])
    ids, dist = index.query([[2.0], [8.0]], k=3)
    # from 2: 1 (d=1) and 3 (d=1) tie -> by id; then 0 (d=2)
    assert ids.tolist() == [[11, 12, 10], [13, 14, 12]]
    np.testing.assert_allclose(dist, [[1, 1, 2], [1, 4, 5]], atol=1e-5)


def test_exact_cosine_distance_is_one_minus_cosine():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    ids, dist = ExactIndex(metric="cosine").build(v).query([[3.0, 0.0]], k=3)
    assert ids.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(dist, [[0.0, 1 - np.sqrt(0.5), 1.0]], atol=1e-6)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_exact_matches_brute_force(metric):
    rng = np.random.default_rng(0)
    x, q = rng.normal(size=(300, 12)), rng.normal(size=(40, 12))
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        qn = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = 1 - qn @ xn.T
    else:
        d = np.sqrt(((q[:, None, :] - x[None]) ** 2).sum(-1))
    ids, dist = ExactIndex(metric=metric).build(x).query(q, k=7)
    assert ids.tolist() == np.argsort(d, axis=1)[:, :7].tolist()
    np.testing.assert_allclose(dist, np.sort(d, axis=1)[:, :7], atol=1e-4)


def test_exact_remove_and_add():
    index = ExactIndex().build(LINE)
    index.remove([1, 2])
    assert len(index) == 3
    assert index.query([[2.0]], k=2, return_distance=False).tolist() == [[0, 3]]
    with pytest.raises(KeyError):
        index.remove([1])          # already removed
    with pytest.raises(KeyError):
        index.remove([99])
    index.add([[2.5]], ids=[42])
    assert index.query([[2.0]], k=1, return_distance=False).tolist() == [[42]]
    with pytest.raises(ValueError, match="already"):
        index.add([[5.0]], ids=[42])


def test_k_larger_than_index_raises_naming_k():
    index = ExactIndex().build(LINE)
    with pytest.raises(InvalidParameterError, match="k=6"):
        index.query([[0.0]], k=6)
    with pytest.raises(InvalidParameterError, match="k must be"):
        index.query([[0.0]], k=0)


def test_bad_inputs():
    with pytest.raises(InvalidParameterError, match="metric"):
        ExactIndex(metric="manhattan")
    with pytest.raises(ValueError, match="NaN"):
        ExactIndex().build([[np.nan]])
    with pytest.raises(ValueError, match="dimensions"):
        ExactIndex().build(LINE).query([[0.0, 1.0]], k=1)
    with pytest.raises(ValueError, match="unique"):
        ExactIndex().build(LINE, ids=[0, 0, 1, 2, 3])


def test_new_is_empty_with_the_same_params():
    index = ExactIndex(metric="cosine").build(LINE + 1)
    fresh = index.new()
    assert isinstance(fresh, ExactIndex) and fresh.metric == "cosine" and len(fresh) == 0
    assert len(index) == 5


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_hnsw_agrees_with_exact(metric):
    _hnswlib_or_skip()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 16))
    exact_ids, exact_d = ExactIndex(metric=metric).build(x).query(x[:100], k=10)
    ids, d = HNSWIndex(metric=metric).build(x).query(x[:100], k=10)
    recall = np.mean([np.isin(a, b).mean() for a, b in zip(ids, exact_ids)])
    assert recall >= 0.95
    # where both found the same neighbour, the distances agree (true, not squared, euclidean)
    same = ids == exact_ids
    np.testing.assert_allclose(d[same], exact_d[same], atol=2e-3)


def test_hnsw_line_distances_remove_add():
    _hnswlib_or_skip()
    index = HNSWIndex().build(LINE)
    ids, dist = index.query([[8.0]], k=2)
    assert ids.tolist() == [[3, 4]]
    np.testing.assert_allclose(dist, [[1.0, 4.0]], atol=1e-5)
    index.remove([3])
    assert len(index) == 4
    assert index.query([[8.0]], k=1, return_distance=False).tolist() == [[4]]
    index.add([[8.5], [100.0]], ids=[7, 8])   # grows beyond the initial capacity
    assert len(index) == 6
    assert index.query([[8.0]], k=1, return_distance=False).tolist() == [[7]]
    with pytest.raises(InvalidParameterError, match="k=7"):
        index.query([[8.0]], k=7)


def test_hnsw_is_reproducible_with_one_thread():
    _hnswlib_or_skip()
    x = np.random.default_rng(2).normal(size=(500, 8))
    a = HNSWIndex(M=8, ef_construction=20).build(x).query(x[:50], k=5, return_distance=False)
    b = HNSWIndex(M=8, ef_construction=20).build(x).query(x[:50], k=5, return_distance=False)
    assert a.tolist() == b.tolist()


def test_make_index_auto_rule():
    assert isinstance(make_index("auto", n_index=1000, n_queries=1000), ExactIndex)
    small = AUTO_EXACT_MAX_PAIRS // 100
    assert isinstance(make_index("auto", n_index=100, n_queries=small), ExactIndex)
    _hnswlib_or_skip()
    big = make_index("auto", metric="cosine", n_index=100_000, n_queries=100_000)
    assert isinstance(big, HNSWIndex) and big.metric == "cosine"


def test_make_index_from_spec_and_instance():
    assert isinstance(make_index("exact"), ExactIndex)
    template = ExactIndex(metric="cosine").build(LINE + 1)
    made = make_index(template, metric="cosine")
    assert isinstance(made, VectorIndex) and made is not template and len(made) == 0
    assert len(template) == 5   # the user's index is left alone
    with pytest.raises(InvalidParameterError, match="metric"):
        make_index(template, metric="euclidean")
    with pytest.raises(InvalidParameterError, match="vector_index"):
        make_index("faiss")
