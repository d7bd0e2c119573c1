"""Per-round model quality for the dashboard, computed in the training round (worker side).

:func:`round_metrics` is called by :func:`backend.training.run_round` after a model was
trained and returns a JSON-ready dict stored in the round's audit record under ``"metrics"``:

* ``class_counts`` -- labeled tasks per class (multi-label: per label);
* ``cv`` -- k-fold cross-validated accuracy (subset accuracy for multi-label) and macro-F1 of
  the configured classifier on the labeled set (at most ``max_labeled`` labeled tasks, a
  seeded subsample beyond), on the features of the round (TF-IDF fitted on the pool);
* ``labels_needed`` -- :func:`al_engine.estimate.estimate_from_points` fitted to the nested-
  subset learning curve measured by the same folds (the full-size point IS the CV score);
* ``criteria`` -- the verdict and last value of every stopping criterion with default
  parameters, each evaluated on the same fixed stopping set round after round (their state
  persisted per project), so the admin sees all of them, not only the configured one.

Cost: ``n_splits * n_sizes`` fits of the classifier on at most ``max_labeled`` rows (25 fits
of a linear SVC on <= 2000 TF-IDF rows: about a second). Classifiers that are not
scikit-learn based (transformers, SetFit, KimCNN) are not cross-validated (too expensive in a
round); ``cv`` then carries a ``reason``. Nothing here may fail a round: every part catches
its own errors and reports them.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

log = logging.getLogger("studio_al.metrics")

#: criteria evaluated for the dashboard besides the configured one (default parameters)
DASHBOARD_CRITERIA = ("kappa_average", "classification_change", "overall_uncertainty",
                      "delta_f_score")
CRITERIA_STATE = "dashboard_criteria"
#: classifiers cheap enough to cross-validate inside a round
CHEAP_CLASSIFIERS = frozenset({"linear_svc", "logistic_regression", "embedding_logistic_regression"})


def class_counts(y, labels: list[str]) -> dict[str, int]:
    """Labeled tasks per class name; ``y`` are class ids (or a multi-label indicator)."""
    if sp.issparse(y) or np.ndim(y) == 2:
        counts = np.asarray(sp.csr_matrix(y).sum(axis=0)).reshape(-1)
    else:
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(labels))
    return {name: int(c) for name, c in zip(labels, counts)}


def stratified_folds(y, n_splits: int, seed: int) -> np.ndarray:
    """Fold number of each row: rows grouped by class (shuffled within), dealt round-robin,
    so every fold gets its share of each class (multi-label: a plain shuffle)."""
    rng = np.random.default_rng(seed)
    m = y.shape[0]
    perm = rng.permutation(m)
    if not (sp.issparse(y) or np.ndim(y) == 2):
        perm = perm[np.argsort(np.asarray(y)[perm], kind="stable")]
    fold = np.empty(m, dtype=np.int64)
    fold[perm] = np.arange(m) % n_splits
    return fold


def cross_validate(clf_factory, labeled, n_splits: int = 5, n_sizes: int = 5,
                   min_size: int = 10, seed: int = 0) -> dict:
    """k-fold accuracy and macro-F1 of fresh classifiers on ``labeled``, plus the learning-
    curve points (nested random subsets of each training fold, log-spaced sizes).

    Returns ``{"accuracy", "macro_f1", "accuracy_std", "folds", "n", "curve":
    {"sizes", "mean", "std"}}`` (the last curve point is the full training fold).
    """
    from sklearn.metrics import accuracy_score, f1_score
    y = labeled.y
    multi = sp.issparse(y) or np.ndim(y) == 2
    m = len(labeled)
    fold = stratified_folds(y, n_splits, seed)
    train_size = m - int(np.ceil(m / n_splits))
    sizes = np.unique(np.round(np.geomspace(min(min_size, train_size), train_size,
                                            n_sizes)).astype(int))
    rng = np.random.default_rng(seed + 1)
    acc = np.full((n_splits, sizes.size), np.nan)
    f1 = np.full(n_splits, np.nan)
    for k in range(n_splits):
        tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        order = rng.permutation(tr)
        held = labeled[te]
        y_true = held.y.toarray() if multi else np.asarray(held.y)
        for s, size in enumerate(sizes):
            pred = clf_factory().fit(labeled[order[:size]]).predict(held)
            if multi:
                pred = sp.csr_matrix(pred).toarray()
            acc[k, s] = accuracy_score(y_true, pred)
            if s == sizes.size - 1:
                f1[k] = f1_score(y_true, pred, average="macro", zero_division=0)
    return {"accuracy": round(float(acc[:, -1].mean()), 5),
            "accuracy_std": round(float(acc[:, -1].std()), 5),
            "macro_f1": round(float(f1.mean()), 5), "folds": n_splits, "n": m,
            "curve": {"sizes": sizes.tolist(), "mean": acc.mean(axis=0).round(5).tolist(),
                      "std": acc.std(axis=0).round(5).tolist()}}


def evaluate_criteria(store, project_id: int, ids: np.ndarray, proba: np.ndarray,
                      labeled_ids: np.ndarray, num_classes: int, multi_label: bool) -> dict:
    """Verdicts of :data:`DASHBOARD_CRITERIA` (default parameters) on a fixed stopping set
    (the tasks of the first evaluated round); state persisted as ``CRITERIA_STATE``."""
    from al_engine.registry import make_stopping_criterion
    state = store.load_state(project_id, CRITERIA_STATE)
    spec = {"num_classes": num_classes, "multi_label": multi_label}
    if state is None or state.get("spec") != spec or not np.all(np.isin(state["task_ids"], ids)):
        crits = {}
        for name in DASHBOARD_CRITERIA:
            if name == "delta_f_score" and (num_classes != 2 or multi_label):
                continue  # binary single-label only
            try:
                crits[name] = make_stopping_criterion(name, num_classes=num_classes)
            except Exception as exc:  # noqa: BLE001 - an unavailable criterion is reported
                log.debug("event=criterion_unavailable name=%s error=%r", name, exc)
        state = {"spec": spec, "task_ids": np.asarray(ids).copy(), "criteria": crits}
    sorter = np.argsort(ids, kind="stable")
    pos = sorter[np.searchsorted(ids, state["task_ids"], sorter=sorter)]
    p = np.asarray(proba)[pos]
    if multi_label:
        predictions = sp.csr_matrix((p > 0.5).astype(np.int64))
    else:
        predictions = np.argmax(p, axis=1).astype(np.int64)
    unlabeled = np.flatnonzero(~np.isin(state["task_ids"], labeled_ids))
    out = {}
    for name, crit in state["criteria"].items():
        try:
            stop = bool(crit.stop(predictions=predictions, proba=p, indices_stopping=unlabeled))
            hist = getattr(crit, "history_", None) or getattr(crit, "stop_history_", None)
            value = hist[-1] if hist else None
            out[name] = {"stop": stop, "value": None if value is None or value != value
                         else round(float(value), 5)}
        except Exception as exc:  # noqa: BLE001
            out[name] = {"stop": None, "error": f"{type(exc).__name__}: {exc}"}
    store.save_state(project_id, CRITERIA_STATE, state)
    return out


def round_metrics(store, project_id: int, settings, cfg, ds, idx_labeled: np.ndarray,
                  ids: np.ndarray, proba: np.ndarray, max_labeled: int = 2000,
                  n_splits: int = 5, n_sizes: int = 5) -> dict[str, Any]:
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
    max_labeled, n_splits, n_sizes : int
        Cross-validation budget.
    """
    t0 = time.perf_counter()
    labels = list(cfg.labels)
    out: dict[str, Any] = {}
    try:
        out["class_counts"] = class_counts(ds.y[idx_labeled], labels)
    except Exception as exc:  # noqa: BLE001
        out["class_counts_error"] = f"{type(exc).__name__}: {exc}"
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
    if settings.classifier not in CHEAP_CLASSIFIERS:
        return {"reason": f"not cross-validated: {settings.classifier} is too expensive to "
                          "refit k times per round"}
    if m < 2 * n_splits:
        return {"reason": f"need at least {2 * n_splits} labels for {n_splits}-fold "
                          f"cross-validation, have {m}"}
    y = ds.y[idx_labeled]
    if not (sp.issparse(y) or np.ndim(y) == 2) and np.unique(y).size < 2:
        return {"reason": "only one class labeled so far"}
    try:
        from al_engine.estimate import estimate_from_points
        from al_engine.registry import make_classifier
        idx = idx_labeled
        if m > max_labeled:
            rng = np.random.default_rng(settings.seed)
            idx = np.sort(rng.choice(idx_labeled, size=max_labeled, replace=False))

        def factory():
            return make_classifier(settings.classifier, num_classes=len(cfg.labels),
                                   multi_label=cfg.multi_label, **settings.classifier_params)

        cv = cross_validate(factory, ds[idx], n_splits=n_splits, n_sizes=n_sizes,
                            seed=settings.seed)
        cv["subsampled"] = m > max_labeled
        try:
            est = estimate_from_points(cv["curve"]["sizes"], cv["curve"]["mean"], labeled=m,
                                       pool_size=max(pool_size, m), std=cv["curve"]["std"])
            est = est.to_dict()
            if not cfg.multi_label:
                majority = max(class_counts(y, list(cfg.labels)).values()) / m
                if max(cv["curve"]["mean"]) <= majority + 0.01:
                    est.update(labels_needed=None, additional=None, reason=(
                        f"cross-validated accuracy ({max(cv['curve']['mean']):.3f}) is not above "
                        f"the majority-class rate ({majority:.3f}); label more before estimating"))
            cv["labels_needed"] = est
        except Exception as exc:  # noqa: BLE001
            cv["labels_needed"] = {"labels_needed": None,
                                   "reason": f"{type(exc).__name__}: {exc}"}
        return cv
    except Exception as exc:  # noqa: BLE001
        log.warning("event=metrics_failed error=%r", str(exc))
        return {"reason": f"cross-validation failed: {type(exc).__name__}: {exc}"}
