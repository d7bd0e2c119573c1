"""One training round of a project: fetch, train, rank, push, switch the queue.

:func:`run_round` is a plain function of ``(project_id, settings, store, client)`` so that the
embedded thread runner and an RQ worker can both call it. It never raises: any failure is
written to the audit log with ``status="failed"``, the previous version keeps serving, and
the next webhook retries.

Priority scores (design.md §4): Label Studio serves the unlabeled task whose prediction has
the LOWEST top-level ``score``, so with ``rank`` 0 the task the strategy wants first among
``n`` unlabeled tasks, ``score = rank / (n - 1)`` (0.0 when ``n == 1``). The model's own
confidence goes in the result item's ``score``.
"""
from __future__ import annotations

import inspect
import logging
import time
import traceback
from typing import Any

import numpy as np

from backend.labelconfig import LabelConfig, parse_label_config
from backend.settings import Settings
from backend.store import Store

log = logging.getLogger("studio_al.training")

SAMPLING = "Uncertainty sampling"
VERSION_PREFIX = "studio-al-"
UNTRAINED = "studio-al-untrained"
STOPPING_STATE = "stopping"


def classifier_params(settings: Settings) -> dict:
    """``AL_CLASSIFIER_PARAMS`` plus, for classifiers that take them, ``model_path`` from
    ``AL_MODEL_PATH`` and ``cache_dir`` = ``MODEL_DIR/embeddings`` (sentence embeddings are
    cached per text on disk, so a retrain or a worker restart re-embeds nothing). Explicit
    values in ``AL_CLASSIFIER_PARAMS`` win."""
    import os

    from al_engine.registry import resolve
    params = dict(settings.classifier_params)
    accepted = inspect.signature(resolve("classifier", settings.classifier)).parameters
    if settings.model_path is not None and "model_path" in accepted:
        params.setdefault("model_path", settings.model_path)
    if "cache_dir" in accepted:
        params.setdefault("cache_dir", os.path.join(settings.model_dir, "embeddings"))
    return params


# ---------------------------------------------------------------------------------------------
# Extracting labels from Label Studio tasks
def _annotation_key(a: dict) -> tuple:
    return (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id") or 0)


def annotation_label(annotation: dict, cfg: LabelConfig) -> list[str] | None:
    """The choices of ``annotation`` for our control that are known labels; None if none."""
    if annotation.get("was_cancelled"):
        return None
    result = annotation.get("result")
    if not isinstance(result, list):
        return None
    chosen: list[str] = []
    for item in result:
        if not isinstance(item, dict) or item.get("from_name") != cfg.from_name:
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list):
            chosen.extend(c for c in choices if isinstance(c, str) and c in cfg.labels)
    chosen = list(dict.fromkeys(chosen))
    return chosen or None


def task_label(task: dict, cfg: LabelConfig) -> tuple[Any, Any]:
    """``(label, annotation_id)`` of a task: its latest non-cancelled annotation with a usable
    choice for our control. ``label`` is a name (single-label), a list of names
    (multi-label) or None (unlabeled)."""
    annotations = task.get("annotations") or []
    for ann in sorted((a for a in annotations if isinstance(a, dict)), key=_annotation_key,
                      reverse=True):
        chosen = annotation_label(ann, cfg)
        if chosen is not None:
            return (chosen if cfg.multi_label else chosen[0]), ann.get("id")
    return None, None


def extract(tasks: list[dict], cfg: LabelConfig) -> dict:
    """Task ids, texts, labels and the ids of the annotations used; tasks without a text
    in ``cfg.text_field`` are skipped (counted)."""
    ids, texts, labels, ann_ids, skipped = [], [], [], [], []
    for task in tasks:
        data = task.get("data") if isinstance(task, dict) else None
        text = data.get(cfg.text_field) if isinstance(data, dict) else None
        if not isinstance(text, str) or not isinstance(task.get("id"), int):
            skipped.append(task.get("id") if isinstance(task, dict) else None)
            continue
        label, ann_id = task_label(task, cfg)
        ids.append(task["id"])
        texts.append(text)
        labels.append(label)
        if label is not None:
            ann_ids.append(ann_id)
    return {"ids": np.asarray(ids, dtype=np.int64), "texts": texts, "labels": labels,
            "annotation_ids": ann_ids, "skipped": skipped}


