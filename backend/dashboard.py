"""Admin dashboard: ``GET /dashboard`` (every project) and ``GET /dashboard/<project>``.

Server-rendered HTML (Jinja2 templates shipped in ``backend/templates``, inline CSS, inline
SVG plots; no JavaScript, no CDN). Basic auth is the app's ``before_request`` hook
(``backend.api.check_basic_auth``), so the pages are protected exactly like the API.

The numbers come from :meth:`backend.service.BackendService.status` (the service stored in
``app.extensions["studio_al"]["service"]``), which is also what ``GET /status`` answers: the
page and ``/status`` show the same data, read from the store by ``backend.project_status``
(the web process never trains, never imports torch or matplotlib). The learning-curve plot is
cached here (keyed by the serving version and the number of rounds), so a page view after a
round costs one JSON parse of the audit log and of the new ranking, and later views a render.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from flask import Blueprint, current_app, render_template
from markupsafe import Markup

from backend import plots
from backend.record import STEPS

bp = Blueprint("dashboard", __name__, template_folder="templates")

_cache_lock = threading.Lock()
_plot_cache: dict[tuple, str] = {}


def _service():
    """The app's :class:`backend.service.BackendService`."""
    return current_app.extensions["studio_al"]["service"]


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
    return {"settings": _service().settings.public(),
            "now": time.time(), "steps": STEPS}


def _not_found(message: str, code: int = 404):
    return render_template("dashboard_error.html", message=message), code


@bp.get("/dashboard")
@bp.get("/dashboard/")
def index():
    service = _service()
    projects = [service.status(p) for p in service.store.projects()]
    return render_template("dashboard_index.html", projects=projects)


@bp.get("/dashboard/<project>")
def project_page(project: str):
    if not project.isdigit() or int(project) <= 0:
        return _not_found(f"{project!r} is not a project id (a positive integer)", 400)
    project_id = int(project)
    service = _service()
    if project_id not in service.store.projects():
        return _not_found(f"unknown project {project_id}: Label Studio has not called /setup "
                          "for it yet")
    status = service.status(project_id)
    return render_template("dashboard_project.html", p=status, plot=learning_curve_plot(
        project_id, status))
