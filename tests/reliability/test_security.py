"""Security: basic auth on every route but /health, request size limits (413 JSON), no
secrets in the logs of the web process and the worker, and the OpenAPI description."""
from __future__ import annotations

import base64
import json
import socket

import pytest
import requests

from backend.app import create_app
from backend.settings import Settings
from tests.backend.conftest import RecordingRunner
from tests.reliability.harness import (Backend, PrivateRedis, base_env, texts, wait_for,
                                       wait_workers, worker)


def _app(tmp_path, **env):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  **env}, validate_components=False)
    return create_app(settings, runner=RecordingRunner())


def _auth(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_auth_covers_every_route_but_health(tmp_path):
    app = _app(tmp_path, BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="pw-123")
    c = app.test_client()
    rules = [(r.rule, m) for r in app.url_map.iter_rules() if r.endpoint != "static"
             for m in sorted(r.methods - {"HEAD", "OPTIONS"})]
    assert {rule for rule, _ in rules} >= {"/health", "/setup", "/predict", "/webhook",
                                           "/versions", "/status", "/openapi.json"}
    for rule, method in rules:
        for headers in ({}, _auth("ls", "wrong"), _auth("other", "pw-123"),
                        {"Authorization": "Basic !!notbase64"}, {"Authorization": "Token pw-123"}):
            r = c.open(rule, method=method, headers=headers, json={})
            if rule == "/health":
                assert r.status_code == 200
            else:
                assert r.status_code == 401, (rule, method, headers, r.status_code)
                assert r.is_json and "authentication" in r.get_json()["error"]
                assert r.headers["WWW-Authenticate"].startswith("Basic")
        if rule.startswith("/dashboard"):  # HTML pages, tested with the dashboard
            continue
        r = c.open(rule, method=method, headers=_auth("ls", "pw-123"), json={})
        assert r.status_code != 401 and r.status_code < 500 and r.is_json, (rule, r.status_code)


def test_request_size_limit_is_413_json(tmp_path):
    c = _app(tmp_path, MAX_REQUEST_MB="1").test_client()
    big = {"action": "START_TRAINING", "project": 1, "pad": "x" * (1024 * 1024 + 10)}
    r = c.post("/webhook", data=json.dumps(big), content_type="application/json")
    assert r.status_code == 413 and r.is_json and "Too Large" in r.get_json()["error"]
    r = c.post("/webhook", json={"action": "START_TRAINING", "project": 1, "pad": "x" * 1000})
    assert r.status_code == 200


def test_request_size_limit_on_gunicorn_incl_chunked(tmp_path):
    backend = Backend(base_env(MODEL_DIR=str(tmp_path / "store"), MAX_REQUEST_MB="1"),
                      tmp_path / "web.log", threads=2)
    try:
        body = json.dumps({"tasks": [{"id": 1, "data": {"text": "x" * (2 * 1024 * 1024)}}],
                           "project": 1}).encode()
        r = requests.post(backend.url + "/predict", data=body, timeout=30,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"].startswith("Request Entity Too Large")

        def chunks():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]
        r = requests.post(backend.url + "/predict", data=chunks(), timeout=30,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.headers["Content-Type"] == "application/json"
        # Garbage on the wire is a 4xx from gunicorn or JSON from us, never a 5xx.
        with socket.create_connection(("127.0.0.1", backend.port), timeout=5) as s:
            s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{\"a\":")
            assert int(s.recv(200).split()[1]) < 500
    finally:
        backend.proc.stop()


def test_no_secrets_in_logs(tmp_path, fake_ls):
    """DEBUG logs of the web process and the worker, through a good round, a failing round
    (Label Studio 500s), a rejected login and a /setup carrying a token, contain none of the
    secrets; neither do /status and /openapi.json."""
    redis_pw = "redis-Secret-" + fake_ls.token[:8]
    rds = PrivateRedis(tmp_path, password=redis_pw).start()
    rows = texts(60)
    fake_ls.add_tasks(3, [t for t, _ in rows])
    secrets_ = {"LABEL_STUDIO_API_KEY": fake_ls.token, "BASIC_AUTH_PASS": "basic-Secret-77x",
                "redis": redis_pw, "setup_token": "setup-Secret-99y"}
    env = base_env(MODEL_DIR=str(tmp_path / "store"), REDIS_URL=rds.url,
                   REDIS_QUEUE="studio-al", LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token, BASIC_AUTH_USER="ls",
                   BASIC_AUTH_PASS=secrets_["BASIC_AUTH_PASS"], LOG_LEVEL="DEBUG",
                   LABEL_STUDIO_TIMEOUT="1", LABEL_STUDIO_RETRIES="1")
    backend = Backend(env, tmp_path / "web.log")
    w = worker(env, tmp_path / "worker.log")
    try:
        wait_workers(rds.url, "studio-al")
        backend.connect(fake_ls, 3)
        assert backend.post("/setup", {"project": 3, "schema": _schema(),
                                       "hostname": fake_ls.url,
                                       "access_token": secrets_["setup_token"]}).ok
        fake_ls.annotate(3, [{"task": t, "choice": rows[t - 1][1]} for t in range(1, 11)])
        assert backend.post("/webhook", {"action": "START_TRAINING", "project": 3}).ok
        wait_for(lambda: backend.job(3)["state"] == "idle", 60, "a good round")
        fake_ls.fault(match="/api/predictions", method="POST", mode="500", times=2)
        assert backend.post("/webhook", {"action": "START_TRAINING", "project": 3}).ok
        wait_for(lambda: backend.job(3)["state"] == "failed", 60, "a failing round")
        assert requests.get(backend.url + "/status", auth=("ls", "bad-guess"),
                            timeout=10).status_code == 401
        exposed = backend.get("/status").text + backend.get("/openapi.json").text + \
            backend.get("/status", project=3).text
        logs = backend.proc.log() + w.log()
        assert "event=round" in logs and "HTTP 500" in logs  # the logs did record the rounds
        for name, value in secrets_.items():
            assert value not in logs, f"{name} leaked into the logs"
            assert value not in exposed, f"{name} leaked into /status or /openapi.json"
    finally:
        w.stop()
        backend.proc.stop()
        rds.stop()


def _schema():
    from tests.reliability.harness import LABEL_CONFIG
    return LABEL_CONFIG


def test_openapi_describes_every_route(tmp_path):
    app = _app(tmp_path)
    spec = app.test_client().get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    routes = {(r.rule, m.lower()) for r in app.url_map.iter_rules() if r.endpoint != "static"
              for m in r.methods - {"HEAD", "OPTIONS"}}
    described = {(path, m) for path, ops in spec["paths"].items() for m in ops}
    api = {(rule, m) for rule, m in routes if not rule.startswith("/dashboard")}  # HTML pages
    assert api <= described and described <= routes
    assert spec["paths"]["/health"]["get"]["security"] == []


@pytest.mark.parametrize("route", ["/status", "/versions"])
def test_status_routes_reject_bad_project_param(tmp_path, route):
    c = _app(tmp_path).test_client()
    for bad in ("abc", "-1", "0", "1e3", "", " ", "1;DROP", "%00"):
        r = c.get(route, query_string={"project": bad})
        assert r.status_code == 400 and r.is_json, (bad, r.status_code)
