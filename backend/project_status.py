"""What ``GET /status`` and the dashboard show about a project, read from the store.

Everything comes from the store (the audit log, the project's label config, the ranking of
the serving version): the web process never trains, never imports torch or matplotlib.
Parsed audit logs and the next-tasks queue are cached (keyed by the audit file's
size/mtime/inode and the serving version), so a page view after a round costs one JSON parse
of the audit log and of the new ranking.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from backend.instance import Connection, Instance
from backend.store import _read_jsonl
from backend.training import UNTRAINED

QUEUE_SIZE = 20
#: a class is flagged rare when its share of the labels is below RARE_SHARE / K, or when it
#: has fewer than RARE_MIN labels (too few for each of 5 CV folds to see it)
RARE_SHARE = 0.25
RARE_MIN = 5

_cache_lock = threading.Lock()
_audit_cache: dict[str, tuple[tuple, list[dict]]] = {}
_queue_cache: dict[tuple[str, str], list[dict]] = {}


def audit_records(store, project_id: int) -> list[dict]:
    """The project's audit records (parsed once per change of audit.jsonl)."""
    path = os.path.join(store.project_dir(project_id), "audit.jsonl")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return []
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    with _cache_lock:
        hit = _audit_cache.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    records = _read_jsonl(path)
    with _cache_lock:
        _audit_cache[path] = (stamp, records)
    return records


def next_tasks(store, project_id: int, version: str | None, n: int = QUEUE_SIZE) -> list[dict]:
    """The ``n`` tasks Label Studio serves next under ``version`` (lowest priority score
    first, ties by task id): ``{"task", "score", "labels", "confidence"}``."""
    if not version:
        return []
    key = (store.project_dir(project_id), version)
    with _cache_lock:
        hit = _queue_cache.get(key)
    if hit is not None:
        return hit[:n]
    ranking = store.load_ranking(project_id, version)
    out = [] if ranking is None else [e.as_dict() for e in ranking.head(max(n, QUEUE_SIZE))]
    with _cache_lock:
        if len(_queue_cache) > 256:
            _queue_cache.clear()
        _queue_cache[key] = out
    return out[:n]


def class_distribution(counts: dict[str, int] | None, labels: list[str]) -> list[dict]:
    """``[{"label", "count", "share", "rare"}]`` in label-config order (see RARE_*)."""
    counts = counts or {}
    names = list(labels) or list(counts)
    total = sum(counts.get(k, 0) for k in names)
    k = max(len(names), 1)
    out = []
    for name in names:
        c = int(counts.get(name, 0))
        share = c / total if total else 0.0
        out.append({"label": name, "count": c, "share": round(share, 4),
                    "rare": bool(total) and (c < RARE_MIN or share < RARE_SHARE / k)})
    return out


def _round_row(r: dict) -> dict:
    metrics = r.get("metrics") or {}
    cv = metrics.get("cv") or {}
    stopping = r.get("stopping") or {}
    return {"round": r.get("round"), "version": r.get("version"), "status": r.get("status"),
            "error": r.get("error"), "reason": r.get("reason"),
            "started_at": r.get("started_at"), "finished_at": r.get("finished_at"),
            "labeled": r.get("n_labeled"), "unlabeled": r.get("n_unlabeled"),
            "cold_start": r.get("cold_start"), "strategy_used": r.get("strategy_used"),
            "accuracy": cv.get("accuracy"), "macro_f1": cv.get("macro_f1"),
            "estimate": (metrics.get("accuracy_estimate") or {}).get("value"),
            "probes": r.get("probes"), "stop": stopping.get("stop"), "timings": r.get("timings") or {},
            "queried": [q.get("task") for q in r.get("queried") or []],
            "warning": r.get("warning")}


def _mark_probes(store, project_id: int, version: str | None, tasks: list[dict]) -> list[dict]:
    """``tasks`` with ``"probe": True`` on the random probes of ``version``'s ranking."""
    from backend.probes import ProbeLog
    log = ProbeLog.load(store, project_id)
    probes = set(log.serving.tolist()) if log.version == version else set()
    return [{**t, "probe": t["task"] in probes} for t in tasks]


def _curve_point(r: dict) -> dict:
    """One trained round on the learning curve: the probe estimate with its interval, and the
    cross-validated figures (biased: computed on actively chosen labels)."""
    m = r.get("metrics") or {}
    cv, est = m.get("cv") or {}, m.get("accuracy_estimate") or {}
    return {"round": r.get("round"), "version": r.get("version"), "labeled": r.get("n_labeled"),
            "estimate": est.get("value"), "estimate_low": est.get("low"),
            "estimate_high": est.get("high"), "probes": est.get("n"),
            "majority": est.get("majority"),
            "accuracy": cv.get("accuracy"), "macro_f1": cv.get("macro_f1")}


def stop_view(stop: bool | None, estimate: dict | None) -> dict:
    """``stop_now`` and ``stop_note``: a criterion's "stop" is held back (``stop_now`` False)
    while the accuracy estimate does not show the model beats always answering the majority
    label, since stopping criteria measure stability, which a useless model can have too."""
    beats = (estimate or {}).get("beats_majority")
    if stop is not True:
        return {"stop_now": stop, "stop_note": None}
    if beats is False:
        return {"stop_now": False, "stop_note": (
            "the stopping criterion says stop, but the model is not yet measurably better "
            f"than always answering {estimate.get('majority_label')!r} on the "
            f"{estimate.get('n')} random tasks labeled so far: keep labeling")}
    if beats is None:
        return {"stop_now": True, "stop_note": (
            "unconfirmed: no accuracy estimate shows the model beats the majority label")}
    return {"stop_now": True, "stop_note": None}


