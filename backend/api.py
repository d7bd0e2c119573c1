"""The HTTP API: a blueprint whose routes read the request and call
:class:`backend.service.BackendService` (``app.extensions["studio_al"]["service"]``).

Routes: ``GET /health``, ``GET /openapi.json``, ``POST /setup``, ``POST /predict``,
``POST /webhook``, ``GET /versions``, ``GET /status``. Every error is a JSON body
``{"error": "..."}`` (:func:`register_error_handlers`): even a bug answers JSON (500), never an
HTML page. :func:`check_basic_auth` protects every route but ``/health`` when basic auth is
configured.
"""
from __future__ import annotations

import base64
import hmac
import json
import logging

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from backend.service import BackendService, BadRequest, parse_project_id
from backend.store import StoreWriteError
from backend.webhooks import SIGNATURE_HEADER

log = logging.getLogger("studio_al.app")

bp = Blueprint("api", __name__)


def _service() -> BackendService:
    return current_app.extensions["studio_al"]["service"]


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


def _project_arg() -> int | None:
    """The ``project`` query parameter, if given."""
    project = request.args.get("project")
    return None if project is None else parse_project_id(project, "project query parameter")


# ------------------------------------------------------------------ routes
@bp.get("/")
def index():
    """Where to go from the backend's URL: the dashboard (people), ``/health`` and the API
    description (machines)."""
    return jsonify({"service": "studio-al", "dashboard": "/dashboard", "health": "/health",
                    "openapi": "/openapi.json"})


@bp.get("/health")
def health():
    return jsonify(_service().health())


@bp.get("/openapi.json")
def openapi():
    from backend.openapi import spec
    return jsonify(spec())


@bp.post("/setup")
def setup():
    return jsonify(_service().setup(_json_body()))


@bp.post("/predict")
def predict():
    return jsonify(_service().predict(_json_body()))


@bp.post("/webhook")
def webhook():
    body = _json_body()
    return jsonify(_service().webhook(body, request.headers.get(SIGNATURE_HEADER)))


@bp.get("/versions")
def versions():
    return jsonify(_service().versions(_project_arg()))


@bp.get("/status")
def status():
    return jsonify(_service().status_report(_project_arg()))


# ------------------------------------------------------------------ errors and auth
def register_error_handlers(app: Flask) -> None:
    """Answer every error as ``{"error": "..."}``: a :class:`BadRequest` with its status, an
    HTTP error (404, 405 with ``Allow``, 413, ...) with its code, a full disk with 503 and
    any other exception with 500."""
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


def check_basic_auth() -> Response | None:
    """``before_request`` hook of the whole app (API and dashboard): with ``BASIC_AUTH_USER``
    set, a request without the right credentials gets 401. ``/health`` is open, and so is a
    ``/webhook`` carrying :data:`SIGNATURE_HEADER` (Label Studio's signed subscription cannot
    send basic auth; the service checks the signature)."""
    settings = _service().settings
    if not settings.basic_auth or request.path == "/health":
        return None
    if request.path == "/webhook" and request.headers.get(SIGNATURE_HEADER) is not None:
        return None
    header = request.headers.get("Authorization", "")
    ok = False
    if header.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            ok = hmac.compare_digest(user.encode(), settings.basic_auth_user.encode()) & \
                hmac.compare_digest(password.encode(), settings.basic_auth_pass.encode())
        except (ValueError, UnicodeDecodeError):
            ok = False
    if ok:
        return None
    resp = jsonify(error="authentication required (HTTP basic auth)")
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = 'Basic realm="studio-al"'
    return resp
