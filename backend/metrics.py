"""Per-round model quality for the dashboard, computed in the training round (worker side).

:func:`round_metrics` is called by the round's evaluate step (``backend.rounds``) after a model was
trained and returns a JSON-ready dict stored in the round's audit record under ``"metrics"``
(declared as :class:`backend.record.RoundMetrics`). The science is the engine's, so the
figures are the ones ``benchmarks/labels_needed_eval.py`` validates:

* ``class_counts`` -- labeled tasks per class (multi-label: per label);
* ``cv`` -- k-fold cross-validated accuracy (subset accuracy for multi-label) and macro-F1 of
  the configured classifier on the labeled set (at most ``max_labeled`` labeled tasks, a
  seeded subsample beyond), on the features of the round (TF-IDF fitted on the pool);
* ``labels_needed`` -- :func:`al_engine.estimate.estimate_from_cv` fitted to the nested-
  subset learning curve measured by the same folds (:func:`al_engine.estimate.cross_validate`,
  the full-size point IS the CV score): the same computation as
  :func:`al_engine.estimate.estimate_labels_needed`;
* ``criteria`` -- the verdict and last value of every stopping criterion with default
  parameters, each evaluated on the same fixed stopping set round after round
  (:mod:`al_engine.stopping_set`; their state persisted per project), so the admin sees all
  of them, not only the configured one.

Cost: ``n_splits * n_sizes`` fits of the classifier on at most ``max_labeled`` rows (30 fits
of a linear SVC on <= 2000 TF-IDF rows: about a second). Classifiers that are not
scikit-learn based (transformers, SetFit, KimCNN) are not cross-validated (too expensive in a
round); ``cv`` then carries a ``reason``. Nothing here may fail a round: every part catches
its own errors and reports them.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from backend.record import CriterionVerdict, CrossValidationSummary, RoundMetrics

log = logging.getLogger("studio_al.metrics")

#: criteria evaluated for the dashboard besides the configured one (default parameters)
DASHBOARD_CRITERIA = ("kappa_average", "classification_change", "overall_uncertainty",
                      "delta_f_score")
CRITERIA_STATE = "dashboard_criteria"


def class_counts(y, labels: list[str]) -> dict[str, int]:
    """Labeled tasks per class name; ``y`` are class ids (or a multi-label indicator)."""
    if sp.issparse(y) or np.ndim(y) == 2:
        counts = np.asarray(sp.csr_matrix(y).sum(axis=0)).reshape(-1)
    else:
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return {name: int(c) for name, c in zip(labels, counts)}


def cross_validate(clf_factory, labeled, n_splits: int = 5, n_sizes: int = 6,
                   min_size: int = 10, seed: int = 0) -> CrossValidationSummary:
    """k-fold accuracy and macro-F1 of fresh classifiers on ``labeled``, plus the learning-
    curve points: :func:`al_engine.estimate.cross_validate` (the one the labels-needed
    estimate uses) summarized for the audit record.

    Returns ``{"accuracy", "macro_f1", "accuracy_std", "folds", "n", "curve":
    {"sizes", "mean", "std"}}`` (the last curve point is the full training fold).
    """
    from al_engine.estimate import cross_validate as engine_cross_validate
    cv = engine_cross_validate(clf_factory, labeled, n_sizes=n_sizes, n_splits=n_splits,
                               min_size=min_size, seed=seed)
    return _summary(cv)


def _summary(cv) -> CrossValidationSummary:
    """The audit record's form of an :class:`al_engine.estimate.CrossValidation`."""
    return CrossValidationSummary(
        accuracy=round(float(cv.mean[-1]), 5), accuracy_std=round(float(cv.std[-1]), 5),
        macro_f1=round(float(cv.macro_f1.mean()), 5), folds=int(cv.accuracy.shape[0]), n=cv.n,
        curve={"sizes": cv.sizes.tolist(), "mean": cv.mean.round(5).tolist(),
               "std": cv.std.round(5).tolist()})


def _dashboard_criteria(num_classes: int, multi_label: bool) -> dict:
    """Fresh :data:`DASHBOARD_CRITERIA` with default parameters (those that apply)."""
    from al_engine.registry import make_stopping_criterion
    crits = {}
    for name in DASHBOARD_CRITERIA:
        if name == "delta_f_score" and (num_classes != 2 or multi_label):
            continue  # binary single-label only
        try:
            crits[name] = make_stopping_criterion(name, num_classes=num_classes)
        except Exception as exc:  # noqa: BLE001 - an unavailable criterion is reported
            log.debug("event=criterion_unavailable name=%s error=%r", name, exc)
    return crits