#: what benchmarks/labels_needed_eval.py measured (results/labels_needed.md): the estimate from
#: 400 random labels was 0.14x to 2.4x the truth on 3 datasets; from active labels, unvalidated
LABELS_NEEDED_ERROR = ("an order of magnitude only: validated on random labels it was 0.14x to "
                       "2.4x the truth (benchmarks/results/labels_needed.md); on labels "
                       "chosen by active learning, as here, its error is not measured")


def labels_needed_view(est: dict | None, estimate: dict | None) -> dict | None:
    """The labels-needed estimate with its error statement, or only a ``reason`` when it
    cannot be trusted at all: the fitted curve has not bent (its asymptote sits at the bound
    of 1.0) or the model does not beat the majority label yet."""
    if not est or est.get("labels_needed") is None:
        return est
    if (est.get("accuracy_limit") or 0) >= 0.999:
        return {"labels_needed": None, "reason": (
            "the learning curve has not bent yet (its fitted limit is 100% accuracy): too "
            "early to extrapolate how many labels are needed")}
    if (estimate or {}).get("beats_majority") is False:
        return {"labels_needed": None, "reason": (
            "the model is not yet better than the majority label: no extrapolation")}
    return {**est, "error": LABELS_NEEDED_ERROR}


def status_details(store, settings, project_id: int) -> dict[str, Any]:
    """The dashboard's numbers for one project (merged into ``GET /status``)."""
    records = audit_records(store, project_id)
    ok = [r for r in records if r.get("status") == "ok"]
    last_ok = ok[-1] if ok else {}
    trained = [r for r in ok if r.get("metrics")]
    last_metrics = (trained[-1] if trained else {}).get("metrics") or {}
    config = store.load_project(project_id) or {}
    labels = list((config.get("parsed") or {}).get("labels") or [])
    multi = bool((config.get("parsed") or {}).get("multi_label"))
    version = store.current(project_id)
    cv = dict(last_metrics.get("cv") or {})
    cv.pop("curve", None)
    history = []
    for r in ok:
        if r.get("cold_start") or not r.get("stopping"):
            continue
        crit = dict((r.get("metrics") or {}).get("criteria") or {})
        st = r["stopping"]
        history.append({"round": r.get("round"), "labeled": r.get("n_labeled"),
                        "configured": {"criterion": st.get("criterion"), "stop": st.get("stop"),
                                       "error": st.get("error")},
                        "criteria": {k: v for k, v in crit.items() if isinstance(v, dict)}})
    estimate = last_metrics.get("accuracy_estimate") if last_metrics else None
    ls_url = Instance(settings, store.root).public_url()  # http(s) only, no credentials
    return {
        "labels": labels, "multi_label": multi,
        "classifier": settings.classifier, "stopping_criterion": settings.stopping_criterion,
        # sentence embeddings of the pool: {"used": "tfidf" until complete, "embedded", "total"}
        "features": last_ok.get("features"),
        "mode": "redis" if settings.redis_url else "embedded",
        "label_studio_url": ls_url,
        "rounds_total": len(records), "rounds_ok": len(ok),
        "class_distribution": class_distribution(
            last_metrics.get("class_counts") if last_metrics else None, labels),
        "class_distribution_round": (trained[-1] if trained else {}).get("round"),
        "quality": cv or None,
        "accuracy_estimate": estimate,
        "learning_curve": [_curve_point(r) for r in trained],
        "labels_needed": labels_needed_view(last_metrics.get("labels_needed"), estimate),
        "stopping_history": history,
        **stop_view((last_ok.get("stopping") or {}).get("stop"), estimate),
        "next_tasks": _mark_probes(store, project_id, version,
                                   next_tasks(store, project_id, version)),
        "rounds": [_round_row(r) for r in records],
    }


def project_status(store, settings, project_id: int, *, set_up: bool, job: dict) -> dict:
    """One project's ``GET /status`` entry: the last round, the job runner's state ``job``
    and the dashboard's numbers (:func:`status_details`)."""
    records = audit_records(store, project_id)  # parsed once per change
    last = records[-1] if records else None
    last_ok = next((r for r in reversed(records) if r.get("status") == "ok"), None)
    current = store.current(project_id)
    running = store.progress(project_id) if (job or {}).get("state") == "running" else None
    # a round's new version serves from its write_version step on, before its audit record
    # exists: its counts and queue are then the running round's, not the previous round's
    fresh = running is not None and running.get("version") == current
    counts = running if fresh else {**(last_ok or {}), "queued_tasks": [
        q["task"] for q in (last_ok or {}).get("queried", [])]}
    return {
        "project": project_id, "set_up": set_up,
        "connected": Connection.load(store, project_id) is not None,
        "model_version": current or UNTRAINED,
        "serving": {"version": current, "round": counts.get("round"), "from": (
            "running round" if fresh else "audit record")} if current else None,
        "running": None if running is None else {
            k: running.get(k) for k in ("round", "version", "reason", "step", "started_at",
                                        "step_started_at", "timings")},
        "labeled": counts.get("n_labeled"),
        "unlabeled": counts.get("n_unlabeled"),
        "last_training": None if last is None else {
            "version": last.get("version"), "status": last.get("status"),
            "error": last.get("error"), "started_at": last.get("started_at"),
            "duration": (last.get("timings") or {}).get("total")},
        "job": job,
        "query_strategy": settings.query_strategy,
        "strategy_used": (last_ok or {}).get("strategy_used"),
        "stopping": (last_ok or {}).get("stopping"),
        "queued_tasks": counts.get("queued_tasks") or [],
        "events": store.last_event_seq(project_id),
        **status_details(store, settings, project_id),  # the dashboard's numbers
    }
