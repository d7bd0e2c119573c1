"""The Label Studio ML backend: a Flask 3 application factory.

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``,
``GET /versions``, ``GET /status``. Every error is a JSON body ``{"error": "..."}`` with a
4xx status; a global handler guarantees that even a bug answers JSON (500), never an HTML
page. Basic auth protects every route but ``/health`` when configured.
"""
from __future__ import annotations

import atexit
import base64
import contextlib
import hmac
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Any, Callable

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend import dashboard, training
from backend import project_status as project_status_mod
from backend.logs import configure_logging
from backend.jobs import (JobRunner, ProcessRoundExecutor, ThreadJobRunner,
                          label_studio_client_factory, run_project_round)
from backend.labelconfig import LabelConfig, LabelConfigError, parse_label_config
from backend.instance import (MAX_UNVERIFIED, Connection, Instance, TrustError,
                              record_challenge)
from backend.settings import Settings, redact_url
from backend.store import Store, StoreWriteError

log = logging.getLogger("studio_al.app")

MODEL_CLASS = "StudioAL"
UNTRAINED = training.UNTRAINED
UNRANKED_SCORE = 1.0

from backend.webhooks import (IGNORED_ACTIONS, KNOWN_ACTIONS,  # noqa: E402
                              SIGNATURE_HEADER, signature_ok, webhook_event)


