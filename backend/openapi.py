"""OpenAPI 3.0 description of the backend's routes, served at ``GET /openapi.json``.

The request schemas state what the routes accept (Label Studio's payloads); anything else is
answered with a 4xx JSON ``{"error": "..."}`` — the fuzz test (``tests/reliability/
test_fuzz_openapi.py``) drives every operation with schemathesis and requires zero 5xx.
"""
from __future__ import annotations

import copy
from typing import Any

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "invalid request (the message names the field)",
            401: "basic auth required (when BASIC_AUTH_USER/PASS are set), or a webhook "
                 "without a valid X-Studio-AL-Signature for a project whose subscription is "
                 "signed",
            403: "the hostname is not the Label Studio this backend is bound to",
            404: "unknown project", 409: "project not set up (call /setup first)",
            413: "request body larger than MAX_REQUEST_MB",
            415: "the body is not Content-Type: application/json",
            422: "unusable label config (no Choices/Text control), or a hostname/token that "
                 "Label Studio does not accept or that cannot be reached",
            503: "the event could not be written (disk full): not acknowledged"}
    return {str(c): {"description": text[c], **_json(ERROR)} for c in codes}


PROJECT_REF = {"oneOf": [
    {"type": "integer", "minimum": 1},
    {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$",
     "description": "Label Studio's \"<id>.<timestamp>\""},
    {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
     "required": ["id"]},
]}

TASK = {"type": "object", "required": ["id"], "properties": {
    "id": {"type": "integer"},
    "data": {"type": "object", "additionalProperties": True},
    "project": PROJECT_REF,
}}

RESULT_ITEM = {"type": "object", "properties": {
    "from_name": {"type": "string"}, "to_name": {"type": "string"},
    "type": {"type": "string", "enum": ["choices"]},
    "value": {"type": "object", "properties": {
        "choices": {"type": "array", "items": {"type": "string"}}}},
    "score": {"type": "number", "nullable": True},
}}

PREDICTION = {"type": "object", "required": ["result", "score", "model_version"], "properties": {
    "result": {"type": "array", "items": RESULT_ITEM},
    "score": {"type": "number", "description": "priority: lowest is served first"},
    "model_version": {"type": "string"},
}}

WEBHOOK_ACTIONS = [
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
    "TASKS_CREATED", "TASKS_DELETED", "START_TRAINING", "PROJECT_UPDATED", "PROJECT_CREATED",
    "PROJECT_DELETED", "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED",
    "REVIEW_CREATED", "REVIEW_UPDATED", "REVIEWS_DELETED",
]


ANY_OBJECT = {"type": "object", "additionalProperties": True}


def _json_body(schema: dict) -> dict:
    return {"required": True, **_json(schema)}


def _object(required: list[str], properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _query_project() -> list[dict]:
    return [{"name": "project", "in": "query", "required": False, "schema": {"type": "string"}}]


def _index() -> dict:
    return {"get": {
        "operationId": "index", "summary": "Links: the dashboard, /health, this document",
        "responses": {"200": {"description": "links", **_json(_object(
            ["service", "dashboard", "health", "openapi"],
            {k: {"type": "string"} for k in ("service", "dashboard", "health", "openapi")}))}}}}


def _health() -> dict:
    return {"get": {
        "operationId": "health", "security": [],
        "summary": "Liveness; degraded=true while Redis is unreachable",
        "responses": {"200": {"description": "up", **_json(_object(["status", "model_class"], {
            "status": {"type": "string", "enum": ["UP"]},
            "model_class": {"type": "string"},
            "mode": {"type": "string", "enum": ["embedded", "redis"]},
            "degraded": {"type": "boolean"},
            "redis": {"type": "string", "enum": ["ok", "down"]}}))}}}}


def _setup() -> dict:
    return {"post": {
        "operationId": "setup", "summary": "Store a project's label config",
        "requestBody": _json_body(_object(["project", "schema"], {
            "project": PROJECT_REF, "schema": {"type": "string"},
            "hostname": {"type": "string"}, "access_token": {"type": "string"},
            "extra_params": {"nullable": True}})),
        "responses": {"200": {"description": "the serving model version", **_json(_object(
            ["model_version"], {"model_version": {"type": "string"}}))},
            **_errors(400, 401, 403, 413, 415, 422)}}}


def _predict() -> dict:
    return {"post": {
        "operationId": "predict", "summary": "One prediction per task, same order",
        "requestBody": _json_body(_object(["tasks"], {
            "tasks": {"type": "array", "items": TASK},
            "project": PROJECT_REF, "label_config": {"type": "string"},
            "params": ANY_OBJECT})),
        "responses": {"200": {"description": "predictions", **_json(_object(
            ["results", "model_version"], {
                "results": {"type": "array", "items": PREDICTION},
                "model_version": {"type": "string"}}))},
            **_errors(400, 401, 409, 413, 415, 422)}}}


def _webhook() -> dict:
    return {"post": {
        "operationId": "webhook",
        "summary": "Label Studio events (hints: ids to re-read); recorded durably, "
                   "retrains queued",
        "parameters": [{"name": "X-Studio-AL-Signature", "in": "header",
                        "required": False, "schema": {"type": "string"},
                        "description": "set by Label Studio's subscription once the "
                                       "backend signed it"}],
        "requestBody": _json_body(_object(["action"], {
            "action": {"type": "string", "enum": WEBHOOK_ACTIONS},
            "project": PROJECT_REF,
            "annotation": ANY_OBJECT, "task": ANY_OBJECT,
            "annotations": {"type": "array", "items": ANY_OBJECT},
            "tasks": {"type": "array", "items": ANY_OBJECT}})),
        "responses": {"200": {"description": "acknowledged", **_json(_object(
            ["status", "action"], {
                "status": {"type": "string", "enum": [
                    "queued", "running", "deferred", "recorded", "ignored"]},
                "action": {"type": "string"}, "detail": {"type": "string"}}))},
            **_errors(400, 401, 413, 415, 503)}}}


def _versions() -> dict:
    return {"get": {
        "operationId": "versions", "summary": "Model versions on disk",
        "parameters": _query_project(),
        "responses": {"200": {"description": "versions", **_json(_object(["versions"], {
            "versions": {"type": "array", "items": {"type": "string"}},
            "current": {"type": "string", "nullable": True}}))},
            **_errors(400, 401)}}}


def _status() -> dict:
    return {"get": {
        "operationId": "status",
        "summary": "Per project: version, counts, last round, job state and ETA",
        "parameters": _query_project(),
        "responses": {"200": {"description": "status", **_json(ANY_OBJECT)},
                      **_errors(400, 401, 404)}}}


def _openapi() -> dict:
    return {"get": {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.0", **_json(ANY_OBJECT)},
                      **_errors(401)}}}


#: Each route's path item, in the document's order.
PATHS = {"/": _index, "/health": _health, "/setup": _setup, "/predict": _predict, "/webhook": _webhook,
         "/versions": _versions, "/status": _status, "/openapi.json": _openapi}


def spec() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict: changing it leaves the next call's alone)."""
    return copy.deepcopy({
        "openapi": "3.0.3",
        "info": {"title": "studio-al ML backend", "version": "1.0",
                 "description": "Label Studio ML backend protocol plus status routes. Basic "
                                "auth (when configured) on every route but /health."},
        "components": {
            "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic"}},
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
        },
        "security": [{"basicAuth": []}, {}],
        "paths": {path: item() for path, item in PATHS.items()},
    })
