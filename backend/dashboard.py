"""Admin dashboard: ``GET /dashboard`` (every project) and ``GET /dashboard/<project>``.

Server-rendered HTML (Jinja2 templates shipped in ``backend/templates``, inline CSS, inline
SVG plots; no JavaScript, no CDN). Basic auth is the app's own ``before_request`` hook, so
the pages are protected exactly like the API.

The numbers come from :func:`status_details`, which ``GET /status`` merges into each
project's JSON: the page and ``/status`` show the same data. Everything is read from the
store (audit log, ranking of the serving version) -- the web process never trains, never
imports torch or matplotlib. Parsed audit logs, the next-tasks queue and the plot are cached
(keyed by the audit file's size/mtime and the serving version), so a page view after a round
costs one JSON parse of the audit log and of the new ranking, and later views cost a render.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import Blueprint, current_app, render_template
from markupsafe import Markup

from backend import plots

bp = Blueprint("dashboard", __name__, template_folder="templates")

QUEUE_SIZE = 20
#: a class is flagged rare when its share of the labels is below RARE_SHARE / K, or when it
#: has fewer than RARE_MIN labels (too few for each of 5 CV folds to see it)
RARE_SHARE = 0.25
RARE_MIN = 5

_cache_lock = threading.Lock()
_audit_cache: dict[str, tuple[tuple, list[dict]]] = {}
_queue_cache: dict[tuple[str, str], list[dict]] = {}
_plot_cache: dict[tuple, str] = {}


# ------------------------------------------------------------------ data
def audit_records(store, project_id: int) -> list[dict]:
    """The project's audit records (parsed once per change of audit.jsonl)."""
    from backend.store import _read_jsonl
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
            "stop": stopping.get("stop"), "timings": r.get("timings") or {},
            "queried": [q.get("task") for q in r.get("queried") or []],
            "warning": r.get("warning")}


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
    from backend.instance import Instance
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
        "learning_curve": [{"round": r.get("round"), "version": r.get("version"),
                            "labeled": r.get("n_labeled"),
                            "accuracy": ((r["metrics"].get("cv") or {}).get("accuracy")),
                            "macro_f1": ((r["metrics"].get("cv") or {}).get("macro_f1"))}
                           for r in trained],
        "labels_needed": last_metrics.get("labels_needed"),
        "stopping_history": history,
        "stop_now": (last_ok.get("stopping") or {}).get("stop"),
        "next_tasks": next_tasks(store, project_id, version),
        "rounds": [_round_row(r) for r in records],
    }


def _status(project_id: int) -> dict:
    ext = current_app.extensions["studio_al"]
    fn = ext.get("project_status")
    status = fn(project_id) if fn else {"project": project_id,
                                        "model_version": ext["store"].current(project_id)}
    if "class_distribution" not in status:  # /status without the merge: add the details here
        status.update(status_details(ext["store"], ext["settings"], project_id))
    return status


def learning_curve_plot(project_id: int, status: dict) -> Markup:
    """The learning-curve SVG, cached per (project, serving version, rounds)."""
    est = status.get("labels_needed") or {}
    key = (project_id, status.get("model_version"), status.get("rounds_total"),
           len(status.get("learning_curve") or []))
    with _cache_lock:
        svg = _plot_cache.get(key)
    if svg is None:
        svg = plots.learning_curve_svg(status.get("learning_curve") or [],
                                       fit=est.get("curve"), target=est.get("labels_needed"))
        with _cache_lock:
            if len(_plot_cache) > 256:
                _plot_cache.clear()
            _plot_cache[key] = svg
    return Markup(svg)


# ------------------------------------------------------------------ template helpers
@bp.app_template_filter("ts")
def _ts(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


@bp.app_template_filter("secs")
def _secs(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


@bp.app_template_filter("num")
def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ------------------------------------------------------------------ template warm-up
TEMPLATES = ("dashboard_project.html", "dashboard_index.html", "dashboard_error.html")


@bp.record_once
def _warm_templates(state) -> None:
    """Compile the templates off the request path: a bytecode cache under
    ``MODEL_DIR/.jinja-cache`` (survives restarts; keyed by the template source's checksum)
    and a background compile at start-up, so the first page view does not pay Jinja's
    compile (~0.1 s, more on a loaded machine)."""
    app = state.app
    ext = app.extensions.get("studio_al") or {}
    settings = ext.get("settings")
    if settings is not None and app.jinja_env.bytecode_cache is None:
        from jinja2 import FileSystemBytecodeCache
        cache_dir = os.path.join(settings.model_dir, ".jinja-cache")
        try:
            os.makedirs(cache_dir, exist_ok=True)
            app.jinja_env.bytecode_cache = FileSystemBytecodeCache(cache_dir)
        except OSError:
            pass

    def compile_all() -> None:
        try:
            for name in TEMPLATES:
                app.jinja_env.get_template(name)
        except Exception:  # noqa: BLE001 - the request path compiles (and reports) instead
            pass

    threading.Thread(target=compile_all, name="studio-al-templates", daemon=True).start()


# ------------------------------------------------------------------ routes
@bp.context_processor
def _common() -> dict:
    return {"settings": current_app.extensions["studio_al"]["settings"].public(),
            "now": time.time()}


def _not_found(message: str, code: int = 404):
    return render_template("dashboard_error.html", message=message), code


@bp.get("/dashboard")
@bp.get("/dashboard/")
def index():
    ext = current_app.extensions["studio_al"]
    store = ext["store"]
    projects = [_status(p) for p in store.projects()]
    return render_template("dashboard_index.html", projects=projects)


@bp.get("/dashboard/<project>")
def project_page(project: str):
    if not project.isdigit() or int(project) <= 0:
        return _not_found(f"{project!r} is not a project id (a positive integer)", 400)
    project_id = int(project)
    ext = current_app.extensions["studio_al"]
    if project_id not in ext["store"].projects():
        return _not_found(f"unknown project {project_id}: Label Studio has not called /setup "
                          "for it yet")
    status = _status(project_id)
    return render_template("dashboard_project.html", p=status, plot=learning_curve_plot(
        project_id, status))