def _verdict(crit, stop_kwargs: dict) -> CriterionVerdict:
    from al_engine.stopping_set import criterion_step
    try:
        stop, value = criterion_step(crit, **stop_kwargs)
    except Exception as exc:  # noqa: BLE001
        return CriterionVerdict(stop=None, error=f"{type(exc).__name__}: {exc}")
    return CriterionVerdict(stop=stop, value=None if value is None or value != value
                            else round(value, 5))


def evaluate_criteria(store, project_id: int, ids: np.ndarray, proba: np.ndarray,
                      labeled_ids: np.ndarray, num_classes: int, multi_label: bool) -> dict:
    """Verdicts of :data:`DASHBOARD_CRITERIA` (default parameters) on the stopping set
    (:class:`al_engine.stopping_set.StoppingSet`: the tasks of the first evaluated round,
    the unlabeled ones as ``indices_stopping``); state persisted as ``CRITERIA_STATE``."""
    from al_engine.stopping_set import StoppingSet
    state = store.load_state(project_id, CRITERIA_STATE)
    spec = {"num_classes": num_classes, "multi_label": multi_label}
    if state is None or state.get("spec") != spec or \
            not StoppingSet(state["task_ids"]).covers(ids):
        state = {"spec": spec, "task_ids": np.asarray(ids).copy(),
                 "criteria": _dashboard_criteria(num_classes, multi_label)}
    stop_kwargs = StoppingSet(state["task_ids"]).stop_arguments(ids, proba, labeled_ids,
                                                                multi_label)
    out = {name: _verdict(crit, stop_kwargs) for name, crit in state["criteria"].items()}
    store.save_state(project_id, CRITERIA_STATE, state)
    return out


def round_metrics(store, project_id: int, settings, cfg, ds, idx_labeled: np.ndarray,
                  ids: np.ndarray, proba: np.ndarray, probes=None,
                  max_labeled: int = 2000, n_splits: int = 5, n_sizes: int = 6
                  ) -> RoundMetrics:
    """The ``"metrics"`` entry of a trained round's audit record (never raises).

    Parameters
    ----------
    store : Store
    project_id : int
    settings : Settings
        ``classifier``, ``classifier_params`` and ``seed`` are used.
    cfg : LabelConfig
    ds : Dataset
        The round's featurized dataset (all tasks).
    idx_labeled : ndarray of int
        Positions of the labeled tasks in ``ds``.
    ids : ndarray of int
        Task id of every row of ``ds`` / ``proba``.
    proba : ndarray of shape (n, K)
        The round's predictions for every task.
    probes : backend.probes.ProbeLog, optional
        The project's random probes (which labeled tasks are probes); None: none.
    max_labeled, n_splits, n_sizes : int
        Cross-validation budget (``n_splits``, ``n_sizes``: the engine's defaults).
    """
    t0 = time.perf_counter()
    labels = list(cfg.labels)
    out = RoundMetrics()
    try:
        out["class_counts"] = class_counts(ds.y[idx_labeled], labels)
    except Exception as exc:  # noqa: BLE001
        out["class_counts_error"] = f"{type(exc).__name__}: {exc}"
    out["accuracy_estimate"] = accuracy_estimate(settings, cfg, ds, idx_labeled,
                                                 np.asarray(ids)[idx_labeled], probes)
    out["cv"] = _cv(settings, cfg, ds, idx_labeled, len(ids), max_labeled, n_splits, n_sizes)
    out["labels_needed"] = out["cv"].pop("labels_needed", None)
    try:
        out["criteria"] = evaluate_criteria(store, project_id, np.asarray(ids), proba,
                                            np.asarray(ids)[idx_labeled], len(labels),
                                            cfg.multi_label)
    except Exception as exc:  # noqa: BLE001
        out["criteria"] = {"error": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - t0, 4)
    return out


def _cv(settings, cfg, ds, idx_labeled, pool_size, max_labeled, n_splits, n_sizes) -> dict:
    m = int(idx_labeled.size)
    reason = _no_cv_reason(settings, ds.y[idx_labeled], m, n_splits)
    if reason:
        return {"reason": reason}
    try:
        from al_engine.estimate import cross_validate as engine_cross_validate
        idx = idx_labeled
        if m > max_labeled:
            rng = np.random.default_rng(settings.seed)
            idx = np.sort(rng.choice(idx_labeled, size=max_labeled, replace=False))

        labeled = ds[idx]
        cv = engine_cross_validate(_factory(settings, cfg), labeled, n_sizes=n_sizes, n_splits=n_splits,
                                   seed=settings.seed)
        out = _summary(cv)
        out["subsampled"] = m > max_labeled
        out["labels_needed"] = _labels_needed(cv, labeled.y, m, max(pool_size, m))
        return out
    except Exception as exc:  # noqa: BLE001
        log.warning("event=metrics_failed error=%r", str(exc))
        return {"reason": f"cross-validation failed: {type(exc).__name__}: {exc}"}


