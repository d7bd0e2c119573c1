"""Only Label Studio steers the backend (unit level; the real-process versions of these
attacks are in tests/reliability/test_trust.py): connection proof, label config from Label
Studio, signed webhooks, strict input parsing."""
import base64
import json

import pytest

from backend import training
from backend.app import create_app
from backend.instance import CHALLENGE_KEY, Connection
from backend.settings import Settings
from backend.store import Store
from backend.webhooks import SIGNATURE_HEADER, signature
from tests.backend.conftest import RecordingRunner, MULTI_CONFIG, SINGLE_CONFIG, FakeLabelStudio, make_tasks

SETUP = {"project": "1.1700000000", "schema": SINGLE_CONFIG, "hostname": "http://ls:8080",
         "access_token": "tok"}


def post(c, path, body, **kw):
    return c.post(path, data=json.dumps(body), content_type="application/json", **kw)


def _store_with_setup(settings, config=SINGLE_CONFIG):
    store = Store(settings.model_dir)
    store.save_project(1, {"label_config": config, "parsed": {}})
    return store


def test_a_project_whose_ml_backend_is_not_this_one_is_never_written(settings):
    store = _store_with_setup(settings)
    ls = FakeLabelStudio(make_tasks(["good", "bad", "so so"]))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls._setup = None  # Label Studio's /setup calls go to ANOTHER backend: no nonce reaches us
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "failed" and rec["error"].startswith("NotConnected")
    assert rec["again"] is True and rec["pace_s"] == 5.0  # Label Studio may still be saving it
    assert ls.predictions == [] and "update_project" not in ls.calls
    assert ls.ml_backends[1]["extra_params"] is None  # the challenge was taken back
    assert [training.run_round(1, settings, store, ls)["pace_s"] for _ in range(3)] == \
        [10.0, 20.0, 0.0]  # three retries, then only a new /setup or webhook tries again


def test_the_label_config_comes_from_label_studio_not_from_setup(settings):
    store = _store_with_setup(settings, MULTI_CONFIG)  # a forged /setup schema
    ls = FakeLabelStudio(make_tasks(["good great", "bad awful", "great", "awful"]))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(2, ["neg"])
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["n_labeled"] == 2
    assert {p["result"][0]["value"]["choices"][0] for p in ls.predictions} <= {"pos", "neg"}
    conn = Connection.load(store, 1)
    assert conn.ml_backend == 41 and conn.label_config == SINGLE_CONFIG and conn.webhook_signed
    secret = open(f"{store.root}/secret", "rb").read().strip()
    assert ls.webhooks[1][0]["headers"] == {SIGNATURE_HEADER: signature(secret, 1)}
    # the next round does not prove it again (re-checked every RECHECK_S)
    ls.calls.clear()
    training.run_round(1, settings, store, ls)
    assert "update_ml_backend" not in ls.calls and "list_ml_backends" not in ls.calls


def test_challenge_needs_a_fresh_nonce(settings):
    store = _store_with_setup(settings)
    ls = FakeLabelStudio(make_tasks(["good", "bad"]))
    ls.connect(store, 1, SINGLE_CONFIG)
    seen = []
    hook = ls._setup
    ls._setup = lambda pid, extra: seen.append(extra) or hook(pid, extra)
    training.run_round(1, settings, store, ls)
    nonces = [e[CHALLENGE_KEY] for e in seen if e]
    assert len(nonces) == 1 and len(nonces[0]) == 32


def test_project_deleted_in_label_studio_is_forgotten(settings):
    app = create_app(settings, runner=RecordingRunner(), client_factory=lambda u, k: ls)
    store = app.extensions["studio_al"]["store"]
    ls = FakeLabelStudio(make_tasks(["good", "bad"]))
    ls.connect(store, 1, SINGLE_CONFIG)
    c = app.test_client()
    post(c, "/setup", SETUP)
    assert training.run_round(1, settings, store, ls)["status"] == "ok"
    headers = ls.webhooks[1][0]["headers"]
    assert post(c, "/webhook", {"action": "PROJECT_DELETED", "project": {"id": 1}},
                headers=headers).status_code == 200
    ls.deleted, ls.ml_backends = True, {}
    assert training.run_round(1, settings, store, ls)["status"] == "deleted"
    assert store.projects() == [] and c.get("/status?project=1").status_code == 404


@pytest.fixture
def connected(settings):
    """An app whose project 1 is proved connected (its subscription signed)."""
    ls = FakeLabelStudio(make_tasks(["good", "bad"]))
    runner = RecordingRunner()
    app = create_app(settings, runner=runner, client_factory=lambda u, k: ls)
    store = app.extensions["studio_al"]["store"]
    ls.connect(store, 1, SINGLE_CONFIG)
    c = app.test_client()
    post(c, "/setup", SETUP)
    assert training.run_round(1, settings, store, ls)["status"] == "ok"
    runner.submits.clear()
    return app, c, ls, runner