# ---------------------------------------------------------------------------------------------
#: Backoff schedule (seconds) while webhook-announced annotations are not visible yet.
VISIBILITY_BACKOFF = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)


def expected_annotations(events: list[dict], upto: int) -> dict[int, int]:
    """``{annotation_id: task_id}`` of the annotations the webhooks up to sequence ``upto``
    announced and did not delete since (replayed in order)."""
    expected: dict[int, int] = {}
    for ev in events:
        if ev.get("seq", 0) > upto:
            break
        action = ev.get("action")
        ann = ev.get("annotation")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED") and isinstance(ann, dict):
            if isinstance(ann.get("id"), int) and isinstance(ann.get("task"), int):
                expected[ann["id"]] = ann["task"]
        elif action == "ANNOTATIONS_DELETED":
            for aid in ev.get("annotation_ids") or []:
                expected.pop(aid, None)
    return expected


def _await_webhook_annotations(store: Store, project_id: int, upto: int, client,
                               tasks: list[dict]) -> list[int]:
    """Make sure ``tasks`` hold every annotation a webhook announced.

    Label Studio sends the webhook from inside the request that saves the annotation, so a
    round started at once can read the project before that save is visible. The tasks of the
    missing annotations are re-read (a cheap filtered listing) on a bounded backoff and patched
    into ``tasks`` in place. Returns the ids still missing (empty when all arrived).
    """
    expected = expected_annotations(store.events(project_id), upto)
    if not expected:
        return []
    by_id = {t.get("id"): i for i, t in enumerate(tasks)}

    def missing() -> list[int]:
        seen = {a.get("id") for t in tasks for a in (t.get("annotations") or [])}
        return sorted(aid for aid, tid in expected.items() if aid not in seen and tid in by_id)

    gone = missing()
    refetch = getattr(client, "fetch_tasks_by_id", None)
    for delay in ((0.0,) + VISIBILITY_BACKOFF) if gone and refetch else ():
        time.sleep(delay)  # bounded: the schedule sums to 6.3 s
        for fresh in refetch(project_id, {expected[a] for a in gone}):
            if fresh.get("id") in by_id:
                tasks[by_id[fresh["id"]]] = fresh
        gone = missing()
        if not gone:
            break
    return gone
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