def _factory(settings, cfg):
    """Fresh classifiers as configured, for refits on part of the labels."""
    from al_engine.registry import make_classifier

    def factory():
        return make_classifier(settings.classifier, num_classes=len(cfg.labels),
                               multi_label=cfg.multi_label, **settings.classifier_params)
    return factory


def accuracy_estimate(settings, cfg, ds, idx_labeled, labeled_ids, probes) -> dict:
    """The unbiased accuracy estimate from the labeled random probes as a dict (with the
    majority label's name), or ``{"value": None, "n", "reason"}``. Never raises.

    Classifiers cheap to refit: :func:`al_engine.accuracy.probe_accuracy` (cross-fitted over
    the probes: the current model, minus a fold). Others: prequential, each probe scored by
    the model that served when it was labeled (:func:`prequential_accuracy`)."""
    from al_engine.accuracy import METHOD, probe_accuracy
    from al_engine.registry import classifier_traits
    is_probe = np.zeros(idx_labeled.size, bool) if probes is None else probes.mask(labeled_ids)
    n = int(is_probe.sum())
    if n == 0:
        return {"value": None, "n": 0, "method": METHOD, "reason": (
            "no random probe labeled yet" if settings.probe_share > 0 else
            "AL_PROBE_SHARE=0: no random probes are queued, so no unbiased estimate")}
    try:
        if not classifier_traits(settings.classifier)["cheap_to_refit"]:
            return prequential_accuracy(cfg, ds.y[idx_labeled][is_probe],
                                        np.asarray(labeled_ids)[is_probe], probes)
        est = probe_accuracy(_factory(settings, cfg), ds[idx_labeled], is_probe,
                             seed=settings.seed).to_dict()
    except Exception as exc:  # noqa: BLE001
        log.warning("event=accuracy_estimate_failed error=%r", str(exc))
        return {"value": None, "n": n, "method": METHOD,
                "reason": f"estimate failed: {type(exc).__name__}: {exc}"}
    if est.get("majority_label") is not None:
        est["majority_label"] = list(cfg.labels)[est["majority_label"]]
    return est


PREQUENTIAL = "random probes, each scored by the model serving when it was labeled, Wilson"


def prequential_accuracy(cfg, y_probes, probe_ids, probes) -> dict:
    """Accuracy of the predictions the serving rankings made for the labeled probes (before
    their labels were known), with a Wilson interval; probes labeled while no model served
    are left out. Lags the current model (older models scored older probes)."""
    from al_engine.accuracy import AccuracyEstimate, wilson_interval
    from al_engine.data import is_multi_label_target
    names = list(cfg.labels)
    if is_multi_label_target(y_probes):
        rows = sp.csr_matrix(y_probes).toarray().astype(bool)
        truth = [sorted(names[j] for j in np.flatnonzero(r)) for r in rows]
    else:
        truth = [[names[int(c)]] for c in np.asarray(y_probes)]
    predicted = [probes.predicted.get(int(t)) for t in probe_ids]
    pairs = [(sorted(p), want) for p, want in zip(predicted, truth) if p]
    c = sum(p == want for p, want in pairs)
    low, high = wilson_interval(c, len(pairs))
    est = AccuracyEstimate(value=c / len(pairs) if pairs else None, low=low, high=high,
                           n=len(pairs), method=PREQUENTIAL).to_dict()
    if not pairs:
        est["reason"] = "no probe was labeled while a model served"
    return est


def _no_cv_reason(settings, y, m: int, n_splits: int) -> str | None:
    """Why the labeled set is not cross-validated this round (None: it is)."""
    from al_engine.registry import classifier_traits
    if not classifier_traits(settings.classifier)["cheap_to_refit"]:  # CV inside a round
        return (f"not cross-validated: {settings.classifier} is too expensive to "
                "refit k times per round")
    if m < 2 * n_splits:
        return (f"need at least {2 * n_splits} labels for {n_splits}-fold "
                f"cross-validation, have {m}")
    if not (sp.issparse(y) or np.ndim(y) == 2) and np.unique(y).size < 2:
        return "only one class labeled so far"
    return None


def _labels_needed(cv, y, labeled: int, pool_size: int) -> dict:
    """:func:`al_engine.estimate.estimate_from_cv` as a dict; a failure becomes a reason."""
    from al_engine.estimate import estimate_from_cv
    try:
        return estimate_from_cv(cv, y, pool_size=pool_size, labeled=labeled).to_dict()
    except Exception as exc:  # noqa: BLE001
        return {"labels_needed": None, "reason": f"{type(exc).__name__}: {exc}"}
