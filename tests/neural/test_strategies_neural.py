"""Gradient and Bayesian strategies against hand computations and explicit autograd."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from al_engine.query.bayesian import BALD, bald_scores
from al_engine.query.drl import DiscriminativeRepresentationLearning
from al_engine.query.gradient import (BADGE, ExpectedGradientLength, ExpectedGradientLengthLayer,
                                      ExpectedGradientLengthMaxWord, badge_factors,
                                      kmeans_plusplus_order)
from tests.engine.conftest import FixedProbaClassifier, make_pool
from tests.neural.conftest import text_dataset


@pytest.fixture(scope="module")
def kimcnn():
    from al_engine.classifiers.kimcnn import KimCNNClassifier
    ds = text_dataset(30)
    clf = KimCNNClassifier(3, embed_dim=8, num_kernels=4, kernel_heights=(2, 3), num_epochs=3,
                           mini_batch_size=8, device="cpu")
    clf.featurize(ds)
    clf.fit(ds[:10])
    return clf, ds


def explicit_egl(clf, ds, params_of):
    """One backward pass per (instance, class): the definition of EGL, for comparison."""
    tensors = clf.tensorize(ds)
    out = []
    for i in range(len(ds)):
        batch = {k: v[i:i + 1] for k, v in tensors.items()}
        logits = clf.forward(batch)[0]
        p = torch.softmax(logits.double(), -1)[0].detach()
        total = 0.0
        for k in range(p.numel()):
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([k]))
            grads = torch.autograd.grad(loss, params_of(clf), retain_graph=True)
            total += float(p[k]) * float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        out.append(total)
    return np.array(out)


def test_bald_hand_computed():
    # two passes: confident but disagreeing -> high; agreeing -> 0
    samples = np.array([[[1.0, 0.0], [0.0, 1.0]],
                        [[0.5, 0.5], [0.5, 0.5]],
                        [[0.9, 0.1], [0.9, 0.1]]])
    np.testing.assert_allclose(bald_scores(samples), [np.log(2), 0.0, 0.0], atol=1e-12)
    h = lambda p: -(p * np.log(p)).sum()  # noqa: E731
    s = np.array([[[0.8, 0.2], [0.4, 0.6]]])
    np.testing.assert_allclose(bald_scores(s), h(np.array([0.6, 0.4])) -
                               (h(np.array([0.8, 0.2])) + h(np.array([0.4, 0.6]))) / 2)


def test_bald_queries_through_mc_dropout(kimcnn):
    clf, ds = kimcnn
    strat = BALD(dropout_samples=5)
    unl = np.arange(10, 30)
    picked = strat.query(clf, ds, unl, np.arange(10), ds.y[:10], n=4)
    expected = bald_scores(clf.predict_proba(ds[unl], dropout_sampling=5))
    assert picked.tolist() == unl[np.argsort(-expected, kind="stable")[:4]].tolist()
    with pytest.raises(ValueError, match="dropout_samples"):
        BALD(dropout_samples=1)


def test_egl_equals_the_explicit_definition(kimcnn):
    clf, ds = kimcnn
    strat = ExpectedGradientLength(batch_size=7)
    strat.query(clf, ds, np.arange(10, 30), np.arange(10), ds.y[:10], n=3)
    expected = explicit_egl(clf, ds[10:30], lambda c: [p for p in c.model_.parameters()])
    np.testing.assert_allclose(strat.scores_[10:30], expected, rtol=1e-5)
    assert np.isnan(strat.scores_[:10]).all()


def test_egl_layer_closed_form_equals_autograd(kimcnn):
    clf, ds = kimcnn
    closed, by_name = ExpectedGradientLengthLayer(), ExpectedGradientLengthLayer(layer_name="fc")
    args = (clf, ds, np.arange(10, 30), np.arange(10), ds.y[:10])
    assert closed.query(*args, n=5).tolist() == by_name.query(*args, n=5).tolist()
    expected = explicit_egl(clf, ds[10:30], lambda c: list(c.model_.fc.parameters()))
    np.testing.assert_allclose(closed.scores_[10:30], expected, rtol=1e-5)
    np.testing.assert_allclose(by_name.scores_[10:30], expected, rtol=1e-5)
    with pytest.raises(ValueError, match="layer_name"):
        ExpectedGradientLengthLayer(layer_name="nope").query(*args, n=2)


def test_egl_word_is_the_max_token_gradient(kimcnn):
    clf, ds = kimcnn
    strat = ExpectedGradientLengthMaxWord(layer_name="embedding")
    strat.query(clf, ds, np.arange(10, 30), np.arange(10), ds.y[:10], n=3)
    tensors = clf.tensorize(ds[10:30])
    for row in (0, 7):
        ids = tensors["input_ids"][row:row + 1]
        emb = clf.model_.embedding(ids).detach().requires_grad_(True)
        logits = clf.forward({"input_ids": ids}, inputs_embeds=emb)[0]
        p = torch.softmax(logits.double(), -1)[0].detach()
        real = (ids[0] != 0)
        total = 0.0
        for k in range(3):
            (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, torch.tensor([k])),
                                       emb, retain_graph=True)
            total += float(p[k]) * float(g[0][real].norm(dim=-1).max())
        assert strat.scores_[10 + row] == pytest.approx(total, rel=1e-5)
    with pytest.raises(ValueError, match="embedding layer"):
        ExpectedGradientLengthMaxWord(layer_name="fc").query(clf, ds, np.arange(10, 30),
                                                              np.arange(10), ds.y[:10], n=2)


@pytest.mark.parametrize("strategy", [ExpectedGradientLength(), ExpectedGradientLengthMaxWord(),
                                      BALD(), ExpectedGradientLengthLayer(layer_name="fc")])
def test_non_torch_classifier_raises_type_error(strategy):
    pool = make_pool()
    with pytest.raises(TypeError, match="kimcnn"):
        strategy.query(**pool.args(), n=3)


def test_badge_factored_distances_and_first_pick():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.4, 0.35, 0.25], [0.34, 0.33, 0.33]])
    emb = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, -1.0]])
    a, h = badge_factors(emb, proba)
    np.testing.assert_allclose(a[0], [-0.3, 0.2, 0.1])
    g = np.einsum("ic,id->icd", a, h).reshape(4, -1)          # the explicit gradient embeddings
    order = kmeans_plusplus_order(a, h, 4, np.random.default_rng(0))
    assert order[0] == int(np.argmax(np.linalg.norm(g, axis=1)))  # row 3: most uncertain, far
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    # the second pick follows D^2 sampling with the explicit distances
    d2 = ((g - g[order[0]]) ** 2).sum(1)
    u = np.random.default_rng(0).random()
    assert order[1] == int(np.searchsorted(np.cumsum(d2), u * d2.sum(), side="right"))


def test_badge_skips_duplicates_and_ranks_whole_pool():
    proba = np.tile([[0.6, 0.4]], (6, 1))
    clf = FixedProbaClassifier(proba)   # embed = proba: all six points identical
    strat = BADGE(rank_batch_size=2)
    ds = make_pool(6, 0, num_classes=2).dataset
    assert sorted(strat.query(clf, ds, np.arange(6), np.array([], int), None, n=6).tolist()) == list(range(6))


def test_drl_prefers_instances_unlike_the_labeled_ones():
    rng = np.random.default_rng(0)
    from al_engine.data import Dataset
    from tests.engine.conftest import LinearStubClassifier
    x = np.vstack([rng.normal(0, 1, size=(30, 8)), rng.normal(4, 1, size=(15, 8))])
    y = np.full(45, -1)
    y[:10] = np.arange(10) % 3
    ds = Dataset(x=x, y=y)
    strat = DiscriminativeRepresentationLearning(num_iterations=1, unlabeled_factor=3)
    picked = strat.query(LinearStubClassifier(), ds, np.arange(10, 45), np.arange(10), y[:10], n=5)
    assert (picked >= 30).all(), picked       # all from the cluster no labeled row is in
