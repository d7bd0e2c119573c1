"""Discriminative representation learning (DRL): discriminative active learning [GS19]_ in
the representation the current neural classifier has learned.

The classifier's own representation (``clf.embed``: the input of its output layer, i.e.
the fine-tuned encoder's pooled output, KimCNN's pooled filters, SetFit's embedding) feeds a
small torch MLP discriminator that learns, on top of it, a representation telling the
labeled pool (class 0) from the unlabeled pool (class 1):

.. math:: P(\\text{unlabeled} \\mid x) = \\sigma\\big(w^\\top \\mathrm{ReLU}(V h(x) + c) + b\\big)

trained with binary cross-entropy and AdamW. The selection procedure is
:class:`~al_engine.query.dal.DiscriminativeActiveLearning`'s: ``num_iterations``
sub-batches, each refitting the discriminator with the previous picks counted as labeled and
taking the unlabeled instances most confidently "unlabeled".

Compared with ``discriminative_active_learning`` (a linear discriminator on any features),
the discriminator here is non-linear and learns its own hidden layer, as in the DAL paper's
experiments; torch is needed (imported when a query runs), the classifier can be any.

.. [GS19] D. Gissin and S. Shalev-Shwartz. Discriminative active learning.
   arXiv:1907.06347, 2019.
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from al_engine._param_validation import NON_NEGATIVE_INT, POSITIVE_INT, POSITIVE_REAL, validate_params
from al_engine.query.dal import DiscriminativeActiveLearning


class MLPDiscriminator(ClassifierMixin, BaseEstimator):
    """One-hidden-layer torch MLP, a scikit-learn estimator (``fit(x, y)`` with y in {0, 1},
    ``predict_proba``). Full-batch AdamW for ``num_epochs`` epochs; inputs are standardized
    with the training mean and standard deviation. Seeded and deterministic on CPU."""

    def __init__(self, hidden_size: int = 64, num_epochs: int = 100, lr: float = 1e-2,
                 weight_decay: float = 1e-4, seed: int = 0):
        self.hidden_size = hidden_size
        self.num_epochs = num_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def fit(self, x, y):
        import torch
        x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
        y = np.asarray(y)
        self.classes_ = np.array([0, 1])
        self.mean_ = x.mean(axis=0)
        self.std_ = x.std(axis=0) + 1e-6
        xt = torch.from_numpy((x - self.mean_) / self.std_)
        yt = torch.from_numpy((y == 1).astype(np.float32))
        pos = float(yt.sum())
        pos_weight = torch.tensor((yt.numel() - pos) / max(pos, 1.0))  # balance the two pools
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.seed))
            self.model_ = torch.nn.Sequential(torch.nn.Linear(x.shape[1], self.hidden_size),
                                              torch.nn.ReLU(), torch.nn.Linear(self.hidden_size, 1))
        opt = torch.optim.AdamW(self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        for _ in range(int(self.num_epochs)):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                self.model_(xt).squeeze(1), yt, pos_weight=pos_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return self

    def predict_proba(self, x) -> np.ndarray:
        import torch
        x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
        with torch.no_grad():
            p = torch.sigmoid(self.model_(torch.from_numpy((x - self.mean_) / self.std_)).squeeze(1))
        p = p.double().numpy()
        return np.column_stack([1.0 - p, p])


class DiscriminativeRepresentationLearning(DiscriminativeActiveLearning):
    """DAL with a torch MLP discriminator on the classifier's learned representation (see
    the module docstring). Single- and multi-label (labels are not used).

    Parameters
    ----------
    num_iterations : int, default=10
        Sub-batches (discriminator fits) per query.
    unlabeled_factor : int, default=10
        Ratio of unlabeled to labeled training instances of the discriminator.
    hidden_size : int, default=64
    num_epochs : int, default=100
    lr : float, default=1e-2
    seed : int, default=0
        Seeds the unlabeled subsample and the discriminator.
    """

    _parameter_constraints = {"hidden_size": POSITIVE_INT, "num_epochs": POSITIVE_INT,
                              "lr": POSITIVE_REAL, "seed": NON_NEGATIVE_INT}

    def __init__(self, num_iterations: int = 10, unlabeled_factor: int = 10, hidden_size: int = 64,
                 num_epochs: int = 100, lr: float = 1e-2, seed=0):
        validate_params(self._parameter_constraints, locals())
        self.hidden_size = hidden_size
        self.num_epochs = num_epochs
        self.lr = lr
        super().__init__(classifier_factory=MLPDiscriminator(hidden_size, num_epochs, lr, seed=seed),
                         num_iterations=num_iterations, unlabeled_factor=unlabeled_factor,
                         seed=seed)
