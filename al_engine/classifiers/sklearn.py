"""scikit-learn classifiers behind the engine's :class:`~al_engine.classifiers.base.Classifier`
contract, and small-text's ``ConfidenceEnhancedLinearSVC``.

Features
--------
A :class:`SklearnClassifier` may own a featurizer (e.g. :class:`~al_engine.features.TfidfFeaturizer`):

* :meth:`SklearnClassifier.featurize` returns the dataset with ``x`` computed from its texts,
  fitting the featurizer on those texts first if it is not fitted yet. This is how the
  learner and the backend featurize the WHOLE pool once (unsupervised), before any label.
* ``fit`` / ``predict`` / ``predict_proba`` / ``embed`` use ``dataset.x`` as is when it is
  set. When ``x`` is None and the dataset has texts, they featurize on the fly: ``fit``
  fits the featurizer on the training texts if it is not fitted yet (a fallback -- an
  idf learned on the pool is better), the others only transform.
* With ``featurizer=None`` the classifier always uses ``dataset.x``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.svm import LinearSVC

from al_engine._param_validation import POSITIVE_INT, validate_params
from al_engine.classifiers.base import Classifier, labels_from_proba
from al_engine.compat.datasets import as_engine_dataset, is_small_text_dataset
from al_engine.exceptions import MultiLabelNotSupportedError, NotFittedError
from al_engine.features import TfidfFeaturizer


# ---------------------------------------------------------------------------------------------
class ConfidenceEnhancedLinearSVC(ClassifierMixin, BaseEstimator):
    """A ``LinearSVC`` with probability-like confidence estimates (small-text's class).

    With decision values :math:`d` and the logistic function :math:`\\sigma(z) = 1/(1+e^{-z})`:

    * binary: :math:`p = [1 - \\sigma(d),\\ \\sigma(d)]`;
    * multiclass (one-vs-rest decision values :math:`d_c`):
      :math:`p_c = \\sigma(d_c) / \\sum_k \\sigma(d_k)`.

    These are the same numbers as small-text's implementation (which computes them row by
    row in Python); here they are vectorized and overflow-free (``scipy.special.expit``).

    Parameters
    ----------
    linearsvc_kwargs : dict or None, default=None
        Keyword arguments for ``sklearn.svm.LinearSVC``.

    Attributes
    ----------
    estimator_ : LinearSVC
        The fitted SVM.
    classes_ : ndarray
        The class labels seen in ``fit``.
    """

    def __init__(self, linearsvc_kwargs: dict | None = None):
        self.linearsvc_kwargs = linearsvc_kwargs

    def fit(self, x, y, sample_weight=None) -> "ConfidenceEnhancedLinearSVC":
        self.estimator_ = LinearSVC(**(self.linearsvc_kwargs or {}))
        self.estimator_.fit(x, y, sample_weight=sample_weight)
        self.classes_ = self.estimator_.classes_
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("ConfidenceEnhancedLinearSVC is not fitted; call fit first")

    def decision_function(self, x) -> np.ndarray:
        self._check_fitted()
        return self.estimator_.decision_function(x)

    def predict(self, x, return_proba: bool = False):
        """Class labels; with ``return_proba`` (small-text's signature) ``(argmax ids, proba)``."""
        if return_proba:
            proba = self.predict_proba(x)
            return np.argmax(proba, axis=1), proba
        self._check_fitted()
        return self.estimator_.predict(x)

    def predict_proba(self, x) -> np.ndarray:
        """Confidence estimates of shape ``(n, len(classes_))`` (see the class docstring)."""
        scores = self.decision_function(x)
        if scores.ndim == 1:
            s = expit(scores)
            return np.column_stack([1.0 - s, s])
        s = expit(scores)
        return s / s.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------
class SklearnClassifier(Classifier):
    """Adapter for any scikit-learn estimator that has ``predict_proba``.

    Datasets may be ours (:class:`~al_engine.data.Dataset`) or small-text's (``SklearnDataset``,
    ``TextDataset`` and their views, see :mod:`al_engine.compat.datasets`). The constructor takes
    small-text's positional order, ``SklearnClassifier(model, num_classes, multi_label)``.

    Parameters
    ----------
    estimator : sklearn estimator
        Unfitted template; a clone is fitted on every :meth:`fit`. It needs ``predict_proba``
        for :meth:`predict_proba` and :meth:`predict` (not to be built or fitted).
    num_classes : int
        Number of classes. ``predict_proba`` always has ``num_classes`` columns in class-id
        order, also when some classes are absent from the training set (their probability
        is 0).
    multi_label : bool, default=False
        Multi-label mode: one binary model per label (``OneVsRestClassifier``), targets are
        a CSR indicator matrix, ``predict`` returns a CSR indicator of the labels whose
        probability exceeds ``multi_label_threshold``.
    featurizer : object with ``fit``/``transform`` or None, default=None
        Computes ``x`` from texts (see the module docstring). Owned and fitted in place.

    Attributes
    ----------
    model : estimator
        small-text's attribute: the fitted model once fitted (``OneVsRestClassifier`` when
        multi-label), before that the unfitted template (wrapped in one when multi-label).
    estimator_ : estimator or None
        The fitted model; None when the training set held a single class.
    classes_ : ndarray of int
        Class ids present in the training set (single-label).
    single_class_ : int or None
        The only class of a one-class training set; it is then predicted with
        probability 1 (scikit-learn refuses to fit a single class).
    """

    cheap_to_refit = True
    _parameter_constraints = {"num_classes": POSITIVE_INT}

    def __init__(self, estimator, num_classes: int, multi_label: bool = False, featurizer=None):
        if not hasattr(estimator, "fit"):
            raise ValueError(f"estimator must be a scikit-learn estimator with fit; got "
                             f"{type(estimator).__name__}")
        if featurizer is not None and not (hasattr(featurizer, "fit") and hasattr(featurizer, "transform")):
            raise ValueError("featurizer must have fit(texts) and transform(texts), or be None")
        validate_params(self._parameter_constraints, locals())
        self.estimator = estimator
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.featurizer = featurizer
        self._template = OneVsRestClassifier(estimator) if self.multi_label else estimator

    @property
    def model(self):
        fitted = getattr(self, "estimator_", None)
        return self._template if fitted is None else fitted

    # ------------------------------------------------------------------ features
    def _featurizer_fitted(self) -> bool:
        f = self.featurizer
        if hasattr(f, "is_fitted"):
            return bool(f.is_fitted)
        return any(k.endswith("_") and not k.startswith("_") for k in vars(f))

    def featurize(self, dataset):
        """``dataset`` with ``x`` computed from its texts by the featurizer.

        The featurizer is fitted on these texts first if it is not fitted yet (unsupervised:
        only texts are used). Without a featurizer, or without texts, ``dataset`` is
        returned unchanged (it must then carry ``x``).
        """
        if self.featurizer is None or dataset.texts is None:
            if dataset.x is None:
                raise ValueError("dataset has neither features x nor texts to featurize")
            return dataset
        if self._featurizer_fitted():
            x = self.featurizer.transform(dataset.texts)
        elif hasattr(self.featurizer, "fit_transform"):
            x = self.featurizer.fit_transform(dataset.texts)
        else:
            x = self.featurizer.fit(dataset.texts).transform(dataset.texts)
        return dataset.with_features(x)

    def _x(self, dataset, fit: bool = False):
        if dataset.x is not None:
            return dataset.x
        if dataset.texts is None:
            raise ValueError("dataset has neither features x nor texts")
        if self.featurizer is None:
            raise ValueError("dataset has no features x and the classifier has no featurizer "
                             "(featurizer=None means: use dataset.x)")
        if fit and not self._featurizer_fitted():
            return self.featurize(dataset).x
        return self.featurizer.transform(dataset.texts)

    # ------------------------------------------------------------------ training
    def fit(self, train_set, weights=None) -> "SklearnClassifier":
        """Fit a clone of ``estimator`` on ``train_set`` (every row must be labeled).

        Parameters
        ----------
        train_set : Dataset or small-text dataset
        weights : array-like of shape (len(train_set),) or None
            Non-negative sample weights, passed as ``sample_weight`` (single-label only, as
            in small-text).

        Raises
        ------
        ValueError
            With small-text's messages: unlabeled rows ("Training set labels must be
            labeled"), weights of the wrong size ("Training data and weights must have the
            same size"), weights with multi-label data, a labeling of the other mode
            (:class:`~al_engine.exceptions.MultiLabelNotSupportedError`, "Given labeling is
            recognized as multi-label labeling but ...", "Given labeling must be recognized as
            multi-label ..."; indicator values other than 0 and 1 count as not multi-label).
        """
        train_set = as_engine_dataset(train_set)
        n = len(train_set)
        if n == 0:
            raise ValueError("train_set is empty")
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64).reshape(-1)
            if weights.shape != (n,):
                raise ValueError(f"Training data and weights must have the same size: weights "
                                 f"must have shape ({n},), got {weights.shape}")
            if not np.all(np.isfinite(weights)) or np.any(weights < 0):
                raise ValueError("weights must be finite and non-negative")
            if self.multi_label:
                raise ValueError("Sample weights are not supported for multi-label SklearnClassifier.")
        self._check_label_mode(train_set)
        if not np.all(train_set.labeled_mask):
            raise ValueError("Training set labels must be labeled (greater or equal zero): "
                             "train_set contains unlabeled rows; fit only on labeled data")
        x = self._x(train_set, fit=True)
        if self.multi_label:
            self._fit_multi_label(x, train_set.y)
        else:
            self._fit_single_label(x, np.asarray(train_set.y), weights)
        return self

    def _check_label_mode(self, train_set) -> None:
        multi = bool(train_set.is_multi_label)
        if multi and not self.multi_label:
            raise MultiLabelNotSupportedError(
                "Invalid input: Given labeling is recognized as multi-label labeling but the "
                "classifier is set to single-label mode (train_set is multi-label, the classifier "
                "was built with multi_label=False)")
        if self.multi_label and (not multi or not np.isin(train_set.y.data, (0, 1)).all()):
            raise MultiLabelNotSupportedError(
                "Invalid input: Given labeling must be recognized as multi-label (a 0/1 label "
                "indicator matrix) since the classifier was built with multi_label=True; "
                f"train_set is {'multi-label with values other than 0 and 1' if multi else 'single-label'}")

    def _fit_single_label(self, x, y, weights) -> None:
        if y.max() >= self.num_classes:
            raise ValueError(f"train_set has class id {int(y.max())} but num_classes={self.num_classes}")
        classes = np.unique(y)
        self.classes_ = classes
        if classes.size == 1:
            self.single_class_ = int(classes[0])
            self.estimator_ = None
            return
        self.single_class_ = None
        est = clone(self.estimator)
        if weights is None:
            est.fit(x, y)
        else:
            est.fit(x, y, sample_weight=weights)
        self.estimator_ = est

    def _fit_multi_label(self, x, y) -> None:
        y = sp.csr_matrix(y)
        if y.shape[1] != self.num_classes:
            raise ValueError(f"train_set has {y.shape[1]} label columns but num_classes={self.num_classes}")
        self.classes_ = np.arange(self.num_classes)
        self.single_class_ = None
        with warnings.catch_warnings():
            # "Label k is present in all / not present in any training example": OvR then
            # predicts that label constantly, which is the right answer here.
            warnings.filterwarnings("ignore", message=r"Label .*present in all", category=UserWarning)
            self.estimator_ = OneVsRestClassifier(clone(self.estimator)).fit(x, y)

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(train_set) first")

    def _proba_of_x(self, x) -> np.ndarray:
        n = x.shape[0]
        if not hasattr(self.estimator, "predict_proba"):
            raise ValueError(f"{type(self.estimator).__name__} has no predict_proba; use an "
                             "estimator that has (e.g. ConfidenceEnhancedLinearSVC for an SVM)")
        if self.multi_label:
            proba = self.estimator_.predict_proba(x)
            proba = proba.toarray() if sp.issparse(proba) else np.asarray(proba, dtype=np.float64)
            return proba
        full = np.zeros((n, self.num_classes), dtype=np.float64)
        if self.single_class_ is not None:
            full[:, self.single_class_] = 1.0
            return full
        full[:, np.asarray(self.estimator_.classes_, dtype=np.int64)] = self.estimator_.predict_proba(x)
        return full

    def predict_proba(self, dataset) -> np.ndarray:
        """Probabilities ``(len(dataset), num_classes)`` in class-id order; for multi-label
        the per-label probabilities (dense; rows need not sum to one). An empty dataset gives
        a ``(0, num_classes)`` float array; an empty *small-text* dataset gives small-text's
        empty result (a CSR matrix when multi-label), which small-text code expects."""
        self._check_fitted()
        if len(dataset) == 0:
            if is_small_text_dataset(dataset):
                return self._small_text_empty_result(np.float64)
            return np.empty((0, self.num_classes), dtype=np.float64)
        return self._proba_of_x(self._x(as_engine_dataset(dataset)))

    def _small_text_empty_result(self, dtype):
        if self.multi_label:
            return sp.csr_matrix((0, self.num_classes), dtype=dtype)
        return np.empty((0, self.num_classes), dtype=dtype)

    def predict(self, dataset, return_proba: bool = False, multi_label_threshold: float = 0.5):
        """Class ids (argmax of :meth:`predict_proba`, ties to the lower id) or, multi-label,
        a CSR indicator of labels with probability ``> multi_label_threshold``.

        With ``return_proba`` returns ``(predictions, proba)``; ``proba`` is the full dense
        matrix of :meth:`predict_proba` (small-text returns a sparse matrix holding only the
        predicted labels' probabilities in the multi-label case).
        """
        proba = self.predict_proba(dataset)
        if len(dataset) == 0 and is_small_text_dataset(dataset):
            pred = self._small_text_empty_result(np.int64)
        else:
            pred = labels_from_proba(proba, self.multi_label, multi_label_threshold)
        return (pred, proba) if return_proba else pred

    def embed(self, dataset, return_proba: bool = False, **kwargs):
        """The feature vectors the model sees, as a dense float array ``(n, d)``; with
        ``return_proba`` also the probabilities: ``(embeddings, proba)``."""
        self._check_fitted()
        dataset = as_engine_dataset(dataset)
        x = self._x(dataset)
        emb = x.toarray() if sp.issparse(x) else np.asarray(x)
        emb = emb.astype(np.float64, copy=False)
        if return_proba:
            proba = (self._proba_of_x(x) if len(dataset) else
                     np.empty((0, self.num_classes), dtype=np.float64))
            return emb, proba
        return emb

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.estimator!r}, num_classes={self.num_classes}, "
                f"multi_label={self.multi_label}, featurizer={self.featurizer!r})")


