"""KimCNN: a convolutional text classifier (Kim, EMNLP 2014), in torch.

Texts are lower-cased and split into words and punctuation; word ids index an embedding
layer (randomly initialized, or the word vectors passed as ``embedding_matrix``); filters of
``kernel_heights`` words slide over the sequence, each followed by ReLU and max-pooling over
time; the concatenated pooled features (``num_kernels * len(kernel_heights)``) go through
dropout into a linear layer:

.. math:: h = [\\max_t \\mathrm{ReLU}(W_k * E_{t:t+k} + b_k)]_{k},\\quad
          \\mathrm{logits} = W_o\\,\\mathrm{dropout}(h) + b_o

The vocabulary is built by :meth:`KimCNNClassifier.featurize` from the whole pool (no labels
needed), or at the first ``fit`` from the training texts; unknown words map to ``<unk>``.
Parameter names follow small-text's ``KimCNNClassifier``. torch is imported only by ``fit``
and inference.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np

from al_engine._param_validation import (NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_REAL, Interval,
                                        Real, SequenceOf, validate_params)
from al_engine.classifiers.base import Classifier
from al_engine.classifiers._torch import TorchClassifier

_TOKEN = re.compile(r"\w+|[^\w\s]")
PAD, UNK = 0, 1


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks."""
    return _TOKEN.findall(("" if text is None else str(text)).lower())


class KimCNNClassifier(TorchClassifier, Classifier):
    """Convolutional neural network for text classification (single- and multi-label).

    Parameters
    ----------
    num_classes : int
    multi_label : bool, default=False
    embed_dim : int, default=100
        Word vector size (ignored when ``embedding_matrix`` is given).
    num_kernels : int, default=100
        Filters per kernel height.
    kernel_heights : sequence of int, default=(3, 4, 5)
    dropout : float, default=0.5
    max_seq_len : int, default=60
        Texts are cut to this many tokens.
    mini_batch_size : int, default=32
    num_epochs : int, default=10
    lr : float, default=1e-3
        AdamW learning rate.
    embedding_matrix : array of shape (vocab, embed_dim) or None
        Pretrained word vectors aligned with ``vocab`` (both or neither).
    vocab : sequence of str or None
        Fixed vocabulary (index 0 ``<pad>``, 1 ``<unk>`` are added in front).
    min_freq : int, default=1
        Words seen fewer times are ``<unk>`` when the vocabulary is built from texts.
    device : str or None
        None: CUDA when available, else CPU.
    seed : int, default=0
        Seeds weight initialization, shuffling and dropout (deterministic on CPU).
    """

    _parameter_constraints = {
        **{name: POSITIVE_INT for name in ("num_classes", "embed_dim", "num_kernels",
                                           "max_seq_len", "mini_batch_size", "num_epochs",
                                           "min_freq")},
        "kernel_heights": SequenceOf(POSITIVE_INT),
        "dropout": Interval(Real, 0, 1, closed="left"),
        "lr": POSITIVE_REAL,
        "seed": NON_NEGATIVE_INT,
    }

    def __init__(self, num_classes: int, multi_label: bool = False, embed_dim: int = 100,
                 num_kernels: int = 100, kernel_heights=(3, 4, 5), dropout: float = 0.5,
                 max_seq_len: int = 60, mini_batch_size: int = 32, num_epochs: int = 10,
                 lr: float = 1e-3, embedding_matrix=None, vocab=None, min_freq: int = 1,
                 device: str | None = None, seed: int = 0):
        validate_params(self._parameter_constraints, locals())
        if (embedding_matrix is None) != (vocab is None) and embedding_matrix is not None:
            raise ValueError("embedding_matrix needs the matching vocab")
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.embed_dim = embed_dim
        self.num_kernels = num_kernels
        self.kernel_heights = kernel_heights
        self.dropout = dropout
        self.max_seq_len = max_seq_len
        self.mini_batch_size = mini_batch_size
        self.num_epochs = num_epochs
        self.lr = lr
        self.embedding_matrix = embedding_matrix
        self.vocab = vocab
        self.min_freq = min_freq
        self.device = device
        self.seed = seed

    # ------------------------------------------------------------------ vocabulary
    def _build_vocab(self, texts) -> None:
        if self.vocab is not None:
            words = [str(w) for w in self.vocab]
        else:
            counts = Counter(w for t in texts for w in tokenize(t))
            words = sorted(w for w, c in counts.items() if c >= self.min_freq)
        self.vocab_ = {w: i + 2 for i, w in enumerate(words)}

    def featurize(self, dataset):
        """Builds the vocabulary from the pool's texts (once); returns ``dataset``."""
        super().featurize(dataset)
        if not hasattr(self, "vocab_"):
            self._build_vocab(dataset.texts)
        return dataset

    def tensorize(self, dataset) -> dict:
        import torch
        if dataset.texts is None:
            raise ValueError("KimCNNClassifier needs texts; the dataset has none")
        width = max(max(self.kernel_heights), 1)
        seqs = [[self.vocab_.get(w, UNK) for w in tokenize(t)[:self.max_seq_len]]
                for t in dataset.texts]
        length = max([width] + [len(s) for s in seqs])
        ids = np.zeros((len(seqs), length), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = s
        return {"input_ids": torch.from_numpy(ids)}

    # ------------------------------------------------------------------ model protocol
    def _build(self, train_set):
        if not hasattr(self, "vocab_"):
            self._build_vocab(train_set.texts)
        vocab_size = len(self.vocab_) + 2
        matrix = None
        if self.embedding_matrix is not None:
            m = np.asarray(self.embedding_matrix, dtype=np.float32)
            matrix = np.zeros((vocab_size, m.shape[1]), dtype=np.float32)
            matrix[2:2 + m.shape[0]] = m[:vocab_size - 2]
        dim = self.embed_dim if matrix is None else matrix.shape[1]
        from al_engine.classifiers._torch_modules import KimCNN
        return KimCNN(vocab_size, self.num_classes, dim, self.num_kernels,
                      tuple(self.kernel_heights), self.dropout, matrix)

    def forward(self, batch, inputs_embeds=None, params=None):
        if params is not None:
            from torch.func import functional_call
            return functional_call(self.model_, params, (),
                                   {"input_ids": batch["input_ids"], "inputs_embeds": inputs_embeds})
        return self.model_(input_ids=batch["input_ids"], inputs_embeds=inputs_embeds)

    def head(self):
        return self.model_.fc

    def input_embedding(self):
        return self.model_.embedding

    def token_mask(self, batch):
        return batch["input_ids"] != PAD

    def __repr__(self) -> str:
        return (f"KimCNNClassifier(num_classes={self.num_classes}, multi_label={self.multi_label}, "
                f"embed_dim={self.embed_dim}, num_kernels={self.num_kernels}, "
                f"kernel_heights={tuple(self.kernel_heights)}, num_epochs={self.num_epochs}, "
                f"seed={self.seed})")
