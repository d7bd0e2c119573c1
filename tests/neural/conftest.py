"""Fixtures for the neural tests: a tiny random BERT saved to a local folder (built from a
config, with a word-level tokenizer), and small text datasets whose labels follow words."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the neural tests need torch (the 'neural' extra)")
pytest.importorskip("transformers", reason="the neural tests need transformers")

from al_engine.data import Dataset  # noqa: E402

torch.set_num_threads(1)  # the machine is shared; these models are tiny

WORDS = {0: ["apple", "banana", "cherry", "grape"], 1: ["car", "truck", "bus", "train"],
         2: ["red", "green", "blue", "yellow"]}
FILLER = ["the", "a", "is", "on", "with", "and", "of", "very"]


def make_texts(n: int, seed: int = 0, num_classes: int = 3):
    """``n`` texts; text i carries 2 words of class ``i % num_classes`` among filler words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        c = i % num_classes
        words = list(rng.choice(WORDS[c], size=2)) + list(rng.choice(FILLER, size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(c)
    return texts, np.asarray(labels)


def text_dataset(n: int = 30, seed: int = 0, num_classes: int = 3, labeled: bool = True):
    texts, y = make_texts(n, seed, num_classes)
    return Dataset(texts=texts, y=y if labeled else None,
                   target_labels=[str(c) for c in range(num_classes)])


def multi_label_dataset(n: int = 30, seed: int = 0):
    """Labels: class 0 and/or class 1 words present (class 2 = 'red'-words)."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    texts, rows = [], []
    for i in range(n):
        present = [c for c in range(3) if (i >> c) & 1] or [i % 3]
        words = [str(rng.choice(WORDS[c])) for c in present] + list(rng.choice(FILLER, size=2))
        texts.append(" ".join(words))
        rows.append([1 if c in present else 0 for c in range(3)])
    return Dataset(texts=texts, y=sp.csr_matrix(np.asarray(rows)), multi_label=True,
                   target_labels=["0", "1", "2"])


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory) -> str:
    """A 2-layer BERT with hidden size 32 and a word-level vocabulary, saved locally."""
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + \
        [w for ws in WORDS.values() for w in ws]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    BertModel(config).save_pretrained(str(folder))
    return str(folder)
