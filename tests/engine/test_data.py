import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.data import UNLABELED, Dataset, LabelEncoding


def test_from_texts_single_label_encodes_sorted_names_and_unlabeled():
    ds = Dataset.from_texts(["a", "b", "c", "d"], ["spam", None, "ham", "spam"])
    assert list(ds.target_labels) == ["ham", "spam"]
    np.testing.assert_array_equal(ds.y, [1, UNLABELED, 0, 1])
    np.testing.assert_array_equal(ds.labeled_mask, [True, False, True, True])
    assert not ds.is_multi_label and ds.num_classes == 2 and len(ds) == 4


def test_from_texts_respects_given_class_order_and_rejects_unknown():
    ds = Dataset.from_texts(["a", "b"], ["spam", "ham"], target_labels=["spam", "ham"])
    np.testing.assert_array_equal(ds.y, [0, 1])
    with pytest.raises(ValueError, match="unknown label 'eggs'"):
        Dataset.from_texts(["a"], ["eggs"], target_labels=["spam", "ham"])


def test_multi_label_indicator_and_empty_answer_is_still_labeled():
    ds = Dataset.from_texts(["a", "b", "c"], [["x", "y"], None, []], target_labels=["x", "y", "z"])
    assert ds.is_multi_label
    np.testing.assert_array_equal(ds.y.toarray(), [[1, 1, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(ds.labeled_mask, [True, False, True])


def test_indexing_by_positions_mask_and_slice_keeps_rows_aligned():
    x = sp.csr_matrix(np.arange(12, dtype=float).reshape(4, 3))
    ds = Dataset(x=x, y=np.array([0, 1, -1, 1]), texts=["a", "b", "c", "d"])
    sub = ds[np.array([3, 0])]
    np.testing.assert_array_equal(sub.x.toarray(), [[9, 10, 11], [0, 1, 2]])
    np.testing.assert_array_equal(sub.y, [1, 0])
    assert list(sub.texts) == ["d", "a"]
    assert len(ds[np.array([True, False, True, False])]) == 2
    assert len(ds[1:3]) == 2
    with pytest.raises(IndexError):
        ds[np.array([True, False])]
    with pytest.raises(IndexError):
        ds[np.array([0.5])]


def test_shape_mismatches_raise():
    with pytest.raises(ValueError, match="needs features x or texts"):
        Dataset()
    with pytest.raises(ValueError, match="x has 2 rows but texts has 3"):
        Dataset(x=np.zeros((2, 2)), texts=["a", "b", "c"])
    with pytest.raises(ValueError, match="shape"):
        Dataset(x=np.zeros((2, 2)), y=[0, 1, 1])
    with pytest.raises(ValueError, match="integer class ids"):
        Dataset(x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        Dataset(x=np.zeros((2, 2)), y=np.array([-2, 1]))


def test_with_features_and_clone_do_not_share_mutable_targets():
    ds = Dataset.from_texts(["a", "b"], ["x", "y"])
    ds2 = ds.with_features(np.eye(2))
    assert ds.x is None and ds2.x.shape == (2, 2)
    c = ds2.clone()
    c.y[0] = 1
    assert ds2.y[0] == 0


def test_label_encoding_round_trip_multi_label():
    enc = LabelEncoding(["a", "b", "c"], multi_label=True)
    y, labeled = enc.encode_multi([["c", "a"], None, "b"])
    assert enc.decode(y) == [["a", "c"], [], ["b"]]
    np.testing.assert_array_equal(labeled, [True, False, True])
