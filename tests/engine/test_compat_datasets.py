"""al_engine.compat.datasets: small-text datasets where the engine takes ours."""
import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.compat.datasets import (as_engine_dataset, dataset_length, is_small_text_dataset,
                                       labeled_subset)
from al_engine.data import Dataset

from tests.engine.smalltext_fakes import FakeSklearnDataset


def test_a_sklearn_dataset_is_wrapped_sharing_its_features():
    x = sp.random(5, 3, density=0.5, format="csr", random_state=0)
    ds = FakeSklearnDataset(x, np.array([0, 1, -1, 1, 0]))
    assert is_small_text_dataset(ds) and not is_small_text_dataset(Dataset(x=x.toarray()))
    ours = as_engine_dataset(ds)
    assert ours.x is x and not ours.is_multi_label
    np.testing.assert_array_equal(ours.labeled_mask, [True, True, False, True, True])


def test_multi_label_rows_all_count_as_labeled_and_texts_become_texts():
    y = sp.csr_matrix([[1, 0], [0, 0], [0, 1]])
    ours = as_engine_dataset(FakeSklearnDataset(np.eye(3), y))
    assert ours.is_multi_label and ours.labeled_mask.all()  # an empty row is an answer
    texts = FakeSklearnDataset(np.zeros((2, 1)), np.array([0, 1]))
    texts.x = ["a text", "another"]  # small-text's TextDataset keeps its texts in x
    ours = as_engine_dataset(texts)
    assert ours.x is None and list(ours.texts) == ["a text", "another"]


def test_empty_dataset_and_unknown_objects():
    empty = as_engine_dataset(FakeSklearnDataset(np.array([]), np.array([], dtype=int)))
    assert len(empty) == 0
    with pytest.raises(TypeError, match="small-text dataset"):
        as_engine_dataset(np.zeros((2, 2)))


def test_labeled_subset_clones_a_view_and_sets_the_labels():
    pool = FakeSklearnDataset(np.arange(8.0).reshape(4, 2), np.array([-1, -1, -1, -1]))
    train = labeled_subset(pool, np.array([3, 1]), np.array([1, 0]))
    np.testing.assert_array_equal(train.x, [[6, 7], [2, 3]])
    np.testing.assert_array_equal(train.y, [1, 0])
    np.testing.assert_array_equal(pool.y, [-1, -1, -1, -1])  # the pool is unchanged
    ours = labeled_subset(Dataset(x=np.eye(3)), np.array([2]), np.array([1]))
    assert isinstance(ours, Dataset) and ours.y.tolist() == [1]


def test_dataset_length():
    assert dataset_length(sp.csr_matrix((7, 2))) == 7
    assert dataset_length([1, 2, 3]) == 3
    with pytest.raises(ValueError, match="number of rows"):
        dataset_length(object())