class SklearnClassifierFactory:
    """Builds :class:`SklearnClassifier` objects around clones of one estimator (small-text's
    ``SklearnClassifierFactory``, same signature).

    Parameters
    ----------
    base_estimator : sklearn.base.BaseEstimator
        The unfitted template; every :meth:`new` classifier gets its own clone.
    num_classes : int
    kwargs : dict or None, default=None
        Further keyword arguments of :class:`SklearnClassifier` (``multi_label``,
        ``featurizer``).

    Raises
    ------
    ValueError
        If ``base_estimator`` is not a scikit-learn ``BaseEstimator``.
    """

    def __init__(self, base_estimator: BaseEstimator, num_classes: int, kwargs: dict | None = None):
        if not isinstance(base_estimator, BaseEstimator):
            raise ValueError("Given classifier template must be a subclass of "
                             "sklearn.base.BaseEstimator. Encountered class was: "
                             f"{type(base_estimator)}.")
        self.base_estimator = base_estimator
        self.num_classes = num_classes
        self.kwargs = {} if kwargs is None else kwargs

    def new(self) -> SklearnClassifier:
        """A new, unfitted :class:`SklearnClassifier`."""
        return SklearnClassifier(clone(self.base_estimator), self.num_classes, **self.kwargs)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base_estimator={type(self.base_estimator).__name__}, "
                f"num_classes={self.num_classes}, kwargs={self.kwargs})")


