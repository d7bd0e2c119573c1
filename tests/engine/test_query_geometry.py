"""Embedding/geometry strategies on hand-computed cases, and against small-text 1.4.1 where
small-text is deterministic (GreedyCoreset, ContrastiveActiveLearning)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from al_engine.classifiers.base import Classifier
from al_engine.data import Dataset
from al_engine.exceptions import InvalidParameterError, MultiLabelNotSupportedError
from al_engine.query.coreset import (GreedyCoreset, LightweightCoreset, greedy_coreset,
                                     lightweight_coreset_proba)
from al_engine.query.farthest_first import farthest_first
from al_engine.query.embedding import (ContrastiveActiveLearning, EmbeddingKMeans,
                                       nearest_to_centers)
from al_engine.query.probcover import ProbCover
from al_engine.query.subsampling_index import SEALS, AnchorSubsampling
from al_engine.query.uncertainty import LeastConfidence
from al_engine.registry import make_query_strategy


class TableClassifier(Classifier):
    """``dataset.x`` column 0 holds the row id; ``embed`` returns the other columns and
    ``predict_proba`` the rows of a fixed table, so subsets get their own rows."""

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)
        self.num_classes = self.proba.shape[1]

    def fit(self, train_set, weights=None):
        return self

    def _rows(self, dataset):
        return np.asarray(dataset.x)[:, 0].astype(int)

    def predict_proba(self, dataset):
        return self.proba[self._rows(dataset)]

    def predict(self, dataset, return_proba=False):
        p = self.predict_proba(dataset)
        return (p.argmax(1), p) if return_proba else p.argmax(1)

    def embed(self, dataset, return_proba=False, **kwargs):
        e = np.asarray(dataset.x)[:, 1:]
        return (e, self.predict_proba(dataset)) if return_proba else e


def make_case(emb, labeled, proba=None, y=None):
    emb = np.asarray(emb, dtype=float).reshape(len(emb), -1)
    n = emb.shape[0]
    if proba is None:
        proba = np.full((n, 2), 0.5)
    labeled = np.asarray(labeled, dtype=np.int64)
    yy = np.full(n, -1)
    yy[labeled] = 0 if y is None else y
    ds = Dataset(x=np.column_stack([np.arange(n), emb]), y=yy)
    unl = np.setdiff1d(np.arange(n), labeled)
    return dict(clf=TableClassifier(proba), dataset=ds, indices_unlabeled=unl,
                indices_labeled=labeled, y=yy[labeled])


# ------------------------------------------------------------------------- GreedyCoreset
LINE = [0.0, 1.0, 2.0, 3.0, 4.0, 10.0]


def test_greedy_coreset_on_a_line_is_farthest_first():
    # labeled {0}. Picks: 10 (d=10); then 4 (min(4, 6)); then 2 (d=2); then 1 and 3 tie at
    # d=1 -> lower position first.
    case = make_case(LINE, labeled=[0])
    s = GreedyCoreset(normalize=False)
    assert s.query(**case, n=5).tolist() == [5, 4, 2, 1, 3]
    assert s.query(**case, n=2).tolist() == [5, 4]


def test_greedy_coreset_rank_head_then_distance():
    case = make_case(LINE, labeled=[0])
    order = GreedyCoreset(normalize=False).rank(**case, n=1)
    # after picking 10: distances 1, 2, 3, 4 for positions 1..4 -> decreasing
    assert order.tolist() == [5, 4, 3, 2, 1]
    assert GreedyCoreset(normalize=False).rank(**case).tolist() == [5, 4, 2, 1, 3]


def test_greedy_coreset_without_labeled_starts_nearest_to_the_mean():
    case = make_case(LINE, labeled=[])
    # mean of all six = 20/6 = 3.33 -> position 3 (x=3); then 10; then 0
    assert GreedyCoreset(normalize=False).query(**case, n=3).tolist() == [3, 5, 0]


def _naive_farthest_first(x, lab, n, metric):
    """Reference: recompute every min distance for every pick (float64)."""
    picks = []
    for _ in range(n):
        centers = np.concatenate([lab, x[picks]]) if picks else lab
        if metric == "cosine":
            d = 1 - x @ centers.T
        else:
            d = ((x[:, None, :] - centers[None]) ** 2).sum(-1)
        m = d.min(axis=1)
        m[picks] = -np.inf
        picks.append(int(np.argmax(m)))
    return picks


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_lazy_greedy_equals_naive_recomputation(metric):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 6))
    x[340:] = x[:60]                       # exact duplicates -> exact ties
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    lab = rng.normal(size=(5, 6))
    lab /= np.linalg.norm(lab, axis=1, keepdims=True)
    ours = farthest_first(x, lab, 150, metric)
    assert ours.tolist() == _naive_farthest_first(x, lab, 150, metric)
    assert np.unique(ours).size == 150


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_greedy_coreset_same_sequence_as_small_text(metric):
    st = pytest.importorskip("small_text.query_strategies.coresets")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 24)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    unl, lab = np.arange(550), np.arange(550, 600)
    with warnings.catch_warnings():   # small-text: arccos of cosines rounded above 1
        warnings.simplefilter("ignore")
        ref = st.greedy_coreset(x, unl, lab, 12, distance_metric=metric, normalized=True,
                                batch_size=550)
    assert farthest_first(x[unl], x[lab], 12, metric).tolist() == ref.tolist()
    # small-text's signature, same picks (positions into unl = rows of x here)
    assert greedy_coreset(x, unl, lab, 12, distance_metric=metric, normalized=True,
                          batch_size=550).tolist() == ref.tolist()


def test_greedy_coreset_rejects_bad_params():
    with pytest.raises(InvalidParameterError, match="distance_metric"):
        GreedyCoreset(distance_metric="manhattan")
    with pytest.raises(InvalidParameterError, match="batch_size"):
        GreedyCoreset(batch_size=0)


def test_greedy_coreset_batch_size_does_not_change_the_result():
    rng = np.random.default_rng(1)
    case = make_case(rng.normal(size=(200, 5)), labeled=[0, 1, 2])
    a = GreedyCoreset(batch_size=7).query(**case, n=20)
    assert a.tolist() == GreedyCoreset().query(**case, n=20).tolist()


# -------------------------------------------------------------------- LightweightCoreset
def test_lightweight_coreset_proba_hand_computed():
    # mean (2/3, 2/3): rows 0 and 1 at 45 deg (d = 1/4), row 2 at 0 -> d^2 = 1/16, 1/16, 0
    q = lightweight_coreset_proba(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    np.testing.assert_allclose(q, [5 / 12, 5 / 12, 1 / 6], rtol=1e-6)
    # all rows identical: no spread -> uniform
    np.testing.assert_allclose(lightweight_coreset_proba(np.ones((4, 3))), 0.25)


def test_lightweight_coreset_seeded_and_query_is_rank_prefix():
    rng = np.random.default_rng(2)
    case = make_case(rng.normal(size=(50, 4)), labeled=[0, 1])
    s = LightweightCoreset(seed=3)
    assert s.query(**case, n=10).tolist() == s.rank(**case)[:10].tolist()
    assert s.query(**case, n=10).tolist() == LightweightCoreset(seed=3).query(**case, n=10).tolist()


def test_lightweight_coreset_first_pick_follows_q():
    # first pick frequencies over many seeds ~ q (5/12, 5/12, 1/6)
    case = make_case([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [7.0, 7.0]], labeled=[3])
    firsts = np.array([LightweightCoreset(seed=s).query(**case, n=1)[0] for s in range(1500)])
    freq = np.bincount(firsts, minlength=3)[:3] / firsts.size
    np.testing.assert_allclose(freq, [5 / 12, 5 / 12, 1 / 6], atol=0.045)   # ~3.5 sigma


# ---------------------------------------------------------------------- EmbeddingKMeans
def _three_clusters():
    centers = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    offsets = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0],
                        [0, 0, 1], [0, 0, -1]], dtype=float) * 0.3
    sizes = [7, 5, 3]   # cluster 0 biggest
    pts = [centers[c] + offsets[:sizes[c]] for c in range(3)]
    return np.concatenate(pts), np.repeat(np.arange(3), sizes)


def test_embedding_kmeans_picks_one_center_point_per_cluster_biggest_first():
    x, cluster = _three_clusters()
    case = make_case(np.vstack([x, [[5.0, 5.0, 5.0]]]), labeled=[len(x)])
    picked = EmbeddingKMeans(seed=0, normalize=False).query(**case, n=3)
    assert cluster[picked].tolist() == [0, 1, 2]
    # each cluster's first point is its center (offset 0), which is nearest to the mean
    assert picked.tolist() == [0, 7, 12]


def test_nearest_to_centers_resolves_shared_nearest_rows():
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    centers = np.array([[1.0, 0.05], [1.0, 0.0]])   # both nearest to row 0
    assert nearest_to_centers(centers, x).tolist() == [0, 1]


def test_embedding_kmeans_rank_and_subsample():
    x, _ = _three_clusters()
    case = make_case(np.vstack([x, [[5.0, 5.0, 5.0]]]), labeled=[len(x)])
    order = EmbeddingKMeans(seed=0, max_samples=None).rank(**case, n=3)
    assert order[:3].tolist() == [0, 7, 12]
    assert sorted(order.tolist()) == list(range(len(x)))
    # a subsample at least n rows big still selects n distinct rows
    sub = EmbeddingKMeans(seed=0, max_samples=4).query(**case, n=3)
    assert np.unique(sub).size == 3


# ---------------------------------------------------------------------------------- CAL
# 1-D positions: labeled A@0 (p=.9/.1), B@10 (p=.1/.9); candidates c1@1.5 (.5/.5),
# c2@9 (.1/.9), c3@4 (.9/.1).
CAL_POS = [0.0, 10.0, 1.5, 9.0, 4.0]
CAL_PROBA = [[.9, .1], [.1, .9], [.5, .5], [.1, .9], [.9, .1]]


def _kl(p, q):
    p, q = np.asarray(p), np.asarray(q)
    return float(np.sum(p * np.log(p / q)))


def test_cal_paper_mode_uses_labeled_neighbours():
    case = make_case(CAL_POS, labeled=[0, 1], proba=CAL_PROBA)
    s = ContrastiveActiveLearning(k=1, normalize=False)
    assert s.query(**case, n=1).tolist() == [2]
    # c1 -> A: KL(A || c1); c2 -> B: 0; c3 -> A (4 < 6): 0
    np.testing.assert_allclose(s.scores_[[2, 3, 4]], [_kl(CAL_PROBA[0], CAL_PROBA[2]), 0, 0],
                               atol=1e-12)
    assert np.isnan(s.scores_[[0, 1]]).all()
    assert s.neighbourhood_ == "labeled"


def test_cal_pool_mode_is_small_text_semantics():
    case = make_case(CAL_POS, labeled=[0, 1], proba=CAL_PROBA)
    s = ContrastiveActiveLearning(k=2, normalize=False, neighbourhood="pool")
    # k=2 nearest in the whole pool, the candidate itself included (KL 0):
    # c1: self + A -> KL(A||c1)/2; c2: self + B -> 0; c3: self + c1 -> KL(c1||c3)/2
    expected = [_kl(CAL_PROBA[0], CAL_PROBA[2]) / 2, 0.0, _kl(CAL_PROBA[2], CAL_PROBA[4]) / 2]
    assert s.query(**case, n=1).tolist() == [4]
    np.testing.assert_allclose(s.scores_[[2, 3, 4]], expected, atol=1e-12)
    assert s.rank(**case).tolist() == [4, 2, 3]


def test_cal_without_labeled_falls_back_to_pool():
    case = make_case(CAL_POS, labeled=[], proba=CAL_PROBA)
    s = ContrastiveActiveLearning(k=2, normalize=False)
    assert np.unique(s.query(**case, n=3)).size == 3
    assert s.neighbourhood_ == "pool"


def test_cal_pool_mode_same_set_as_small_text():
    pytest.importorskip("small_text")
    from small_text.data import SklearnDataset
    from small_text.query_strategies import ContrastiveActiveLearning as StCAL

    rng = np.random.default_rng(4)
    n_rows, emb = 400, rng.normal(size=(400, 8))
    z = emb @ rng.normal(size=(8, 3))
    proba = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labeled = np.arange(0, 400, 10)
    case = make_case(emb, labeled=labeled, proba=proba)
    ours = ContrastiveActiveLearning(neighbourhood="pool", vector_index="exact").query(**case, n=15)
    clf = case["clf"]
    st_ds = SklearnDataset(case["dataset"].x, np.zeros(n_rows, dtype=int), target_labels=[0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = StCAL(k=10, pbar=None).query(clf, st_ds, case["indices_unlabeled"], labeled,
                                             case["y"], n=15)
    assert sorted(ours.tolist()) == sorted(np.asarray(theirs).tolist())


def test_cal_is_single_label_only_and_validates_params():
    with pytest.raises(InvalidParameterError, match="neighbourhood"):
        ContrastiveActiveLearning(neighbourhood="graph")
    with pytest.raises(InvalidParameterError, match="vector_index"):
        ContrastiveActiveLearning(vector_index="faiss")
    with pytest.raises(InvalidParameterError, match="k must be"):
        ContrastiveActiveLearning(k=0)
    ds = Dataset(x=np.column_stack([np.arange(4), np.eye(4)]),
                 y=sp.csr_matrix(np.array([[1, 0], [0, 0], [0, 0], [0, 0]])), multi_label=True,
                 labeled=np.array([True, False, False, False]))
    with pytest.raises(MultiLabelNotSupportedError):
        ContrastiveActiveLearning().query(TableClassifier(np.full((4, 2), .5)), ds,
                                          np.arange(1, 4), np.array([0]), ds.y[[0]], n=1)


# ---------------------------------------------------------------------------- ProbCover
def _two_tight_clusters():
    rng = np.random.default_rng(0)
    a = np.array([1.0, 0.0, 0.0]) + rng.normal(scale=0.01, size=(6, 3))   # 6 points
    b = np.array([0.0, 1.0, 0.0]) + rng.normal(scale=0.01, size=(3, 3))   # 3 points
    return np.vstack([a, b])


def test_prob_cover_picks_one_per_cluster_bigger_first():
    emb = _two_tight_clusters()
    case = make_case(np.vstack([emb, [[0.0, 0.0, 1.0]]]), labeled=[9])
    picked = ProbCover().query(**case, n=2)
    assert picked[0] < 6 and 6 <= picked[1] < 9


def test_prob_cover_skips_clusters_covered_by_labeled():
    emb = _two_tight_clusters()
    case = make_case(emb, labeled=[0])   # cluster A is covered by the labeled row 0
    assert 6 <= ProbCover().query(**case, n=1)[0] < 9


def test_prob_cover_never_duplicates_nor_returns_labeled():
    emb = _two_tight_clusters()
    case = make_case(emb, labeled=[0])
    picked = ProbCover().query(**case, n=8)
    assert np.unique(picked).size == 8 and 0 not in picked.tolist()
    order = ProbCover().rank(**case, n=2)
    assert sorted(order.tolist()) == list(range(1, 9))


def test_prob_cover_ball_radius_is_squared_euclidean_on_normalized():
    # two unit vectors at cos = 0.96 (d^2 = 0.08): one ball covers both with r=0.1, not r=0.05
    v = np.array([[1.0, 0.0], [0.96, np.sqrt(1 - 0.96 ** 2)], [-1.0, 0.0]])
    case = make_case(v, labeled=[2])
    s = ProbCover(ball_radius=0.1)
    assert sorted(s.rank(**case, n=1).tolist()) == [0, 1]
    assert s.degree_.tolist() == [0, 0]   # the pick covered both
    s = ProbCover(ball_radius=0.05)
    s.rank(**case, n=1)
    assert s.degree_.tolist() == [0, 1]   # the other one is still uncovered


# ------------------------------------------------------------------- SEALS / AnchorAL
def _line_uncertainty_case():
    # labeled at 0; unlabeled at 1..9 (positions 1..9). The most uncertain row is far away
    # (position 9), the nearer ones are increasingly uncertain with distance.
    pos = np.arange(10, dtype=float)
    p1 = np.array([0.5, 0.9, 0.8, 0.7, 0.6, 0.95, 0.95, 0.95, 0.95, 0.5])
    proba = np.column_stack([p1, 1 - p1])
    return make_case(pos, labeled=[0], proba=proba)


def test_seals_chooses_among_the_neighbours_of_labeled():
    case = _line_uncertainty_case()
    s = SEALS(LeastConfidence(), k=3, normalize=False)
    # subset = 3 nearest unlabeled of 0: positions 1, 2, 3 -> LC picks 3 (0.7), then 2
    assert s.query(**case, n=2).tolist() == [3, 2]
    assert s.subset_.tolist() == [1, 2, 3]
    # n beyond the subset: the subset first, then the rest by the base strategy's scores
    assert s.query(**case, n=5).tolist() == [3, 2, 1, 9, 4]
    assert s.rank(**case).tolist() == [3, 2, 1, 9, 4, 5, 6, 7, 8]


def test_seals_whole_pool_when_k_exceeds_pool_and_by_name():
    case = _line_uncertainty_case()
    s = make_query_strategy("seals", k=50)
    assert s.query(**case, n=1).tolist() == [9]
    assert isinstance(s.base_query_strategy_, LeastConfidence)
    with pytest.raises(InvalidParameterError, match="hnsw_kwargs"):
        make_query_strategy("seals", hnsw_kwargs={"space": "ip"})
    with pytest.raises(InvalidParameterError):
        make_query_strategy("seals", base_query_strategy="no_such_strategy")


def test_anchor_subsampling_restricts_to_anchor_neighbourhoods():
    case = _line_uncertainty_case()
    s = AnchorSubsampling(LeastConfidence(), subsample_size=2, k=4, normalize=False, seed=0)
    # anchor = the labeled row 0; its 4 nearest unlabeled: 1..4; the 2 most similar: 1, 2
    assert s.query(**case, n=1).tolist() == [2]
    assert s.subset_.tolist() == [1, 2]
    assert s.anchors_.tolist() == [0]


def test_anchor_subsampling_anchors_per_class_and_seeded():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(120, 5))
    labeled = np.arange(0, 120, 4)
    y = np.arange(labeled.size) % 3
    case = make_case(emb, labeled=labeled, y=y)
    s = AnchorSubsampling("least_confidence", subsample_size=20, num_anchors=4, k=10, seed=1)
    a = s.query(**case, n=5)
    assert s.anchors_.size == 12 and np.isin(s.anchors_, labeled).all()
    assert AnchorSubsampling("least_confidence", subsample_size=20, num_anchors=4, k=10,
                             seed=1).query(**case, n=5).tolist() == a.tolist()
    assert np.isin(a, s.subset_).all() and s.subset_.size == 20


def test_anchor_subsampling_multi_label_anchors_with_a_multi_label_base():
    rng = np.random.default_rng(4)
    n = 60
    emb = rng.normal(size=(n, 4))
    ind = np.zeros((n, 3), dtype=np.int8)
    labeled = np.arange(0, n, 5)
    ind[labeled, np.arange(labeled.size) % 3] = 1
    mask = np.zeros(n, dtype=bool)
    mask[labeled] = True
    ds = Dataset(x=np.column_stack([np.arange(n), emb]), y=sp.csr_matrix(ind),
                 multi_label=True, labeled=mask)
    unl = np.flatnonzero(~mask)
    s = AnchorSubsampling("random", subsample_size=10, k=8, seed=0)
    s.base_query_strategy_.seed = 0
    out = s.query(TableClassifier(np.full((n, 3), .5)), ds, unl, labeled, ds.y[labeled], n=4)
    assert np.unique(out).size == 4 and np.isin(out, s.subset_).all()
