"""The model side of a round: classifier parameters, cold-start order, ranking, priorities,
predicted labels and the stopping criterion. The round's steps are in ``backend.rounds``.

Priority scores: Label Studio's queue (project sampling ``SAMPLING``, "Uncertainty sampling")
serves the unlabeled task whose prediction has the LOWEST top-level ``score``. So with
``rank`` 0 the task the strategy wants first among ``n`` unlabeled tasks, the prediction's
``score = rank / (n - 1)`` (0.0 when ``n == 1``) and the queue follows the ranking. The
model's own confidence goes in the result item's ``score``, not in the top-level one.
"""
from __future__ import annotations

import logging

import numpy as np

from backend.labelconfig import LabelConfig
from backend.labels import annotation_label, task_label  # noqa: F401 - re-exported
from backend.push import SAMPLING, VERSION_PREFIX  # noqa: F401 - re-exported
from backend.record import StoppingVerdict
from backend.settings import Settings
from backend.store import Store

log = logging.getLogger("studio_al.training")

UNTRAINED = "studio-al-untrained"
STOPPING_STATE = "stopping"


def run_round(project_id: int, settings: Settings, store: Store, client, reason: str = "retrain"
              ) -> dict:
    """One round of ``project_id`` (:func:`backend.rounds.run_round`); never raises."""
    from backend.rounds import run_round as _run_round
    return _run_round(project_id, settings, store, client, reason)


def classifier_params(settings: Settings) -> dict:
    """``AL_CLASSIFIER_PARAMS`` plus, for classifiers that take them, ``model_path`` from
    ``AL_MODEL_PATH`` and ``cache_dir`` = ``MODEL_DIR/embeddings`` (sentence embeddings are
    cached per text on disk, so a retrain or a worker restart re-embeds nothing). Explicit
    values in ``AL_CLASSIFIER_PARAMS`` win."""
    import os

    from al_engine.registry import accepted_params
    params = dict(settings.classifier_params)
    accepted = accepted_params("classifier", settings.classifier)
    if settings.model_path is not None and "model_path" in accepted:
        params.setdefault("model_path", settings.model_path)
    if "cache_dir" in accepted:
        params.setdefault("cache_dir", os.path.join(settings.model_dir, "embeddings"))
    return params


# ---------------------------------------------------------------------------------------------
def priorities(n: int) -> np.ndarray:
    """``rank / (n - 1)`` for ranks ``0..n-1`` (``[0.0]`` when ``n == 1``)."""
    if n <= 1:
        return np.zeros(n, dtype=np.float64)
    return np.arange(n, dtype=np.float64) / (n - 1)


def _complete_order(order, candidates: np.ndarray) -> np.ndarray:
    """``order`` restricted to ``candidates``, without duplicates, with any candidate it
    misses appended in pool order (so a strategy that returns a batch still ranks all)."""
    order = np.asarray(order, dtype=np.int64).reshape(-1)
    order = order[np.isin(order, candidates)]
    _, first = np.unique(order, return_index=True)
    order = order[np.sort(first)]
    missing = candidates[~np.isin(candidates, order)]
    return np.concatenate([order, missing])


def cold_start_order(settings: Settings, n: int, features=None, head: int | None = None
                     ) -> np.ndarray:
    """Order of ``n`` unlabeled tasks before a model can be trained.

    A label-free initialization (``needs_features``: ``typiclust``, ``kmeans_centres``) picks
    the first ``head`` tasks (default all) from ``features()`` (a callable returning the
    unlabeled tasks' feature rows; only called then), the rest follow in a seeded random
    order. The random initializations order all ``n``; stratified/balanced ones, which need
    labels, give the seeded permutation (``AL_SEED``).
    """
    rng_order = np.random.default_rng(settings.seed).permutation(n)
    if n == 0:
        return rng_order
    try:
        from al_engine.registry import accepted_params, make_initialization
        accepted = accepted_params("initialization", settings.init_strategy)
        params = {k: settings.seed for k in ("random_state", "seed") if k in accepted}
        init = make_initialization(settings.init_strategy, **params)
        if getattr(init, "needs_features", False):
            if features is None:
                return rng_order
            picks = np.asarray(init(features(), min(head or n, n)), dtype=np.int64)
            return np.concatenate([picks, rng_order[~np.isin(rng_order, picks)]])
        order = np.asarray(init(np.zeros(n, dtype=np.int64), n), dtype=np.int64).reshape(-1)
        if order.size == n and np.array_equal(np.sort(order), np.arange(n)):
            return order
    except Exception as exc:  # noqa: BLE001 - fall back to the seeded permutation
        log.warning("event=init_fallback strategy=%s error=%r", settings.init_strategy, exc)
    return rng_order


class _ProbaCache:
    """Delegates to ``clf`` but answers ``predict_proba(ds)`` from a precomputed matrix, so
    a strategy does not score the pool a second time."""

    def __init__(self, clf, ds, proba):
        self._clf, self._ds, self._proba = clf, ds, proba

    def predict_proba(self, dataset):
        if dataset is self._ds:
            return self._proba
        return self._clf.predict_proba(dataset)

    def __getattr__(self, name):
        return getattr(self._clf, name)


