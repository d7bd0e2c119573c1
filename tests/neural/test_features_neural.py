"""SentenceEmbeddingFeaturizer on a tiny local BERT: pooling formula, per-text cache (memory
and disk), errors; embedding_logistic_regression end to end."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from al_engine.exceptions import NotFittedError
from al_engine.features_neural import SentenceEmbeddingFeaturizer, clear_embedding_cache
from tests.neural.conftest import make_texts, text_dataset


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_embedding_cache()
    yield
    clear_embedding_cache()


def manual_mean_pool(path, texts):
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for t in texts:  # one at a time: no padding involved
            enc = tok([t], return_tensors="pt")
            mean = model(**enc).last_hidden_state[0].mean(0)
            out.append((mean / mean.norm()).numpy())
    return np.stack(out)


def test_embeddings_are_the_normalized_masked_mean(tiny_bert_path):
    texts = ["apple on the car", "red", "banana and a very green bus with a train"]
    f = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu", batch_size=2)
    emb = f.fit_transform(texts)
    assert emb.shape == (3, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    # batch of 2 pads the shorter text: the mask must make padding irrelevant
    np.testing.assert_allclose(emb, manual_mean_pool(tiny_bert_path, texts), atol=1e-5)


def test_cache_encodes_each_text_once(tiny_bert_path):
    texts, _ = make_texts(20)
    f = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu").fit()
    first = f.transform(texts)
    assert f.num_encoded_ == len(set(texts))
    # a new instance (the backend builds one per retrain) shares the process cache
    g = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu").fit()
    again = g.transform(texts[::-1] + ["a brand new text"])
    assert g.num_encoded_ == 1
    np.testing.assert_array_equal(again[:-1], first[::-1])


def _text_whose_digest_ends_with_nul() -> str:
    import hashlib
    i = 0
    while hashlib.sha1(f"apple {i}".encode()).digest()[-1] != 0:
        i += 1
    return f"apple {i}"


def test_disk_cache_survives_a_process_restart(tiny_bert_path, tmp_path):
    texts, _ = make_texts(10)
    texts.append(_text_whose_digest_ends_with_nul())  # regression: NUL-stripped keys
    f = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu", cache_dir=str(tmp_path))
    emb = f.fit_transform(texts)
    assert len(list(tmp_path.glob("embeddings-*.npz"))) == 1
    clear_embedding_cache()  # what a restart loses
    g = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu", cache_dir=str(tmp_path)).fit()
    np.testing.assert_array_equal(g.transform(texts), emb)
    assert g.num_encoded_ == 0


def test_without_cache_gives_the_same_vectors(tiny_bert_path):
    texts, _ = make_texts(6)
    a = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu").fit_transform(texts)
    b = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu", cache=False).fit_transform(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_errors_and_pickle(tiny_bert_path, tmp_path):
    with pytest.raises(ValueError, match="model_path"):
        SentenceEmbeddingFeaturizer(model_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbeddingFeaturizer(batch_size=0)
    f = SentenceEmbeddingFeaturizer(model_path=tiny_bert_path, device="cpu")
    with pytest.raises(NotFittedError):
        f.transform(["x"])
    f.fit()
    with pytest.raises(ValueError, match="single string"):
        f.transform("apple")
    g = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(g.transform(["apple"]), f.transform(["apple"]))


def test_embedding_logistic_regression_learns_the_word_classes(tiny_bert_path):
    from al_engine.registry import make_classifier
    ds = text_dataset(90)
    clf = make_classifier("embedding_logistic_regression", num_classes=3, model_path=tiny_bert_path,
                          device="cpu", C=100.0)
    ds = clf.featurize(ds)
    assert ds.x.shape == (90, 32)
    clf.fit(ds[:60])
    assert np.mean(clf.predict(ds[60:]) == ds.y[60:]) >= 0.8