def test_signed_project_refuses_unsigned_and_forged_webhooks(connected):
    app, c, ls, runner = connected
    good = ls.webhooks[1][0]["headers"]
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 1},
            "annotation": {"id": 9, "task": 1}}
    r = post(c, "/webhook", body)
    assert r.status_code == 401 and SIGNATURE_HEADER in r.json["error"]
    assert post(c, "/webhook", body, headers={SIGNATURE_HEADER: "0" * 64}).status_code == 401
    assert post(c, "/webhook", {**body, "project": {"id": 2}}, headers=good).status_code == 401
    assert post(c, "/webhook", body, headers=good).json["status"] == "queued"
    # START_TRAINING comes from Label Studio's ML API without the subscription's headers
    assert post(c, "/webhook", {"action": "START_TRAINING", "project": {"id": 1}}).status_code == 200
    assert runner.submits == [(1, "ANNOTATION_CREATED"), (1, "START_TRAINING")]
    assert [e["signed"] for e in app.extensions["studio_al"]["store"].events(1)] == [True, False]


def test_signed_webhooks_pass_basic_auth(tmp_path):
    s = Settings.from_env({"MODEL_DIR": str(tmp_path), "BASIC_AUTH_USER": "u",
                           "BASIC_AUTH_PASS": "pw", "LOG_LEVEL": "WARNING"},
                          validate_components=False)
    ls = FakeLabelStudio(make_tasks(["good", "bad"]))
    app = create_app(s, runner=RecordingRunner(), client_factory=lambda u, k: ls)
    store = app.extensions["studio_al"]["store"]
    ls.connect(store, 1, SINGLE_CONFIG)
    c = app.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:pw").decode()}
    assert post(c, "/setup", SETUP, headers=auth).status_code == 200
    training.run_round(1, s, store, ls)
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 1}}
    assert post(c, "/webhook", body).status_code == 401  # neither
    assert post(c, "/webhook", body, headers=ls.webhooks[1][0]["headers"]).status_code == 200
    assert post(c, "/webhook", body, headers=auth).status_code == 200  # Start Training's way
    assert c.get("/status", headers={SIGNATURE_HEADER: "x"}).status_code == 401


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook"])
def test_only_json_bodies_are_read(connected, path):
    _, c, _, _ = connected
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        r = c.post(path, data=json.dumps({"action": "START_TRAINING", "project": 1,
                                          "schema": SINGLE_CONFIG, "tasks": []}),
                   content_type=ctype)
        assert r.status_code == 415 and "application/json" in r.json["error"]


@pytest.mark.parametrize("query", ["%C2%B2", "1" * 5000, "１", "1e3", "-1", "0x10"])
def test_odd_project_ids_are_400(connected, query):
    _, c, _, _ = connected
    r = c.get(f"/status?project={query}")
    assert r.status_code == 400 and r.is_json


def test_deeply_nested_body_is_400(connected):
    _, c, _, _ = connected
    for path in ("/setup", "/predict", "/webhook"):
        r = c.post(path, data="[" * 100000, content_type="application/json")
        assert r.status_code == 400 and r.is_json


def test_a_flood_of_setups_for_junk_projects_is_bounded(settings, monkeypatch):
    from backend import service
    monkeypatch.setattr(service, "MAX_UNVERIFIED", 10)
    app = create_app(settings, runner=RecordingRunner(),
                     client_factory=lambda u, k: FakeLabelStudio())
    c = app.test_client()
    for pid in range(100, 140):
        assert post(c, "/setup", {**SETUP, "project": pid}).status_code == 200
    assert len(app.extensions["studio_al"]["store"].projects()) <= 10


def test_status_and_dashboard_never_show_credentials(tmp_path):
    s = Settings.from_env({"MODEL_DIR": str(tmp_path), "LOG_LEVEL": "WARNING",
                           "LABEL_STUDIO_URL": "http://admin:hunter2@ls:8080",
                           "LABEL_STUDIO_API_KEY": "k3y-secret"}, validate_components=False)
    ls = FakeLabelStudio(make_tasks(["good", "bad"]))
    app = create_app(s, runner=RecordingRunner(), client_factory=lambda u, k: ls)
    c = app.test_client()
    post(c, "/setup", {**SETUP, "hostname": "javascript:alert(1)//"})
    text = c.get("/status").get_data(as_text=True) + c.get("/status?project=1").get_data(
        as_text=True) + c.get("/dashboard").get_data(as_text=True)
    assert "hunter2" not in text and "k3y-secret" not in text and "javascript:" not in text