# ---------------------------------------------------------------------------------------------
def _resolve_featurizer(featurizer):
    if featurizer is None:
        return None
    if isinstance(featurizer, str):
        if featurizer == "tfidf":
            return TfidfFeaturizer()
        raise ValueError(f"unknown featurizer {featurizer!r}; allowed: 'tfidf', None")
    if hasattr(featurizer, "fit") and hasattr(featurizer, "transform"):
        return featurizer
    raise ValueError(f"featurizer must be 'tfidf', None or an object with fit/transform, "
                     f"got {featurizer!r}")


def _check_estimator_params(cls, params: dict[str, Any], defaults: dict[str, Any]):
    allowed = set(cls().get_params())
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter {unknown[0]!r} for {cls.__name__}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    merged = {**defaults, **params}
    est = cls(**merged)
    try:
        est._validate_params()  # scikit-learn's own checks (names the parameter)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return merged


def make_linear_svc(num_classes: int, multi_label: bool = False, featurizer="tfidf",
                    **linearsvc_params) -> SklearnClassifier:
    """The default classifier: :class:`ConfidenceEnhancedLinearSVC` on TF-IDF features.

    Parameters
    ----------
    num_classes : int
    multi_label : bool, default=False
    featurizer : 'tfidf', None or featurizer object, default='tfidf'
        ``None`` means "use ``dataset.x``" (e.g. precomputed embeddings).
    **linearsvc_params
        ``sklearn.svm.LinearSVC`` parameters (``C``, ``class_weight``, ...).
        ``random_state`` defaults to 0 so that results are reproducible.

    Raises
    ------
    ValueError
        Naming an unknown or invalid parameter.
    """
    params = _check_estimator_params(LinearSVC, linearsvc_params, {"random_state": 0})
    return SklearnClassifier(ConfidenceEnhancedLinearSVC(linearsvc_kwargs=params),
                             num_classes=num_classes, multi_label=multi_label,
                             featurizer=_resolve_featurizer(featurizer))


def make_logistic_regression(num_classes: int, multi_label: bool = False, featurizer="tfidf",
                             **lr_params) -> SklearnClassifier:
    """Logistic regression on TF-IDF features.

    ``**lr_params`` are ``sklearn.linear_model.LogisticRegression`` parameters; defaults
    changed here: ``random_state=0`` (reproducible) and ``max_iter=1000`` (lbfgs converges
    on TF-IDF without warnings). ``featurizer`` as in :func:`make_linear_svc`.
    """
    params = _check_estimator_params(LogisticRegression, lr_params,
                                     {"random_state": 0, "max_iter": 1000})
    return SklearnClassifier(LogisticRegression(**params), num_classes=num_classes,
                             multi_label=multi_label, featurizer=_resolve_featurizer(featurizer))
