"""small-text 1.4.1's query-strategy API on our strategies, on hand-computed cases:
EmbeddingBasedQueryStrategy (query -> sample), greedy_coreset / lightweight_coreset,
GreedyCoreset's metric warning, CAL without probabilities, DAL without embed, SEALS'
initialize_index / get_subset_indices, SubsamplingQueryStrategy.scores_, and the error
messages that start with small-text's words."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.exceptions import MultiLabelNotSupportedError
from al_engine.query._geometry import as_proba_matrix
from al_engine.query.bayesian import BALD
from al_engine.query.coreset import (GreedyCoreset, greedy_coreset, lightweight_coreset,
                                     lightweight_coreset_proba)
from al_engine.query.dal import DiscriminativeActiveLearning
from al_engine.query.embedding import ContrastiveActiveLearning
from al_engine.query.embedding_based import EmbeddingBasedQueryStrategy
from al_engine.query.multilabel import CategoryVectorInconsistencyAndRanking
from al_engine.query.subsampling import SubsamplingQueryStrategy
from al_engine.query.subsampling_index import SEALS, AnchorSubsampling
from al_engine.query.uncertainty import LeastConfidence
from tests.engine.conftest import LinearStubClassifier

# points on a line: unlabeled rows 0..3, labeled row 4
LINE = np.array([[0.0], [1.0], [2.0], [5.0], [10.0]])


class EmbedRecorder:
    """``embed`` returns ``dataset.x`` (and a fixed proba column when asked) and records
    its keyword arguments; ``with_proba=False`` has no ``return_proba`` argument at all."""

    def __init__(self, with_proba: bool = True):
        self.calls = []
        if not with_proba:
            self.embed = self._embed_plain

    def embed(self, dataset, return_proba=False, pbar=None, **kwargs):
        self.calls.append(dict(return_proba=return_proba, pbar=pbar, **kwargs))
        self.emb_ = np.asarray(dataset.x)
        self.proba_ = np.full(len(dataset), 0.25)
        return (self.emb_, self.proba_) if return_proba else self.emb_

    def _embed_plain(self, dataset, pbar=None):
        self.calls.append(dict(pbar=pbar))
        self.emb_ = np.asarray(dataset.x)
        return self.emb_


class SampleRecorder(EmbeddingBasedQueryStrategy):
    """Records the arguments of ``sample`` and returns unlabeled positions 1, 0."""

    def __init__(self, embed_kwargs=None):
        self.embed_kwargs = embed_kwargs

    def sample(self, clf, dataset, indices_unlabeled, indices_labeled, y, n, embeddings,
               embeddings_proba=None):
        self.args_ = dict(dataset=dataset, unl=indices_unlabeled, lab=indices_labeled, y=y, n=n,
                          emb=embeddings, proba=embeddings_proba)
        return np.array([1, 0])


def _line_dataset():
    return Dataset(x=np.arange(6, dtype=float).reshape(6, 1) * 10, y=np.full(6, -1))


# ----------------------------------------------------------- EmbeddingBasedQueryStrategy
def test_embedding_based_query_passes_the_subset_and_maps_back():
    ds, clf, s = _line_dataset(), EmbedRecorder(), SampleRecorder(embed_kwargs={"a": 1})
    y = np.array([0])
    picked = s.query(clf, ds, np.array([5, 2, 3]), np.array([0]), y, n=2, embed_kwargs={"b": 2})
    assert picked.tolist() == [2, 5]                    # unlabeled positions 1, 0
    a = s.args_
    assert a["dataset"].x[:, 0].tolist() == [50, 20, 30, 0]   # unlabeled ++ labeled
    assert a["unl"].tolist() == [0, 1, 2] and a["lab"].tolist() == [3]
    assert a["y"] is y and a["n"] == 2
    assert a["emb"] is clf.emb_ and a["proba"] is clf.proba_  # as the classifier returned
    assert clf.calls == [dict(return_proba=True, pbar="tqdm", a=1, b=2)]


def test_embedding_based_query_without_return_proba_or_with_given_embeddings():
    ds, s = _line_dataset(), SampleRecorder()
    clf = EmbedRecorder(with_proba=False)
    s.query(clf, ds, np.array([1, 2]), np.array([0]), None, n=1, pbar=None)
    assert s.args_["proba"] is None and clf.calls == [{"pbar": None}]
    given = np.ones((3, 4))
    assert s.query(None, ds, np.array([1, 2]), np.array([0]), None, n=1,
                   embeddings=given).tolist() == [2, 1]
    assert s.args_["emb"] is given and s.args_["proba"] is None
    with pytest.raises(ValueError, match=r"embeddings must have shape \(3, d\)"):
        s.query(None, ds, np.array([1, 2]), np.array([0]), None, n=1, embeddings=np.ones((2, 4)))


def test_embedding_based_query_reraises_other_type_errors():
    with pytest.raises(TypeError, match="does"):
        SampleRecorder().query(EmbedRecorder(with_proba=False), _line_dataset(), np.array([1]),
                               np.array([0]), None, n=1, embed_kwargs={"does": "not exist"})


# ---------------------------------------------------------------------- greedy_coreset
def test_greedy_coreset_function_on_a_line():
    # distances to the labeled 10: 10, 9, 8, 5 -> row 0; then min(., |x - 0|): 1, 2, 5 -> row 3
    assert greedy_coreset(LINE, np.arange(4), np.array([4]), 2,
                          distance_metric="euclidean").tolist() == [0, 3]
    # positions into indices_unlabeled: candidates 10, 0, 1 around the labeled 5 -> 10 (tie
    # with 0, lowest position), then 0 (5 away from 5 and 10 away from 10)
    assert greedy_coreset(LINE, np.array([4, 0, 1]), np.array([3]), 2,
                          distance_metric="euclidean").tolist() == [0, 1]


def test_greedy_coreset_function_beyond_the_pool_and_errors():
    with pytest.warns(UserWarning, match="repeat position 0"):
        picks = greedy_coreset(LINE, np.arange(4), np.array([4]), 5, distance_metric="euclidean")
    assert picks.tolist() == [0, 3, 2, 1, 0]            # small-text's padding
    with pytest.raises(ValueError, match=r"n \(n=6\) is greater than the number of available"):
        greedy_coreset(LINE, np.arange(4), np.array([4]), 6)
    with pytest.raises(ValueError, match="^Invalid distance metric: 'manhattan'.*'cosine'"):
        greedy_coreset(LINE, np.arange(4), np.array([4]), 2, distance_metric="manhattan")


def test_greedy_coreset_strategy_warns_as_small_text_and_samples():
    with pytest.warns(UserWarning, match="^Default distance metric has changed"):
        s = GreedyCoreset(distance_metric="euclidean", normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GreedyCoreset(distance_metric="cosine")
    with pytest.raises(ValueError, match="^Invalid distance metric: 'l1'"):
        GreedyCoreset(distance_metric="l1")
    assert s.sample(None, None, np.arange(4), np.array([4]), None, 2, LINE).tolist() == [0, 3]
    # query with precomputed embeddings of dataset[unlabeled ++ labeled]
    ds = Dataset(x=np.zeros((5, 1)), y=np.full(5, -1))
    assert s.query(None, ds, np.array([0, 1, 2, 3]), np.array([4]), None, n=2,
                   embeddings=LINE).tolist() == [0, 3]


# ----------------------------------------------------------------- lightweight_coreset
def test_lightweight_coreset_proba_mixes_proba_and_distance():
    # distances to the mean (2/3, 2/3): 1/4, 1/4, 0 -> halves .5, .5, 0; proba 1:1:2
    q = lightweight_coreset_proba(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                                  proba=np.array([1.0, 1.0, 2.0]))
    np.testing.assert_allclose(q, [0.375, 0.375, 0.25], rtol=1e-6)   # float32 embeddings


def test_lightweight_coreset_function():
    x = np.random.default_rng(0).normal(size=(20, 3))
    picks = lightweight_coreset(x, x.mean(axis=0), 7, seed=3)
    assert picks.shape == (7,) and np.unique(picks).size == 7 and picks.max() < 20
    assert picks.tolist() == lightweight_coreset(x, x.mean(axis=0), 7, seed=3).tolist()
    with pytest.raises(ValueError, match=r"n \(n=21\) is greater"):
        lightweight_coreset(x, x.mean(axis=0), 21)


# ----------------------------------------------------------------------------- CAL
def test_cal_needs_probabilities_with_the_embeddings():
    emb = np.eye(3)
    with pytest.raises(ValueError, match="^Error: embeddings_proba is None. This strategy"):
        ContrastiveActiveLearning().sample(None, None, np.arange(2), np.array([2]), None, 1, emb)
    ds = Dataset(x=np.eye(3), y=np.full(3, -1))
    with pytest.raises(ValueError, match="^Error: embeddings_proba is None"):
        ContrastiveActiveLearning().query(None, ds, np.arange(2), np.array([2]), np.array([0]),
                                          n=1, embeddings=emb)


def test_one_column_proba_is_the_positive_class():
    np.testing.assert_allclose(as_proba_matrix(np.array([0.2, 0.9]), 2), [[0.8, 0.2], [0.1, 0.9]])
    # rows 0, 1 unlabeled next to the labeled row 2 (p = 0.5): KL(row 2 || row i) is larger
    # for the more confident row 1 (p = 0.99) than for row 0 (p = 0.6)
    s = ContrastiveActiveLearning(k=1, normalize=False)
    picked = s.sample(None, None, np.arange(2), np.array([2]), None, 1, np.eye(3),
                      embeddings_proba=np.array([0.6, 0.99, 0.5]))
    assert picked.tolist() == [1]


# ----------------------------------------------------------------------------- DAL
def test_dal_without_embed_uses_the_dataset_features():
    x = np.random.default_rng(1).normal(size=(30, 4))
    ds = Dataset(x=x, y=np.full(30, -1))
    args = (ds, np.arange(5, 30), np.arange(5), np.zeros(5, dtype=int))
    bare = DiscriminativeActiveLearning(num_iterations=2, seed=0).query(object(), *args, n=4)
    stub = LinearStubClassifier(num_features=4)           # its embed is dataset.x
    assert bare.tolist() == \
        DiscriminativeActiveLearning(num_iterations=2, seed=0).query(stub, *args, n=4).tolist()


# ------------------------------------------------------------------ SEALS / AnchorAL
@pytest.mark.parametrize("cls", [SEALS, AnchorSubsampling])
def test_initialize_index_small_text_defaults_and_custom(cls):
    pytest.importorskip("hnswlib")
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    index = cls.initialize_index(emb, np.array([3, 1]), {})
    assert (index.space, index.ef_construction, index.M, index.ef) == ("l2", 200, 64, 200)
    assert index.query(np.array([[0.9, 0.0]]), k=1, return_distance=False).tolist() == [[1]]
    custom = cls.initialize_index(emb, np.array([3, 1]),
                                  {"space": "cosine", "ef_construction": 100, "M": 32, "ef": 80})
    assert (custom.space, custom.ef_construction, custom.M, custom.ef) == ("cosine", 100, 32, 80)


def test_seals_get_subset_indices_and_delegation_without_subset():
    # unlabeled 0..3 at 0, 1, 5, 6; labeled 4 at 0.9 and 5 at 5.2: nearest are rows 1 and 2
    x = np.array([[0.0, 1], [1.0, 1], [5.0, 1], [6.0, 1], [0.9, 1], [5.2, 1]])
    ds = Dataset(x=x, y=np.full(6, -1))
    clf = LinearStubClassifier(num_classes=2, num_features=2)
    s = SEALS(LeastConfidence(), k=1, normalize=False)
    assert s.get_subset_indices(clf, ds, np.arange(4), np.array([4, 5])).tolist() == [1, 2]

    class Recording(LeastConfidence):
        def query(self, *args, **kwargs):
            self.args_ = args
            return super().query(*args, **kwargs)

    base = Recording()
    unl, lab = np.arange(4), np.array([4, 5])
    SEALS(base, k=5).query(clf, ds, unl, lab, None, n=1)     # k > pool: no subset
    assert base.args_[2] is unl and base.args_[3] is lab


# ------------------------------------------------------------------------ subsampling
def test_subsampling_scores_property_reads_the_base_strategy():
    base = LeastConfidence()
    s = SubsamplingQueryStrategy(base, subsample_size=20)
    assert s.scores_ is None
    base.scores_ = np.arange(30.0)
    np.testing.assert_array_equal(s.scores_, np.arange(20.0))   # small-text: [:subsample_size]


# ------------------------------------------------------------- small-text's messages
def test_bald_without_dropout_sampling_raises_small_texts_type_error():
    ds = Dataset(x=np.eye(3), y=np.full(3, -1))
    with pytest.raises(TypeError, match=r"^predict_proba\(\) got an unexpected keyword arg.*"
                                        r"BALD needs"):
        BALD().query(LinearStubClassifier(num_features=3), ds, np.arange(3), np.array([]),
                     np.array([]), n=1)


def test_label_mode_error_starts_with_small_texts_words():
    ds = Dataset(x=np.eye(3), y=np.array([0, -1, -1]))
    with pytest.raises(MultiLabelNotSupportedError,
                       match="^Invalid configuration: This query strategy requires "
                             "classification_type=multi-label but single-label data"):
        CategoryVectorInconsistencyAndRanking().query(
            LinearStubClassifier(num_features=3), ds, np.arange(1, 3), np.array([0]),
            np.array([0]), n=1)
