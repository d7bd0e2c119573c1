"""Shared machinery of the torch classifiers (KimCNN, transformer fine-tuning, SetFit).

torch is imported inside the functions, so that importing (and building, e.g. to validate
a configuration in the web process) a torch classifier never imports torch; only ``fit`` and
inference do.

Protocol used by the gradient and Bayesian strategies (:mod:`al_engine.query.gradient`,
:mod:`al_engine.query.bayesian`); every :class:`TorchClassifier` provides:

* ``model_`` -- the fitted ``torch.nn.Module``; ``device_`` -- its device;
* ``tensorize(dataset) -> dict[str, Tensor]`` -- the model inputs, first dim = rows;
* ``forward(batch, inputs_embeds=None, params=None) -> (logits, hidden)`` -- ``hidden`` is
  the input of the final linear layer ``head()``; ``params`` runs the model functionally
  (``torch.func.functional_call``) for per-example gradients;
* ``input_embedding()`` (the token embedding layer) and ``token_mask(batch)`` (real tokens);
* ``predict_proba(dataset, dropout_sampling=T)`` -- ``T`` Monte-Carlo dropout samples,
  shape ``(n, T, num_classes)``, as small-text.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: torch is imported lazily
    import torch

import numpy as np
import scipy.sparse as sp

from al_engine._param_validation import POSITIVE_INT, check_param
from al_engine.classifiers.base import labels_from_proba
from al_engine.exceptions import MultiLabelNotSupportedError, NotFittedError


def check_train_set(clf, train_set, weights):
    import torch
    n = len(train_set)
    if n == 0:
        raise ValueError("train_set is empty")
    if bool(train_set.is_multi_label) != clf.multi_label:
        mode = "multi-label" if train_set.is_multi_label else "single-label"
        raise MultiLabelNotSupportedError(
            f"train_set is {mode} but the classifier was built with multi_label={clf.multi_label}")
    if not np.all(train_set.labeled_mask):
        raise ValueError("train_set contains unlabeled rows; fit only on labeled data")
    if train_set.texts is None:
        raise ValueError(f"{type(clf).__name__} needs texts; the dataset has none")
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        if weights.shape != (n,) or not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError(f"weights must be finite, non-negative, of shape ({n},)")
    if clf.multi_label:
        y = sp.csr_matrix(train_set.y)
        if y.shape[1] != clf.num_classes:
            raise ValueError(f"train_set has {y.shape[1]} label columns but num_classes={clf.num_classes}")
        target = torch.as_tensor(y.toarray(), dtype=torch.float32)
    else:
        y = np.asarray(train_set.y)
        if y.max() >= clf.num_classes:
            raise ValueError(f"train_set has class id {int(y.max())} but num_classes={clf.num_classes}")
        target = torch.as_tensor(y, dtype=torch.long)
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    return target, w


def loss_fn(logits, target, multi_label: bool, reduction: str = "none"):
    """Cross-entropy (single-label) or per-label binary cross-entropy summed over labels."""
    import torch
    if multi_label:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = loss.sum(-1)
    else:
        loss = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return loss if reduction == "none" else loss.mean()


def set_dropout(module: torch.nn.Module, active: bool) -> None:
    import torch
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train(active)


class TorchClassifier:
    """Mixin with the training loop, prediction, embedding and MC dropout.

    Subclasses set ``num_classes``, ``multi_label``, ``mini_batch_size``, ``num_epochs``, ``lr``,
    ``seed``, ``device`` and implement ``_build(train_set)`` (returns the module),
    ``tensorize``, ``forward``, ``head`` (and ``input_embedding``/``token_mask``).
    """

    needs_torch = True
    reads_texts = True
    supports_dropout_sampling = True
    supports_gradients = True

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        if getattr(self, "model_", None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(train_set) first")

    def _device(self) -> torch.device:
        import torch
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def batches(self, tensors: dict, batch_size: int, order=None):
        import torch
        n = next(iter(tensors.values())).shape[0]
        order = torch.arange(n) if order is None else order
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield idx, {k: v[idx].to(self.device_) for k, v in tensors.items()}

    def _optimizer(self):
        import torch
        return torch.optim.AdamW([p for p in self.model_.parameters() if p.requires_grad], lr=self.lr)

    # ------------------------------------------------------------------ training
    def _train_loop(self, train_set, target, weights) -> None:
        import torch
        tensors = self.tensorize(train_set)
        gen = torch.Generator().manual_seed(int(self.seed))
        opt = self._optimizer()
        n = target.shape[0]
        self.model_.train()
        for _ in range(int(self.num_epochs)):
            order = torch.randperm(n, generator=gen)
            for idx, batch in self.batches(tensors, self.mini_batch_size, order):
                logits, _ = self.forward(batch)
                loss = loss_fn(logits, target[idx].to(self.device_), self.multi_label)
                if weights is not None:
                    w = weights[idx].to(self.device_)
                    loss = (loss * w).sum() / w.sum().clamp(min=1e-12)
                else:
                    loss = loss.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.model_.eval()

    def fit(self, train_set, weights=None):
        """Train a fresh model on ``train_set`` (seeded: the same data gives the same model
        on CPU). ``weights`` are per-instance loss weights."""
        import torch
        target, w = check_train_set(self, train_set, weights)
        torch.manual_seed(int(self.seed))
        self.device_ = self._device()
        self.model_ = self._build(train_set).to(self.device_)
        self._train_loop(train_set, target, w)
        return self

    # ------------------------------------------------------------------ inference
    def _outputs(self, dataset, dropout: bool = False):
        import torch
        self._check_fitted()
        tensors = self.tensorize(dataset)
        logits, hidden = [], []
        self.model_.eval()
        if dropout:
            set_dropout(self.model_, True)
        try:
            with torch.no_grad():
                for _, batch in self.batches(tensors, self.mini_batch_size):
                    lo, hi = self.forward(batch)
                    logits.append(lo.float().cpu())
                    hidden.append(hi.float().cpu())
        finally:
            self.model_.eval()
        if not logits:
            d = self.head().in_features
            return torch.empty(0, self.num_classes), torch.empty(0, d)
        return torch.cat(logits), torch.cat(hidden)

    def _to_proba(self, logits):
        import torch
        if self.multi_label:
            return torch.sigmoid(logits).double().numpy()
        return torch.softmax(logits.double(), dim=-1).numpy()

    def predict_proba(self, dataset, dropout_sampling: int = 1) -> np.ndarray:
        """Probabilities ``(n, num_classes)``; with ``dropout_sampling=T > 1`` the ``T``
        Monte-Carlo dropout samples ``(n, T, num_classes)`` (dropout active, the rest in
        eval mode; seeded by ``seed``)."""
        import torch
        check_param("dropout_sampling", dropout_sampling, POSITIVE_INT)
        if dropout_sampling == 1:
            return self._to_proba(self._outputs(dataset)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            samples = [self._to_proba(self._outputs(dataset, dropout=True)[0])
                       for _ in range(int(dropout_sampling))]
        return np.stack(samples, axis=1)

    def predict(self, dataset, return_proba: bool = False, multi_label_threshold: float = 0.5):
        proba = self.predict_proba(dataset)
        pred = labels_from_proba(proba, self.multi_label, multi_label_threshold)
        return (pred, proba) if return_proba else pred

    def embed(self, dataset, return_proba: bool = False, **kwargs):
        """The input of the final linear layer ``(n, d)`` (float64); with ``return_proba``
        ``(embeddings, proba)``."""
        logits, hidden = self._outputs(dataset)
        emb = hidden.double().numpy()
        return (emb, self._to_proba(logits)) if return_proba else emb

    def __getstate__(self):
        import torch
        state = dict(self.__dict__)
        if state.get("model_") is not None:  # pickle on CPU
            state["model_"] = state["model_"].to("cpu")
            state["device_"] = torch.device("cpu")
        return state
