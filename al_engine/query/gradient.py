"""Gradient-based query strategies: expected gradient length (EGL) and its word / layer
variants [Set07]_ [ZLW17]_, and BADGE [AZK+20]_.

For an instance :math:`x` with predicted class probabilities :math:`p` and the loss
:math:`\\ell(x, k)` it would have if labeled :math:`k`, the expected gradient length is

.. math:: \\mathrm{EGL}(x) = \\sum_k p_k \\, \\lVert \\nabla_\\theta \\ell(x, k) \\rVert_2

over a parameter set :math:`\\theta`: all trainable parameters
(:class:`ExpectedGradientLength`), one layer (:class:`ExpectedGradientLengthLayer`), or the
input word vectors, taking the largest word gradient (:class:`ExpectedGradientLengthMaxWord`).
Instances with the largest EGL are queried.

Per-instance gradients are computed in batches without a Python loop over instances:
``torch.func.vmap(torch.func.grad(...))`` for parameters, one backward pass per class for
input word vectors (instances in a batch do not interact), and a closed form for the final
linear layer (see :class:`ExpectedGradientLengthLayer`).

Differences from small-text 1.4.1, deliberate: the gradient length is the L2 norm (small-text
sums absolute values, i.e. an L1 norm, under the name of a norm); EGL-word takes the per-token
gradient (small-text reads rows of the embedding matrix, which sums repeated words); results
are ordered best first and ties broken by position; ``num_classes`` is optional.

EGL and EGL-word need a fitted torch classifier of this package with the trait
``supports_gradients`` (:class:`~al_engine.classifiers.kimcnn.KimCNNClassifier`,
:class:`~al_engine.classifiers.transformers.TransformerBasedClassification`); any other
classifier raises ``TypeError``. EGL-layer on the final layer and BADGE need only
``clf.embed(dataset, return_proba=True)``.

.. [Set07] B. Settles, M. Craven, S. Ray. Multiple-instance active learning. NIPS 2007.
.. [ZLW17] Y. Zhang, M. Lease, B. C. Wallace. Active discriminative text representation
   learning. AAAI 2017.
.. [AZK+20] J. T. Ash, C. Zhang, A. Krishnamurthy, J. Langford, A. Agarwal. Deep batch
   active learning by diverse, uncertain gradient lower bounds. ICLR 2020.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: torch is imported lazily
    import torch

import numpy as np

from al_engine._param_validation import POSITIVE_INT, SEED, check_param, validate_params
from al_engine.query._checks import check_pool, make_rng
from al_engine.query.base import QueryStrategy, ScoringQueryStrategy, check_query_args, top_n

_PROTOCOL = ("model_", "tensorize", "forward", "head")


def require_torch_classifier(clf, strategy: str, extra: tuple = ()) -> None:
    """Raise ``TypeError`` unless ``clf`` is a fitted torch classifier of this package."""
    missing = [a for a in _PROTOCOL + extra if getattr(clf, a, None) is None]
    if missing:
        raise TypeError(
            f"{strategy} needs a fitted torch classifier exposing {', '.join(_PROTOCOL + extra)} "
            f"(e.g. 'kimcnn' or 'transformer'); got {type(clf).__name__} without "
            f"{', '.join(missing)}")


def _check_num_classes(clf, num_classes) -> None:
    if num_classes is not None and getattr(clf, "num_classes", num_classes) != num_classes:
        raise ValueError(f"num_classes={num_classes} but the classifier has {clf.num_classes}")


class _EGLBase(ScoringQueryStrategy):
    lower_is_better = False
    required_classifier_traits = frozenset({"supports_gradients"})

    def __init__(self, num_classes: int | None = None, batch_size: int = 50):
        check_param("batch_size", batch_size, POSITIVE_INT)
        self.num_classes = num_classes
        self.batch_size = batch_size

    def score(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        """EGL of every unlabeled row (NaN for the other rows)."""
        self._check_classifier(clf)
        _check_num_classes(clf, self.num_classes)
        indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64)
        scores = np.full(len(dataset), np.nan)
        scores[indices_unlabeled] = self._egl(clf, dataset[indices_unlabeled])
        return scores

    def _check_classifier(self, clf) -> None:
        require_torch_classifier(clf, type(self).__name__)

    def _per_class_batches(self, clf, dataset):
        """Yields ``(batch, proba)`` over ``dataset`` in eval mode."""
        import torch
        tensors = clf.tensorize(dataset)
        clf.model_.eval()
        for _, batch in clf.batches(tensors, int(self.batch_size)):
            with torch.no_grad():
                proba = torch.softmax(clf.forward(batch)[0].double(), dim=-1)
            yield batch, proba


def _param_filter(prefix: str | None):
    if prefix is None:
        return lambda name: True
    return lambda name: name == prefix or name.startswith(prefix + ".")


def _per_example_grad_norms(clf, batch, target, names) -> "torch.Tensor":
    """``||grad_theta CE(x_i, target_i)||_2`` for every row of ``batch`` (vmap of grad)."""
    import torch
    from torch.func import grad, vmap
    params = {k: v.detach() for k, v in clf.model_.named_parameters() if k in names}
    frozen = {k: v.detach() for k, v in clf.model_.named_parameters() if k not in names}
    buffers = dict(clf.model_.named_buffers())

    def loss_one(p, example, t):
        one = {k: v.unsqueeze(0) for k, v in example.items()}
        logits = clf.forward(one, params={**frozen, **buffers, **p})[0]
        return torch.nn.functional.cross_entropy(logits, t.unsqueeze(0))

    try:
        grads = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, batch, target)
        sq = sum(g.pow(2).flatten(1).sum(1) for g in grads.values())
        return sq.sqrt()
    except RuntimeError as exc:
        if "vmap" not in str(exc):
            raise
    # Fallback for models with data-dependent control flow (e.g. transformers' attention
    # mask shortcuts): one backward pass per instance of the batch.
    live = [v for k, v in clf.model_.named_parameters() if k in names]
    norms = []
    for i in range(target.shape[0]):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        loss = torch.nn.functional.cross_entropy(clf.forward(one)[0], target[i:i + 1])
        gs = torch.autograd.grad(loss, live, allow_unused=True)
        norms.append(torch.sqrt(sum(g.pow(2).sum() for g in gs if g is not None)))
    return torch.stack(norms)


class ExpectedGradientLength(_EGLBase):
    """Expected gradient length over all trainable parameters [Set07]_ (see the module
    docstring for the formula). Single-label only.

    Parameters
    ----------
    num_classes : int or None
        Checked against the classifier when given (small-text requires it).
    batch_size : int, default=50
        Instances per vectorized gradient computation (memory: ``batch_size`` copies of
        the gradient).
    """

    _prefix = None

    def _egl(self, clf, dataset) -> np.ndarray:
        import torch
        names = {k for k, v in clf.model_.named_parameters()
                 if v.requires_grad and _param_filter(self._prefix)(k)}
        if not names:
            raise ValueError(f"no trainable parameters named {self._prefix!r} in the model")
        out = []
        for batch, proba in self._per_class_batches(clf, dataset):
            egl = torch.zeros(proba.shape[0], dtype=torch.float64)
            for k in range(proba.shape[1]):
                target = torch.full((proba.shape[0],), k, dtype=torch.long, device=proba.device)
                norms = _per_example_grad_norms(clf, batch, target, names)
                egl += proba[:, k].cpu() * norms.double().cpu()
            out.append(egl.numpy())
        return np.concatenate(out) if out else np.empty(0)


class ExpectedGradientLengthMaxWord(_EGLBase):
    """EGL-word [ZLW17]_: for each class, the largest L2 norm of the loss gradient with
    respect to one input token's word vector; expected over the predicted distribution:

    .. math:: \\mathrm{EGL_{word}}(x) = \\sum_k p_k \\max_{t \\in x}
              \\lVert \\nabla_{e_t} \\ell(x, k) \\rVert_2

    Padding positions are excluded. Single-label only.

    Parameters
    ----------
    num_classes : int or None
    layer_name : str or None
        Accepted for small-text compatibility: the name of the embedding layer; checked to
        be an ``nn.Embedding`` when given (the classifier's ``input_embedding()`` is used).
    batch_size : int, default=50
    """

    def __init__(self, num_classes: int | None = None, layer_name: str | None = None,
                 batch_size: int = 50):
        super().__init__(num_classes=num_classes, batch_size=batch_size)
        self.layer_name = layer_name

    def _check_classifier(self, clf) -> None:
        require_torch_classifier(clf, type(self).__name__, ("input_embedding", "token_mask"))
        if self.layer_name is not None:
            import torch
            modules = dict(clf.model_.named_modules())
            if not isinstance(modules.get(self.layer_name), torch.nn.Embedding):
                raise ValueError(f"layer_name={self.layer_name!r} is not an embedding layer of "
                                 f"the model")

    def _egl(self, clf, dataset) -> np.ndarray:
        import torch
        emb_layer = clf.input_embedding()
        out = []
        for batch, proba in self._per_class_batches(clf, dataset):
            with torch.no_grad():
                base = emb_layer(batch["input_ids"])
            inputs = base.detach().requires_grad_(True)
            logits = clf.forward(batch, inputs_embeds=inputs)[0]
            mask = clf.token_mask(batch)
            egl = torch.zeros(proba.shape[0], dtype=torch.float64)
            for k in range(proba.shape[1]):
                target = torch.full((proba.shape[0],), k, dtype=torch.long, device=logits.device)
                loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
                (g,) = torch.autograd.grad(loss, inputs, retain_graph=k + 1 < proba.shape[1])
                norms = g.norm(dim=-1).masked_fill(~mask, 0.0).amax(dim=1)
                egl += proba[:, k].cpu() * norms.double().cpu()
            out.append(egl.numpy())
        return np.concatenate(out) if out else np.empty(0)


class ExpectedGradientLengthLayer(_EGLBase):
    """EGL restricted to one layer's parameters (EGL-sm of [ZLW17]_ for the last layer).

    With ``layer_name=None`` (default) the layer is the final linear layer, and the
    gradient norm has a closed form: for logits :math:`z = W h + b` and cross-entropy,
    :math:`\\nabla_W \\ell(x, k) = (p - e_k) h^\\top`, :math:`\\nabla_b = p - e_k`, so

    .. math:: \\mathrm{EGL_{layer}}(x) = \\sqrt{\\lVert h \\rVert^2 + 1}\\;
              \\sum_k p_k \\lVert p - e_k \\rVert_2,\\quad
              \\lVert p - e_k \\rVert^2 = \\lVert p \\rVert^2 - 2 p_k + 1

    computed from ``clf.embed(dataset, return_proba=True)`` for any classifier whose
    embedding is the input of a softmax-linear output (torch classifiers, SetFit's
    logistic head, linear models on features). With a ``layer_name`` (a module name of a
    torch classifier's model) the gradients of that module's parameters are computed.

    Parameters
    ----------
    num_classes : int or None
    layer_name : str or None, default=None
    batch_size : int, default=50
    """

    def __init__(self, num_classes: int | None = None, layer_name: str | None = None,
                 batch_size: int = 50):
        super().__init__(num_classes=num_classes, batch_size=batch_size)
        self.layer_name = layer_name

    @property
    def required_classifier_traits(self) -> frozenset[str]:
        """Only with a ``layer_name``: the final layer's closed form needs just ``embed``."""
        return frozenset({"supports_gradients"}) if self.layer_name is not None else frozenset()

    @property
    def _prefix(self):
        return self.layer_name

    def _check_classifier(self, clf) -> None:
        if self.layer_name is not None:
            require_torch_classifier(clf, type(self).__name__)
            if self.layer_name not in dict(clf.model_.named_modules()):
                raise ValueError(f"layer_name={self.layer_name!r} is not a module of the model")

    def _egl(self, clf, dataset) -> np.ndarray:
        if self.layer_name is not None:
            return ExpectedGradientLength._egl(self, clf, dataset)
        emb, proba = clf.embed(dataset, return_proba=True)
        emb, proba = np.asarray(emb, dtype=np.float64), np.asarray(proba, dtype=np.float64)
        sq = (proba ** 2).sum(axis=1, keepdims=True)
        dist = np.sqrt(np.maximum(sq - 2.0 * proba + 1.0, 0.0))        # ||p - e_k||
        return np.sqrt((emb ** 2).sum(axis=1) + 1.0) * (proba * dist).sum(axis=1)


# ---------------------------------------------------------------------------------------------
def badge_factors(emb: np.ndarray, proba: np.ndarray):
    """The two factors of BADGE's gradient embedding :math:`g = a \\otimes h` with
    :math:`a = p - e_{\\hat y}` (the last layer's loss gradient for the predicted label),
    without materializing the ``(n, C * d)`` outer products.

    Inner products factor: :math:`g_i \\cdot g_j = (a_i \\cdot a_j)(h_i \\cdot h_j)`."""
    a = np.array(proba, dtype=np.float64)
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    return a, np.asarray(emb, dtype=np.float64)


def kmeans_plusplus_order(a: np.ndarray, h: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding over the points :math:`g_i = a_i \\otimes h_i`: the first pick is
    the point of largest norm (BADGE's reference code), each next one is drawn with
    probability proportional to its squared distance to the nearest pick, :math:`D^2(x)`.
    When every remaining point has :math:`D^2 = 0` (duplicates), the next unpicked position
    is taken. O(n_points (C + d)) per pick."""
    m = a.shape[0]
    sq = (a ** 2).sum(1) * (h ** 2).sum(1)                    # ||g_i||^2
    chosen = np.empty(n, dtype=np.int64)
    taken = np.zeros(m, dtype=bool)
    d2 = np.full(m, np.inf)
    c = int(np.argmax(sq))
    for j in range(n):
        chosen[j] = c
        taken[c] = True
        if j + 1 == n:
            break
        dist = sq + sq[c] - 2.0 * (a @ a[c]) * (h @ h[c])
        d2 = np.minimum(d2, np.maximum(dist, 0.0))
        d2[taken] = 0.0
        total = d2.sum()
        if total > 0 and np.isfinite(total):
            c = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            c = min(c, m - 1)
            if taken[c]:  # float round-off at the boundary
                c = int(np.flatnonzero(~taken & (d2 > 0))[0])
        else:
            c = int(np.flatnonzero(~taken)[0])
    return chosen


class BADGE(QueryStrategy):
    """Batch Active learning by Diverse Gradient Embeddings [AZK+20]_.

    Each unlabeled instance gets the gradient embedding
    :math:`g = (p - e_{\\hat y}) \\otimes h` (``h`` from ``clf.embed``, ``p`` the predicted
    probabilities, :math:`\\hat y = \\arg\\max p`): its norm measures uncertainty, its
    direction diversity. The batch is chosen by k-means++ seeding on these vectors
    (:func:`kmeans_plusplus_order`), computed from the factors without building the
    ``C * d``-dimensional vectors. Single-label only.

    Differences from small-text 1.4.1, deliberate: small-text's ``get_badge_embeddings``
    scales whole rows by ``-p`` (its ``scale[proba_argmax] = ...`` indexes rows, not the
    predicted class) and uses the raw embeddings for 2 classes; here the paper's gradient is
    used for every number of classes. Seeded (``seed``), so results are reproducible.

    :meth:`rank` orders the first ``rank_batch_size`` by k-means++ and the rest by
    gradient-embedding norm, largest first (k-means++ over a whole pool is quadratic).

    Parameters
    ----------
    num_classes : int or None
        Checked against the classifier when given.
    seed : int, Generator or None, default=0
    rank_batch_size : int, default=100
    """

    def __init__(self, num_classes: int | None = None, seed=0, rank_batch_size: int = 100):
        validate_params({"seed": SEED, "rank_batch_size": POSITIVE_INT}, locals())
        self.num_classes = num_classes
        self.seed = seed
        self.rank_batch_size = rank_batch_size

    def _factors(self, clf, dataset, indices_unlabeled):
        _check_num_classes(clf, self.num_classes)
        emb, proba = clf.embed(dataset[indices_unlabeled], return_proba=True)
        return badge_factors(emb, proba)

    def query(self, clf, dataset, indices_unlabeled, indices_labeled, y, n: int = 10) -> np.ndarray:
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_query_args(indices_unlabeled, n)
        a, h = self._factors(clf, dataset, indices_unlabeled)
        return indices_unlabeled[kmeans_plusplus_order(a, h, n, make_rng(self.seed))]

    def rank(self, clf, dataset, indices_unlabeled, indices_labeled, y) -> np.ndarray:
        self._check_label_mode(dataset, y)
        indices_unlabeled = check_pool(indices_unlabeled)
        a, h = self._factors(clf, dataset, indices_unlabeled)
        k = min(int(self.rank_batch_size), indices_unlabeled.size)
        head = kmeans_plusplus_order(a, h, k, make_rng(self.seed))
        norms = np.sqrt((a ** 2).sum(1) * (h ** 2).sum(1))
        norms[head] = -np.inf
        rest = top_n(norms, indices_unlabeled.size - k, lower_is_better=False) \
            if indices_unlabeled.size > k else np.empty(0, dtype=np.int64)
        return indices_unlabeled[np.concatenate([head, rest])]
