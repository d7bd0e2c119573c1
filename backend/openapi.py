"""OpenAPI 3.0 description of the backend's routes, served at ``GET /openapi.json``.

The request schemas state what the routes accept (Label Studio's payloads); anything else is
answered with a 4xx JSON ``{"error": "..."}`` — the fuzz test (``tests/reliability/
test_fuzz_openapi.py``) drives every operation with schemathesis and requires zero 5xx.
"""
from __future__ import annotations

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


def spec() -> dict[str, Any]:
    """The OpenAPI document (a fresh dict)."""
    any_object = {"type": "object", "additionalProperties": True}
    return {
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
        "paths": {
            "/health": {"get": {
                "operationId": "health", "security": [],
                "summary": "Liveness; degraded=true while Redis is unreachable",
                "responses": {"200": {"description": "up", **_json({
                    "type": "object", "required": ["status", "model_class"], "properties": {
                        "status": {"type": "string", "enum": ["UP"]},
                        "model_class": {"type": "string"},
                        "mode": {"type": "string", "enum": ["embedded", "redis"]},
                        "degraded": {"type": "boolean"},
                        "redis": {"type": "string", "enum": ["ok", "down"]}}})}}}},
            "/setup": {"post": {
                "operationId": "setup", "summary": "Store a project's label config",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["project", "schema"], "properties": {
                        "project": PROJECT_REF, "schema": {"type": "string"},
                        "hostname": {"type": "string"}, "access_token": {"type": "string"},
                        "extra_params": {"nullable": True}}})},
                "responses": {"200": {"description": "the serving model version", **_json({
                    "type": "object", "required": ["model_version"],
                    "properties": {"model_version": {"type": "string"}}})},
                    **_errors(400, 401, 403, 413, 415, 422)}}},
            "/predict": {"post": {
                "operationId": "predict", "summary": "One prediction per task, same order",
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["tasks"], "properties": {
                        "tasks": {"type": "array", "items": TASK},
                        "project": PROJECT_REF, "label_config": {"type": "string"},
                        "params": any_object}})},
                "responses": {"200": {"description": "predictions", **_json({
                    "type": "object", "required": ["results", "model_version"], "properties": {
                        "results": {"type": "array", "items": PREDICTION},
                        "model_version": {"type": "string"}}})},
                    **_errors(400, 401, 409, 413, 415, 422)}}},
            "/webhook": {"post": {
                "operationId": "webhook",
                "summary": "Label Studio events (hints: ids to re-read); recorded durably, "
                           "retrains queued",
                "parameters": [{"name": "X-Studio-AL-Signature", "in": "header",
                                "required": False, "schema": {"type": "string"},
                                "description": "set by Label Studio's subscription once the "
                                               "backend signed it"}],
                "requestBody": {"required": True, **_json({
                    "type": "object", "required": ["action"], "properties": {
                        "action": {"type": "string", "enum": WEBHOOK_ACTIONS},
                        "project": PROJECT_REF,
                        "annotation": any_object, "task": any_object,
                        "annotations": {"type": "array", "items": any_object},
                        "tasks": {"type": "array", "items": any_object}}})},
                "responses": {"200": {"description": "acknowledged", **_json({
                    "type": "object", "required": ["status", "action"], "properties": {
                        "status": {"type": "string", "enum": [
                            "queued", "running", "deferred", "recorded", "ignored"]},
                        "action": {"type": "string"}, "detail": {"type": "string"}}})},
                    **_errors(400, 401, 413, 415, 503)}}},
            "/versions": {"get": {
                "operationId": "versions", "summary": "Model versions on disk",
                "parameters": [{"name": "project", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "versions", **_json({
                    "type": "object", "required": ["versions"], "properties": {
                        "versions": {"type": "array", "items": {"type": "string"}},
                        "current": {"type": "string", "nullable": True}}})},
                    **_errors(400, 401)}}},
            "/status": {"get": {
                "operationId": "status",
                "summary": "Per project: version, counts, last round, job state and ETA",
                "parameters": [{"name": "project", "in": "query", "required": False,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "status", **_json(any_object)},
                              **_errors(400, 401, 404)}}},
            "/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.0", **_json(any_object)},
                              **_errors(401)}}},
        },
    }