class BadRequest(Exception):
    """A client error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


_ID_RE = re.compile(r"[0-9]{1,18}")


def parse_project_id(value: Any, field: str = "project") -> int:
    """``12``, ``"12"``, ``"12.1700000000"`` (Label Studio's /setup form) or ``{"id": 12}``;
    ASCII digits only, at most 18 of them."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        value = None
    if isinstance(value, int) and 0 < value < 10 ** 18:
        return value
    if isinstance(value, str) and len(value) <= 64:
        head = value.split(".", 1)[0].strip()
        if _ID_RE.fullmatch(head) and int(head) > 0:
            return int(head)
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    raise BadRequest(f"{field!r} must be a project id (a positive integer, \"<id>.<timestamp>\" "
                     f"or an object with \"id\"), got {shown}")


def _json_body() -> dict:
    """The request's JSON object. Only ``Content-Type: application/json`` is read (415
    otherwise: a web page cannot post JSON to another origin without a CORS preflight, which
    the backend never grants, so a browser cannot be used to forge requests)."""
    if request.mimetype != "application/json":
        raise BadRequest("Content-Type must be application/json", 415)
    data = request.get_data(cache=True)  # 413 past MAX_CONTENT_LENGTH (Content-Length given)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        # a chunked body is cut at the limit rather than refused: refuse it here
        raise RequestEntityTooLarge()
    try:
        body = json.loads(data)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError:
        raise BadRequest("request body must be JSON (Content-Type: application/json)") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def default_client_factory(url: str, api_key: str):
    from backend.labelstudio import LabelStudioClient
    return LabelStudioClient(url, api_key)


def create_app(settings: Settings | None = None, runner: JobRunner | None = None,
               client_factory: Callable[[str, str], Any] | None = None) -> Flask:
    """Build the backend.

    Parameters
    ----------
    settings : Settings or None
        Default: :meth:`Settings.from_env`.
    runner : JobRunner or None
        Default: a :class:`ThreadJobRunner` running :func:`training.run_round`.
    client_factory : callable ``(url, api_key) -> LabelStudioClient`` or None
        Default: :class:`backend.labelstudio.LabelStudioClient`.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    store = Store(settings.model_dir)
    in_process = client_factory is not None  # an injected client (tests) cannot cross processes
    client_factory = client_factory or label_studio_client_factory(settings)

    if in_process:
        def job(project_id: int, reason: str) -> dict:
            return run_project_round(project_id, reason, settings, store, client_factory)
    else:
        job = ProcessRoundExecutor(settings)
        atexit.register(job.shutdown)

    owns_runner = runner is None
    if runner is None and settings.redis_url:
        from backend.rq_jobs import RQJobRunner  # needs the [redis] extra
        runner = RQJobRunner(settings)
    runner = runner or ThreadJobRunner(job, workers=settings.round_workers,
                                       min_interval=settings.min_round_interval)
    if owns_runner:
        atexit.register(runner.shutdown, 2.0)

    app = Flask("studio_al")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_mb * 1024 * 1024
    app.json.sort_keys = False
    app.extensions["studio_al"] = {"settings": settings, "store": store, "runner": runner,
                                   "job": job}
    live_lock = threading.Lock()
    instance = Instance(settings, store.root)
    app.extensions["studio_al"]["instance"] = instance

    def token_works(url: str, token: str) -> bool | None:
        """Does Label Studio at ``url`` accept ``token``? None when it cannot be reached
        (2 s, no retry, no redirect followed)."""
        from backend.labelstudio import LabelStudioClient
        try:
            client = client_factory(url, token) if in_process else \
                LabelStudioClient(url, token, timeout=2.0, retries=0)
            client.whoami()
            return True
        except Exception as exc:  # noqa: BLE001 - LabelStudioError or a fake's error
            status = getattr(exc, "status", None)
            log.warning("event=token_check_failed url=%s status=%s", redact_url(url), status)
            return None if status is None else False

    # ------------------------------------------------------------------ errors and auth
    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest):
        return jsonify(error=exc.message), exc.status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        resp = jsonify(error=f"{exc.name}: {exc.description}")
        resp.status_code = exc.code or 500
        if exc.code == 405 and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(StoreWriteError)
    def _store_full(exc: StoreWriteError):
        log.error("event=store_write_failed path=%s error=%r", request.path, str(exc))
        return jsonify(error=f"storage unavailable, not recorded: {exc.strerror or exc}"), 503

    @app.errorhandler(Exception)
    def _bug(exc: Exception):
        log.exception("event=unhandled_error path=%s", request.path)
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    @app.before_request
    def _auth():
        if not settings.basic_auth or request.path == "/health":
            return None
        if request.path == "/webhook" and request.headers.get(SIGNATURE_HEADER) is not None:
            return None  # Label Studio's signed subscription (it cannot send basic auth)
        header = request.headers.get("Authorization", "")
        ok = False
        if header.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                ok = hmac.compare_digest(user.encode(), settings.basic_auth_user.encode()) & \
                    hmac.compare_digest(password.encode(), settings.basic_auth_pass.encode())
            except (ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            resp = jsonify(error="authentication required (HTTP basic auth)")
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = 'Basic realm="studio-al"'
            return resp
        return None

    # ------------------------------------------------------------------ helpers
    def project_cfg(project_id: int) -> LabelConfig | None:
        """The label config read from Label Studio by the connection check, else the one
        ``/setup`` sent (used only to format answers until the project is verified)."""
        conn = Connection.load(store, project_id)
        if conn is not None:
            with contextlib.suppress(LabelConfigError):
                return parse_label_config(conn.label_config)
        config = store.load_project(project_id)
        if not config or "parsed" not in config:
            return None
        return LabelConfig.from_dict(config["parsed"])

    def live_predict(project_id: int, version: str, cfg: LabelConfig, texts: list[str]):
        from al_engine.registry import TORCH_CLASSIFIERS
        if settings.classifier in TORCH_CLASSIFIERS:
            return None  # the web process never imports torch: such tasks wait for the next round
        bundle = store.load_model(project_id, version)
        if not bundle:
            return None
        from al_engine.data import Dataset
        ds = Dataset.from_texts(texts, None, target_labels=list(bundle["labels"]),
                                multi_label=bundle["multi_label"])
        with live_lock:  # a fitted featurizer/estimator is shared by the request threads
            proba = bundle["clf"].predict_proba(ds)
        import numpy as np
        rows = np.arange(len(texts))
        if list(bundle["labels"]) != list(cfg.labels) or bundle["multi_label"] != cfg.multi_label:
            cfg = LabelConfig(cfg.from_name, cfg.to_name, cfg.text_field,
                              tuple(bundle["labels"]), bundle["multi_label"])
        return training.predicted_labels(proba, cfg, rows)

    # ------------------------------------------------------------------ routes
    def runner_health() -> dict | None:
        probe = getattr(runner, "health", None)
        return probe() if callable(probe) else None

    @app.get("/health")
    def health():
        # "status" stays UP while Redis is down: predictions are still served from MODEL_DIR
        # and webhooks are still recorded; "degraded" tells monitoring the queue is unavailable.
        extra = runner_health()
        body = {"status": "UP", "model_class": MODEL_CLASS,
                "mode": "redis" if settings.redis_url else "embedded",
                "degraded": bool(extra and extra["degraded"])}
        if extra is not None:
            body["redis"] = extra["redis"]
        return jsonify(body)

    @app.get("/openapi.json")
    def openapi():
        from backend.openapi import spec
        return jsonify(spec())

    @app.post("/setup")
    def setup():
        body = _json_body()
        project_id = parse_project_id(body.get("project"))
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise BadRequest("'schema' must be the project's label config (an XML string)")
        for field in ("hostname", "access_token"):
            if body.get(field) is not None and not isinstance(body.get(field), str):
                raise BadRequest(f"{field!r} must be a string")
        try:
            verdict = instance.accept_setup(body.get("hostname"), body.get("access_token"),
                                            token_works)
        except TrustError as exc:
            log.warning("event=setup_refused project=%s reason=%r", project_id, str(exc))
            raise BadRequest(str(exc), exc.status) from None
        old = store.load_project(project_id)
        if old is None or old.get("label_config") != schema or "parsed" not in old:
            try:
                parsed = parse_label_config(schema).to_dict()
            except LabelConfigError as exc:
                raise BadRequest(f"unusable label config: {exc}", 422) from None
            if old is None:
                make_room_for_new_project(store)
            store.save_project(project_id, {"project": project_id, "label_config": schema,
                                            "parsed": parsed, "updated_at": time.time()})
        record_challenge(store, project_id, body.get("extra_params"))
        if old is None:  # a new project: prove its connection and order its queue
            log.info("event=setup project=%s trust=%s", project_id, verdict)
            runner.submit(project_id, "setup")
        return jsonify(model_version=store.current(project_id) or UNTRAINED)

    @app.post("/predict")
    def predict():
        body = _json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequest("'tasks' must be a list of tasks")
        for i, task in enumerate(tasks):
            if not isinstance(task, dict) or isinstance(task.get("id"), bool) \
                    or not isinstance(task.get("id"), int):
                raise BadRequest(f"tasks[{i}] must be an object with an integer 'id'")
            if task.get("data") is not None and not isinstance(task.get("data"), dict):
                raise BadRequest(f"tasks[{i}].data must be an object")
        project = body.get("project")
        if project is None and tasks:
            project = tasks[0].get("project")
        project_id = parse_project_id(project)
        cfg = project_cfg(project_id)
        if cfg is None and isinstance(body.get("label_config"), str):
            try:
                cfg = parse_label_config(body["label_config"])
            except LabelConfigError as exc:
                raise BadRequest(f"unusable label config: {exc}", 422) from None
        if cfg is None:
            raise BadRequest(f"project {project_id} is not set up: call /setup first", 409)

        version = store.current(project_id)
        ranking = store.load_ranking(project_id, version) if version else None
        entries = ranking.lookup([t["id"] for t in tasks]) if ranking is not None \
            else [None] * len(tasks)
        results: list[dict | None] = [None] * len(tasks)
        live_rows, live_texts = [], []
        for i, (task, entry) in enumerate(zip(tasks, entries)):
            if entry is not None:
                results[i] = {"result": cfg.result(entry.labels, entry.confidence),
                              "score": entry.score, "model_version": version}
                continue
            text = (task.get("data") or {}).get(cfg.text_field)
            if version and isinstance(text, str):
                live_rows.append(i)
                live_texts.append(text)
            else:
                results[i] = {"result": [], "score": UNRANKED_SCORE,
                              "model_version": version or UNTRAINED}
        if live_rows:
            out = live_predict(project_id, version, cfg, live_texts)
            for j, i in enumerate(live_rows):
                if out is None:
                    results[i] = {"result": [], "score": UNRANKED_SCORE, "model_version": version}
                else:
                    names, conf = out[0][j], float(out[1][j])
                    results[i] = {"result": cfg.result(names, round(conf, 6)),
                                  "score": UNRANKED_SCORE, "model_version": version}
        return jsonify(results=results, model_version=version or UNTRAINED)

    @app.post("/webhook")
    def webhook():
        body = _json_body()
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadRequest("'action' must be a non-empty string")
        if action not in KNOWN_ACTIONS:
            raise BadRequest(f"unknown action {action!r}; known: {', '.join(sorted(KNOWN_ACTIONS))}")
        project = body.get("project")
        if project is None:
            for key in ("annotation", "task"):
                if isinstance(body.get(key), dict) and body[key].get("project") is not None:
                    project = body[key]["project"]
                    break
        project_id = parse_project_id(project)
        signed = request.headers.get(SIGNATURE_HEADER)
        if signed is not None and not signature_ok(instance.secret(), project_id, signed):
            raise BadRequest(f"invalid {SIGNATURE_HEADER} for project {project_id}", 401)
        if store.load_project(project_id) is None:  # never set up here: nothing is stored
            return jsonify(status="ignored", action=action,
                           detail=f"project {project_id} is not connected to this backend")
        conn = Connection.load(store, project_id)
        if signed is None and not settings.basic_auth and conn is not None \
                and conn.webhook_signed and action != "START_TRAINING":
            raise BadRequest(f"this project's webhooks are signed: header {SIGNATURE_HEADER} "
                             "required", 401)
        event = webhook_event(action, project_id, body)

        handled = "ignored" if action in IGNORED_ACTIONS else "train"
        if action == "PROJECT_UPDATED":
            # our own PATCH of the project's model version sends this too: only a label
            # config that differs from the verified one is worth a round (which re-reads it
            # from Label Studio: the body is only a hint)
            sent = project.get("label_config") if isinstance(project, dict) else None
            changed = isinstance(sent, str) and (conn is None or sent != conn.label_config)
            event["config_changed"] = changed
            handled = "train" if changed else "recorded"
        store.append_event(project_id, {**event, "handled": handled,
                                        "signed": signed is not None})
        if handled == "recorded":
            return jsonify(status="recorded", action=action)
        if handled == "ignored":
            return jsonify(status="ignored", action=action)
        state = runner.submit(project_id, action)
        return jsonify(status=state, action=action)

    @app.get("/versions")
    def versions():
        project = request.args.get("project")
        if project is not None:
            project_id = parse_project_id(project, "project query parameter")
            return jsonify(versions=store.versions(project_id),
                           current=store.current(project_id))
        return jsonify(versions=sorted({v for p in store.projects() for v in store.versions(p)}))

    @app.get("/status")
    def status():
        project = request.args.get("project")
        if project is not None:
            project_id = parse_project_id(project, "project query parameter")
            if project_id not in store.projects():
                raise BadRequest(f"unknown project {project_id}", 404)
            return jsonify({**project_status(project_id),
                            "degraded": bool((runner_health() or {}).get("degraded"))})
        return jsonify(settings=settings.public(), queue=runner_health(),
                       degraded=bool((runner_health() or {}).get("degraded")),
                       projects={str(p): project_status(p) for p in store.projects()})

    def project_status(project_id: int) -> dict:
        return project_status_mod.project_status(
            store, settings, project_id, set_up=project_cfg(project_id) is not None,
            job=runner.status(project_id))

    app.extensions["studio_al"]["project_status"] = project_status
    app.register_blueprint(dashboard.bp)  # GET /dashboard, /dashboard/<project>

    # Recover retrains requested before a restart (events newer than the last round).
    for project_id in store.projects():
        last = store.last_audit(project_id, "ok")
        trained_upto = (last or {}).get("events_upto", 0) or 0
        pending = [e for e in store.events(project_id)
                   if e.get("seq", 0) > trained_upto and e.get("handled") == "train"]
        if pending and project_cfg(project_id) is not None:
            log.info("event=recovery project=%s pending_events=%d", project_id, len(pending))
            runner.submit(project_id, "recovery")
    return app


def make_room_for_new_project(store: Store) -> None:
    """Keep at most :data:`MAX_UNVERIFIED` projects that called ``/setup`` but were never
    proved connected: forget the oldest one (a forged ``/setup`` flood cannot fill the disk
    or the descriptor table, nor lock out a real project)."""
    waiting = [p for p in store.projects() if Connection.load(store, p) is None]
    if len(waiting) < MAX_UNVERIFIED:
        return
    def age(pid: int) -> float:
        try:
            return os.path.getmtime(os.path.join(store.project_dir(pid), "project.json"))
        except OSError:
            return 0.0
    for pid in sorted(waiting, key=age)[:len(waiting) - MAX_UNVERIFIED + 1]:
        log.warning("event=unverified_project_forgotten project=%s", pid)
        store.forget_project(pid)