def _accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def cold_start_order(settings: Settings, n: int) -> np.ndarray:
    """Order of ``n`` unlabeled tasks before a model can be trained: the init strategy's
    selection of all ``n`` (seeded with ``AL_SEED``), or a seeded permutation when the
    strategy cannot order an unlabeled pool (stratified/balanced need labels)."""
    rng_order = np.random.default_rng(settings.seed).permutation(n)
    if n == 0:
        return rng_order
    try:
        from al_engine.registry import make_initialization, resolve
        factory = resolve("initialization", settings.init_strategy)
        params = {k: settings.seed for k in ("random_state", "seed") if _accepts(factory, k)}
        init = make_initialization(settings.init_strategy, **params)
        order = np.asarray(init(np.zeros(n, dtype=np.int64), n), dtype=np.int64).reshape(-1)
        if order.size == n and np.array_equal(np.sort(order), np.arange(n)):
            return order
    except Exception as exc:  # noqa: BLE001 - fall back to the seeded permutation
        log.debug("event=init_fallback strategy=%s error=%r", settings.init_strategy, exc)
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

    Single-label: the argmax class and its probability. Multi-label: the labels with
    :math:`p_j > 0.5` and the mean over labels of :math:`\\max(p_j, 1 - p_j)`.
    """
    names = np.asarray(cfg.labels, dtype=object)
    p = np.asarray(proba)[rows]
    if not cfg.multi_label:
        top = np.argmax(p, axis=1)
        conf = p[np.arange(len(rows)), top]
        return [[names[t]] for t in top], conf
    chosen = p > 0.5
    conf = np.maximum(p, 1.0 - p).mean(axis=1) if p.shape[1] else np.zeros(len(rows))
    return [list(names[c]) for c in chosen], conf


# ---------------------------------------------------------------------------------------------
def _evaluate_stopping(store: Store, project_id: int, settings: Settings, ids: np.ndarray,
                       proba: np.ndarray, cfg: LabelConfig) -> dict:
    """Update the stateful stopping criterion with this round's predictions on the fixed
    stopping set (the tasks present at the first trained round) and persist its state."""
    from al_engine.registry import make_stopping_criterion
    spec = {"name": settings.stopping_criterion, "params": settings.stopping_params,
            "labels": list(cfg.labels), "multi_label": cfg.multi_label}
    state = store.load_state(project_id, STOPPING_STATE)
    reset = None
    if state is not None and state.get("spec") != spec:
        reset = "configuration changed"
    elif state is not None and not np.all(np.isin(state["task_ids"], ids)):
        reset = "tasks of the stopping set were deleted"
    if state is None or reset:
        params = dict(settings.stopping_params)
        from al_engine.registry import resolve
        if _accepts(resolve("stopping_criterion", settings.stopping_criterion), "num_classes"):
            params.setdefault("num_classes", len(cfg.labels))
        state = {"spec": spec, "task_ids": ids.copy(), "rounds": 0,
                 "criterion": make_stopping_criterion(settings.stopping_criterion, **params)}
    sorter = np.argsort(ids, kind="stable")
    pos = sorter[np.searchsorted(ids, state["task_ids"], sorter=sorter)]
    p = np.asarray(proba)[pos]
    if cfg.multi_label:
        import scipy.sparse as sp
        predictions = sp.csr_matrix((p > 0.5).astype(np.int64))
    else:
        predictions = np.argmax(p, axis=1).astype(np.int64)
    stop = bool(state["criterion"].stop(predictions=predictions, proba=p,
                                        indices_stopping=np.arange(len(p))))
    state["rounds"] += 1
    store.save_state(project_id, STOPPING_STATE, state)
    verdict = {"criterion": settings.stopping_criterion, "stop": stop,
               "rounds": state["rounds"], "stopping_set": int(len(state["task_ids"]))}
    if reset:
        verdict["reset"] = reset
    return verdict


# ---------------------------------------------------------------------------------------------
def run_round(project_id: int, settings: Settings, store: Store, client, reason: str = "retrain"
              ) -> dict:
    """Run one training round for ``project_id`` and return its audit record.

    Steps: fetch every task; labels = the latest non-cancelled annotation per task; train
    (or, below ``AL_MIN_ANNOTATIONS``, order the pool with the init strategy); rank the
    unlabeled tasks; push one prediction per unlabeled task under a NEW version; PATCH the
    project's ``model_version`` and sampling; switch ``current``; delete the superseded
    version from Label Studio (unless ``AL_KEEP_PREDICTION_HISTORY``).
    """
    with store.round_lock(project_id):
        return _run_round_locked(int(project_id), settings, store, client, reason)


def _run_round_locked(project_id: int, settings: Settings, store: Store, client,
                      reason: str) -> dict:
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    previous = store.current(project_id)
    version = store.new_version_name(project_id)
    record: dict[str, Any] = {
        "round": len(store.audit(project_id)) + 1, "version": version, "previous": previous,
        "reason": reason, "started_at": time.time(), "events_upto": store.last_event_seq(project_id),
        "strategy": settings.query_strategy, "classifier": settings.classifier,
        "status": "failed", "error": None, "timings": timings,
    }
    wrote_version = False

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 4)
        return now

    try:
        config = store.load_project(project_id)
        if not config or "label_config" not in config:
            raise RuntimeError(f"project {project_id} is not set up (no label config); "
                               "Label Studio calls /setup when the ML backend is connected")
        cfg = LabelConfig.from_dict(config["parsed"]) if "parsed" in config else \
            parse_label_config(config["label_config"])

        t = time.perf_counter()
        tasks = client.fetch_tasks(project_id)
        missing = _await_webhook_annotations(store, project_id, record["events_upto"], client,
                                             tasks)
        if missing:
            record["missing_annotations"] = missing
            log.warning("event=annotations_not_visible project=%s ids=%s", project_id, missing[:10])
        t = lap("fetch", t)

        data = extract(tasks, cfg)
        ids, labels = data["ids"], data["labels"]
        if data["skipped"]:
            log.warning("event=tasks_skipped project=%s count=%d field=%s first_ids=%s",
                        project_id, len(data["skipped"]), cfg.text_field, data["skipped"][:5])
        labeled_mask = np.fromiter((l is not None for l in labels), dtype=bool, count=len(labels))
        idx_labeled = np.flatnonzero(labeled_mask)
        idx_unlabeled = np.flatnonzero(~labeled_mask)
        record.update(n_tasks=len(tasks), n_skipped=len(data["skipped"]),
                      labels={"count": int(idx_labeled.size),
                              "annotation_ids": data["annotation_ids"]},
                      n_labeled=int(idx_labeled.size), n_unlabeled=int(idx_unlabeled.size))

        cold = idx_labeled.size < settings.min_annotations or idx_labeled.size == 0
        record["cold_start"] = bool(cold)
        bundle = None
        stopping = None
        if cold:
            order = idx_unlabeled[cold_start_order(settings, idx_unlabeled.size)]
            pred_labels = [[] for _ in range(order.size)]
            confidence = np.full(order.size, np.nan)
            record["strategy_used"] = f"init:{settings.init_strategy}"
            t = lap("train", t)
            t = lap("score", t)
        else:
            from al_engine.data import Dataset
            from al_engine.registry import make_classifier
            ds = Dataset.from_texts(data["texts"], labels, target_labels=list(cfg.labels),
                                    multi_label=cfg.multi_label)
            clf = make_classifier(settings.classifier, num_classes=len(cfg.labels),
                                  multi_label=cfg.multi_label, **classifier_params(settings))
            ds = clf.featurize(ds)
            clf.fit(ds[idx_labeled])
            t = lap("train", t)

            proba = np.asarray(clf.predict_proba(ds))
            if idx_unlabeled.size:
                order = _rank(settings, clf, ds, proba, idx_unlabeled, idx_labeled, record)
            else:
                order = idx_unlabeled
            pred_labels, confidence = predicted_labels(proba, cfg, order)
            try:
                stopping = _evaluate_stopping(store, project_id, settings, ids, proba, cfg)
            except Exception as exc:  # noqa: BLE001 - a criterion error must not fail the round
                stopping = {"criterion": settings.stopping_criterion, "stop": None,
                            "error": f"{type(exc).__name__}: {exc}"}
            bundle = {"clf": clf, "labels": list(cfg.labels), "multi_label": cfg.multi_label,
                      "text_field": cfg.text_field, "version": version}
            t = lap("score", t)
        record["stopping"] = stopping

        prio = priorities(order.size)
        task_ids = ids[order]
        predictions, ranking = [], {}
        for tid, score, names, conf in zip(task_ids.tolist(), prio.tolist(), pred_labels,
                                           confidence.tolist()):
            conf = None if conf != conf else round(float(conf), 6)  # NaN -> None
            predictions.append({"task": tid, "model_version": version, "score": score,
                                "result": cfg.result(names, conf)})
            ranking[tid] = {"score": score, "labels": names, "confidence": conf}
        k = settings.batch_size
        record["queried"] = [{"task": tid, "score": ranking[tid]["score"],
                              "labels": ranking[tid]["labels"],
                              "confidence": ranking[tid]["confidence"]}
                             for tid in task_ids[:k].tolist()]
        store.write_version(project_id, version, bundle, ranking)
        wrote_version = True

        # The best-ranked tasks first, then switch the queue: Label Studio serves the lowest
        # score among predictions of the project's model_version, so the queue is right as
        # soon as the head of the ranking is in; the rest follows (AL_PUSH_FIRST). The head
        # goes one prediction per request: a bulk import costs Label Studio a recount over
        # the whole project per request (seconds on 10k tasks), a single create does not.
        head, tail = predictions[:settings.push_first], predictions[settings.push_first:]
        for prediction in head:
            client.create_prediction(prediction)
        created = len(head)
        t = lap("push", t)
        client.update_project(project_id, model_version=version, sampling=SAMPLING)
        t = lap("patch", t)
        store.set_current(project_id, version)
        record["status"] = "ok"
        record["queue_reordered_s"] = round(time.perf_counter() - t0, 4)

        pushed_tail, complete = _push_tail(client, project_id, tail, store, record["events_upto"])
        record["pushed"] = created + pushed_tail
        record["push_complete"] = complete
        t = lap("push_rest", t)
        if not complete:
            log.info("event=push_interrupted project=%s version=%s pushed=%d of %d (a newer "
                     "retrain is pending)", project_id, version, record["pushed"], len(predictions))
        elif not settings.keep_prediction_history:
            record["deleted_versions"] = _delete_superseded(client, project_id, version, previous,
                                                            record)
        store.prune_versions(project_id, keep=2)
        t = lap("delete", t)
        if bundle is not None:  # dashboard metrics (backend/metrics.py), once the new queue serves
            from backend.metrics import round_metrics
            record["metrics"] = round_metrics(store, project_id, settings, cfg, ds, idx_labeled,
                                              ids, proba)
            lap("metrics", t)
    except Exception as exc:  # noqa: BLE001 - a round failure is recorded, never raised
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        log.error("event=round_failed project=%s version=%s error=%r\n%s", project_id, version,
                  record["error"], traceback.format_exc())
        if wrote_version and store.current(project_id) != version:
            store.delete_version(project_id, version)
    timings["total"] = round(time.perf_counter() - t0, 4)
    record["finished_at"] = time.time()
    store.append_audit(project_id, record)
    if record["status"] == "ok":
        stop = (record.get("stopping") or {}).get("stop")
        log.info("event=round project=%s version=%s status=ok labeled=%s unlabeled=%s "
                 "strategy=%s cold_start=%s stop=%s total_s=%.3f", project_id, version,
                 record.get("n_labeled"), record.get("n_unlabeled"),
                 record.get("strategy_used", settings.query_strategy), record.get("cold_start"),
                 stop, timings["total"])
    return record


def _rank(settings: Settings, clf, ds, proba, idx_unlabeled, idx_labeled, record) -> np.ndarray:
    from al_engine.exceptions import MultiLabelNotSupportedError
    from al_engine.registry import make_query_strategy
    strategy = make_query_strategy(settings.query_strategy, **settings.query_params)
    try:
        order = strategy.rank(_ProbaCache(clf, ds, proba), ds, idx_unlabeled, idx_labeled,
                              ds.y[idx_labeled])
        record["strategy_used"] = settings.query_strategy
    except MultiLabelNotSupportedError as exc:
        record["strategy_used"] = "multi_label_uncertainty"
        record["warning"] = (f"{settings.query_strategy} does not support multi-label projects "
                             f"({exc}); ranked by min |p - 0.5| instead")
        log.warning("event=strategy_fallback strategy=%s reason=%r", settings.query_strategy,
                    str(exc))
        order = multi_label_uncertainty_order(proba, idx_unlabeled)
    return _complete_order(order, idx_unlabeled)


def retrain_requested_since(store: Store, project_id: int, upto: int) -> bool:
    """True when a webhook that asks for a retrain arrived after event ``upto``."""
    if store.last_event_seq(project_id) <= upto:
        return False
    return any(e.get("seq", 0) > upto and e.get("handled") == "train"
               for e in store.events(project_id))


#: Predictions per bulk import of the tail. Label Studio recounts every task of the project
#: once per import request, so one request is about as costly as five: on a 10k-task project
#: 10,000 predictions in one request took 15.8 s, 2,000 took 13.4 s.
TAIL_CHUNK = 10_000


def _push_tail(client, project_id: int, tail: list[dict], store: Store, upto: int,
               chunk_size: int = TAIL_CHUNK) -> tuple[int, bool]:
    """Push the rest of the ranking in chunks; stop early (``complete=False``) when a newer
    retrain is pending, since its version will supersede this one anyway."""
    pushed = 0
    for start in range(0, len(tail), chunk_size):
        if retrain_requested_since(store, project_id, upto):
            return pushed, False
        pushed += client.import_predictions(project_id, tail[start:start + chunk_size],
                                            chunk_size=chunk_size)
    return pushed, True


def _delete_superseded(client, project_id: int, version: str, previous: str | None,
                       record: dict) -> list[str]:
    """Delete every other studio-al version's predictions from Label Studio; a failure here
    is a warning (the new version already serves)."""
    deleted = []
    try:
        existing = client.model_versions(project_id)
        old = [v for v in existing if v.startswith(VERSION_PREFIX) and v != version]
    except Exception as exc:  # noqa: BLE001
        old = [previous] if previous else []
        record["warning_delete"] = f"model_versions failed: {type(exc).__name__}: {exc}"
    for v in old:
        try:
            client.delete_model_version(project_id, v)
            deleted.append(v)
        except Exception as exc:  # noqa: BLE001
            record["warning_delete"] = f"deleting {v} failed: {type(exc).__name__}: {exc}"
            log.warning("event=delete_version_failed project=%s version=%s error=%r",
                        project_id, v, str(exc))
    return deleted