def multi_label_uncertainty_order(proba: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Fallback ranking for multi-label projects when the configured strategy is
    single-label only: ascending :math:`\\min_j |p_j - 0.5|` (the most undecided label first),
    ties by position."""
    margin = np.abs(np.asarray(proba)[candidates] - 0.5).min(axis=1)
    return candidates[np.argsort(margin, kind="stable")]


def predicted_labels(proba: np.ndarray, cfg: LabelConfig, rows: np.ndarray):
    """Label names and confidences for ``rows``.

    The labels are :func:`al_engine.classifiers.base.labels_from_proba` (single-label: the
    argmax class, its probability as confidence; multi-label: the labels with
    :math:`p_j > 0.5`, confidence the mean over labels of :math:`\\max(p_j, 1 - p_j)`).
    """
    from al_engine.classifiers.base import labels_from_proba
    names = np.asarray(cfg.labels, dtype=object)
    p = np.asarray(proba)[rows]
    pred = labels_from_proba(p, cfg.multi_label)
    if not cfg.multi_label:
        return [[names[t]] for t in pred], p[np.arange(len(pred)), pred]
    conf = np.maximum(p, 1.0 - p).mean(axis=1) if p.shape[1] else np.zeros(len(p))
    ind, ptr = pred.indices, pred.indptr
    return [list(names[ind[ptr[i]:ptr[i + 1]]]) for i in range(len(p))], conf


# ---------------------------------------------------------------------------------------------
def _new_stopping_state(settings: Settings, cfg: LabelConfig, spec: dict, ids) -> dict:
    """A fresh configured criterion on a stopping set of the tasks ``ids``."""
    from al_engine.registry import accepted_params, make_stopping_criterion
    params = dict(settings.stopping_params)
    if "num_classes" in accepted_params("stopping_criterion", settings.stopping_criterion):
        params.setdefault("num_classes", len(cfg.labels))
    return {"spec": spec, "task_ids": np.asarray(ids).copy(), "rounds": 0,
            "criterion": make_stopping_criterion(settings.stopping_criterion, **params)}


def evaluate_stopping(store: Store, project_id: int, settings: Settings, ids: np.ndarray,
                      proba: np.ndarray, cfg: LabelConfig, labeled_ids) -> StoppingVerdict:
    """Update the stateful stopping criterion with this round's predictions on the fixed
    stopping set (:class:`al_engine.stopping_set.StoppingSet`: the tasks present at the
    first trained round; those unlabeled now are its ``indices_stopping``) and persist its
    state. ``labeled_ids`` are the ids of the labeled tasks."""
    from al_engine.stopping_set import StoppingSet
    spec = {"name": settings.stopping_criterion, "params": settings.stopping_params,
            "labels": list(cfg.labels), "multi_label": cfg.multi_label}
    state = store.load_state(project_id, STOPPING_STATE)
    reset = None
    if state is not None and state.get("spec") != spec:
        reset = "configuration changed"
    elif state is not None and not StoppingSet(state["task_ids"]).covers(ids):
        reset = "tasks of the stopping set were deleted"
    if state is None or reset:
        state = _new_stopping_state(settings, cfg, spec, ids)
    stopping_set = StoppingSet(state["task_ids"])
    stop = bool(state["criterion"].stop(**stopping_set.stop_arguments(
        ids, proba, labeled_ids, cfg.multi_label)))
    state["rounds"] += 1
    store.save_state(project_id, STOPPING_STATE, state)
    verdict = StoppingVerdict(criterion=settings.stopping_criterion, stop=stop,
                              rounds=state["rounds"], stopping_set=len(stopping_set))
    if reset:
        verdict["reset"] = reset
    return verdict


def rank_unlabeled(settings: Settings, clf, ds, proba, idx_unlabeled, idx_labeled, record
                   ) -> np.ndarray:
    """Positions of the unlabeled tasks, best first, by the configured query strategy
    (multi-label projects fall back to :func:`multi_label_uncertainty_order` when the strategy
    is single-label only; a batch strategy's batch comes first, the rest in pool order)."""
    from al_engine.exceptions import MultiLabelNotSupportedError
    from al_engine.registry import make_query_strategy
    strategy = make_query_strategy(settings.query_strategy, **settings.query_params)
    try:
        order = strategy.rank(_ProbaCache(clf, ds, proba), ds, idx_unlabeled, idx_labeled,
                              ds.y[idx_labeled])
        record.strategy_used = settings.query_strategy
    except MultiLabelNotSupportedError as exc:
        record.strategy_used = "multi_label_uncertainty"
        record.warning = (f"{settings.query_strategy} does not support multi-label projects "
                             f"({exc}); ranked by min |p - 0.5| instead")
        log.warning("event=strategy_fallback strategy=%s reason=%r", settings.query_strategy,
                    str(exc))
        order = multi_label_uncertainty_order(proba, idx_unlabeled)
    return _complete_order(order, idx_unlabeled)
