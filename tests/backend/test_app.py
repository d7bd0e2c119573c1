"""Flask routes: validation (4xx JSON, never 500 HTML), setup, predict, webhook, auth."""
import base64
import json
import time

import pytest

from backend import training
from backend.app import create_app
from backend.settings import Settings
from tests.backend.conftest import RecordingRunner, SINGLE_CONFIG, FakeLabelStudio, make_tasks


SETUP = {"project": "1.1700000000", "schema": SINGLE_CONFIG, "hostname": "http://ls:8080",
         "access_token": "tok", "extra_params": None}


@pytest.fixture
def runner():
    return RecordingRunner()


@pytest.fixture
def app(settings, runner):
    return create_app(settings, runner=runner, client_factory=lambda u, k: FakeLabelStudio())


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, path, body, **kw):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **kw)


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json["status"] == "UP" and r.json["model_class"] == "StudioAL"


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook"])
@pytest.mark.parametrize("body", ["{not json", "[1, 2]", "3", "null", '"text"', b"\xff\xfe"])
def test_bad_or_non_object_json_is_400_json(client, path, body):
    r = post(client, path, body)
    assert r.status_code == 400 and r.is_json and "error" in r.json


@pytest.mark.parametrize("path,body,status,needle", [
    ("/setup", {"schema": SINGLE_CONFIG}, 400, "project"),
    ("/setup", {"project": "abc", "schema": SINGLE_CONFIG}, 400, "project"),
    ("/setup", {"project": 1, "schema": 5}, 400, "schema"),
    ("/setup", {"project": 1, "schema": SINGLE_CONFIG, "hostname": 3}, 400, "hostname"),
    ("/setup", {"project": 1, "schema": "<View/>"}, 422, "Choices"),
    ("/setup", {"project": True, "schema": SINGLE_CONFIG}, 400, "project"),
    ("/predict", {"project": "1.0"}, 400, "tasks"),
    ("/predict", {"project": "1.0", "tasks": "x"}, 400, "tasks"),
    ("/predict", {"project": "1.0", "tasks": [{"id": "7"}]}, 400, "tasks[0]"),
    ("/predict", {"project": "1.0", "tasks": [{"id": 1, "data": []}]}, 400, "data"),
    ("/predict", {"tasks": [{"id": 1}]}, 400, "project"),
    ("/predict", {"project": "9.0", "tasks": [{"id": 1}]}, 409, "not set up"),
    ("/webhook", {"project": {"id": 1}}, 400, "action"),
    ("/webhook", {"action": 5, "project": {"id": 1}}, 400, "action"),
    ("/webhook", {"action": "DROP_TABLES", "project": {"id": 1}}, 400, "unknown action"),
    ("/webhook", {"action": "ANNOTATION_CREATED"}, 400, "project"),
    ("/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": "x"}}, 400, "project"),
])
def test_missing_fields_and_wrong_types(client, path, body, status, needle):
    r = post(client, path, body)
    assert r.status_code == status and r.is_json and needle in r.json["error"]


def test_unknown_route_and_method_are_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.is_json
    r = client.get("/predict")
    assert r.status_code == 405 and r.is_json


def test_bug_gives_json_500_not_html(settings, runner):
    app = create_app(settings, runner=runner)

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("x")
    r = app.test_client().get("/boom")
    assert r.status_code == 500 and r.is_json and "ZeroDivisionError" in r.json["error"]


def test_setup_stores_config_pins_label_studio_and_returns_untrained(client, app, runner):
    r = post(client, "/setup", SETUP)
    assert r.status_code == 200 and r.json == {"model_version": "studio-al-untrained"}
    store = app.extensions["studio_al"]["store"]
    cfg = store.load_project(1)
    assert "access_token" not in cfg and "hostname" not in cfg  # never stored per project
    assert cfg["parsed"]["labels"] == ["pos", "neg"]
    pin = json.loads(open(f"{store.root}/instance.json").read())
    assert pin["url"] == "http://ls:8080" and pin["token"] == "tok"
    assert oct(__import__("os").stat(f"{store.root}/instance.json").st_mode & 0o777) == "0o600"
    assert app.extensions["studio_al"]["instance"].credentials() == ("http://ls:8080", "tok")
    assert runner.submits == [(1, "setup")]  # a new project: prove the connection, order it
    t = time.perf_counter()
    for _ in range(20):
        assert post(client, "/setup", SETUP).status_code == 200
    assert (time.perf_counter() - t) / 20 < 0.05  # cheap: LS calls it before every predict
    assert runner.submits == [(1, "setup")]


def test_setup_naming_another_host_is_refused_and_nothing_is_sent_there(client, app):
    contacted = []
    app.extensions["studio_al"]["instance"]  # pinned by the first setup below
    assert post(client, "/setup", SETUP).status_code == 200
    evil = {**SETUP, "project": "2.1", "hostname": "http://127.0.0.1:29999", "access_token": "x"}
    r = post(client, "/setup", evil)
    assert r.status_code == 403 and "bound to another Label Studio" in r.json["error"]
    assert app.extensions["studio_al"]["instance"].credentials() == ("http://ls:8080", "tok")
    assert app.extensions["studio_al"]["store"].load_project(2) is None
    for bad in ("javascript:alert(1)", "ftp://ls:8080", "http://user:pw@ls:8080", "ls:8080"):
        r = post(client, "/setup", {**SETUP, "hostname": bad})
        assert r.status_code in (400, 403), (bad, r.status_code)
    assert not contacted

def test_webhook_actions(client, app, runner):
    post(client, "/setup", SETUP)
    runner.submits.clear()
    store = app.extensions["studio_al"]["store"]
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "task": 2, "result": []},
            "task": {"id": 2, "data": {"text": "x"}}, "project": {"id": 1, "label_config": SINGLE_CONFIG}}
    r = post(client, "/webhook", body)
    assert r.status_code == 200 and r.json["status"] == "queued"
    assert post(client, "/webhook", {"action": "START_TRAINING", "project": {"id": 1}}).json["status"] == "queued"
    assert post(client, "/webhook", {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 5}],
                                     "project": {"id": 1}}).status_code == 200
    r = post(client, "/webhook", {"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert r.json["status"] == "recorded"  # e.g. our own PATCH of the model version
    new = SINGLE_CONFIG.replace('<Choice value="neg"/>', '<Choice value="neg"/><Choice value="x"/>')
    r = post(client, "/webhook", {"action": "PROJECT_UPDATED", "project": {"id": 1,
                                                                           "label_config": new}})
    assert r.json["status"] == "queued"  # the round re-reads the label config from Label Studio
    r = post(client, "/webhook", {"action": "LABEL_LINK_CREATED", "project": {"id": 1}})
    assert r.json["status"] == "ignored"
    assert runner.submits == [(1, "ANNOTATION_CREATED"), (1, "START_TRAINING"),
                              (1, "ANNOTATIONS_DELETED"), (1, "PROJECT_UPDATED")]
    events = store.events(1)
    assert [e["action"] for e in events] == ["ANNOTATION_CREATED", "START_TRAINING",
                                             "ANNOTATIONS_DELETED", "PROJECT_UPDATED",
                                             "PROJECT_UPDATED", "LABEL_LINK_CREATED"]
    assert [e.get("config_changed") for e in events[3:5]] == [False, True]
    assert events[0]["annotation"] == {"id": 5, "task": 2} and events[0]["task_id"] == 2
    assert events[2]["annotation_ids"] == [5]
    assert "result" not in json.dumps(events) and "label_config" not in json.dumps(events)


def test_webhook_is_durable_before_ack_and_fast(client, app):
    post(client, "/setup", SETUP)
    store = app.extensions["studio_al"]["store"]
    body = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1, "task": 1}, "project": {"id": 1}}
    t = time.perf_counter()
    for i in range(20):
        assert post(client, "/webhook", body).status_code == 200
        assert store.last_event_seq(1) == i + 1
    assert (time.perf_counter() - t) / 20 < 0.1  # LS times webhooks out after 1 s
    from backend.store import Store
    assert len(Store(store.root).events(1)) == 20


def test_webhook_for_unknown_project_stores_nothing(client, app, runner):
    r = post(client, "/webhook", {"action": "ANNOTATION_CREATED", "project": {"id": 4}})
    assert r.status_code == 200 and r.json["status"] == "ignored" and runner.submits == []
    assert app.extensions["studio_al"]["store"].projects() == []


def _trained(app, n_labeled=4):
    """Train project 1 through run_round with a fake LS; returns (ls, version)."""
    ext = app.extensions["studio_al"]
    ls = FakeLabelStudio(make_tasks(["good great", "great fun", "bad awful", "awful boring",
                                     "great", "awful", "so so"]))
    ls.connect(ext["store"], 1, SINGLE_CONFIG)
    for tid, lab in [(1, "pos"), (2, "pos"), (3, "neg"), (4, "neg")][:n_labeled]:
        ls.annotate(tid, [lab])
    rec = training.run_round(1, ext["settings"], ext["store"], ls)
    assert rec["status"] == "ok"
    return ls, rec["version"]


def test_predict_ranked_unranked_and_no_model(client, app):
    post(client, "/setup", SETUP)
    tasks = [{"id": 6, "data": {"text": "awful"}}, {"id": 1, "data": {"text": "good great"}},
             {"id": 50, "data": {"text": "great great"}}, {"id": 51, "data": {}}]
    r = post(client, "/predict", {"project": "1.17", "tasks": tasks})
    assert r.status_code == 200
    assert r.json["results"] == [{"result": [], "score": 1.0, "model_version": "studio-al-untrained"}] * 4

    ls, version = _trained(app)
    assert post(client, "/setup", SETUP).json["model_version"] == version
    res = post(client, "/predict", {"project": "1.17", "tasks": tasks}).json["results"]
    assert len(res) == 4 and all(x["model_version"] == version for x in res)
    pushed = ls.current_predictions()
    # ranked (unlabeled) task: exactly what was pushed to Label Studio
    assert res[0]["score"] == pushed[6]["score"] and res[0]["result"] == pushed[6]["result"]
    assert res[0]["result"][0]["value"]["choices"] == ["neg"]
    # labeled / new tasks: live prediction, low priority
    assert res[1]["score"] == 1.0 and res[1]["result"][0]["value"]["choices"] == ["pos"]
    assert res[2]["score"] == 1.0 and res[2]["result"][0]["value"]["choices"] == ["pos"]
    assert 0.5 < res[2]["result"][0]["score"] <= 1.0
    # task without the text field: empty result
    assert res[3]["result"] == [] and res[3]["score"] == 1.0
    # the model is loaded once per version
    store = app.extensions["studio_al"]["store"]
    assert store.load_model(1, version) is store.load_model(1, version)


def test_versions_and_status(client, app):
    post(client, "/setup", SETUP)
    _, version = _trained(app)
    assert client.get("/versions?project=1").json == {"versions": [version], "current": version}
    assert client.get("/versions").json["versions"] == [version]
    st = client.get("/status?project=1").json
    assert st["model_version"] == version and st["labeled"] == 4 and st["unlabeled"] == 3
    assert st["query_strategy"] == "breaking_ties" and st["job"]["state"] == "idle"
    assert len(st["queued_tasks"]) == 3 and st["last_training"]["status"] == "ok"
    assert st["stopping"]["criterion"] == "kappa_average"
    assert client.get("/status").json["projects"]["1"]["model_version"] == version
    assert client.get("/status?project=77").status_code == 404
    assert client.get("/status?project=x").status_code == 400


def test_basic_auth(tmp_path):
    s = Settings.from_env({"MODEL_DIR": str(tmp_path), "BASIC_AUTH_USER": "u",
                           "BASIC_AUTH_PASS": "p:w"}, validate_components=False)
    c = create_app(s, runner=RecordingRunner(),
                   client_factory=lambda u, k: FakeLabelStudio()).test_client()
    assert c.get("/health").status_code == 200
    r = post(c, "/setup", SETUP)
    assert r.status_code == 401 and r.is_json and "Basic" in r.headers["WWW-Authenticate"]
    bad = {"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}
    assert post(c, "/setup", SETUP, headers=bad).status_code == 401
    junk = {"Authorization": "Basic !!!notbase64"}
    assert post(c, "/setup", SETUP, headers=junk).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"u:p:w").decode()}
    assert post(c, "/setup", SETUP, headers=good).status_code == 200
    assert c.get("/status", headers=good).status_code == 200


def test_end_to_end_with_thread_runner_and_restart_recovery(settings):
    """Real ThreadJobRunner: webhook -> background round -> predictions; then a restart
    with an unprocessed event triggers a recovery round."""
    ls = FakeLabelStudio(make_tasks(["good great", "bad awful", "great", "awful"]))
    app = create_app(settings, client_factory=lambda url, key: ls)
    ls.connect(app.extensions["studio_al"]["store"], 1, SINGLE_CONFIG)
    c = app.test_client()
    post(c, "/setup", SETUP)
    ls.annotate(1, ["pos"])
    ls.annotate(2, ["neg"])
    r = post(c, "/webhook", {"action": "START_TRAINING", "project": {"id": 1}})
    assert r.status_code == 200
    runner = app.extensions["studio_al"]["runner"]
    deadline = time.monotonic() + 30
    while not (runner.idle() and runner.status(1)["runs"] >= 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.status(1)["state"] == "idle", runner.status(1)
    assert sorted(ls.current_predictions()) == [3, 4]
    assert ls.webhooks[1][0]["headers"]["X-Studio-AL-Signature"]  # the subscription is signed
    runner.shutdown(5)

    # an event recorded but never trained (process died before the round) -> recovery
    store = app.extensions["studio_al"]["store"]
    store.append_event(1, {"action": "ANNOTATION_CREATED", "project": 1, "handled": "train"})
    rec_runner = RecordingRunner()
    restarted = create_app(settings, runner=rec_runner, client_factory=lambda url, key: ls)
    restarted.extensions["studio_al"]["service"].recover()  # what backend.wsgi does
    assert rec_runner.submits == [(1, "recovery")]
    rec_runner2 = RecordingRunner()
    training.run_round(1, settings, store, ls)
    restarted = create_app(settings, runner=rec_runner2, client_factory=lambda url, key: ls)
    restarted.extensions["studio_al"]["service"].recover()
    assert rec_runner2.submits == []


def test_missing_credentials_fail_the_round_clearly(settings):
    app = create_app(settings, runner=RecordingRunner(), client_factory=lambda u, k: FakeLabelStudio())
    post(app.test_client(), "/setup", {**SETUP, "hostname": None, "access_token": None})
    rec = app.extensions["studio_al"]["job"](1, "test")
    assert rec["status"] == "failed" and "LABEL_STUDIO_URL" in rec["error"]


def test_root_points_to_the_dashboard_health_and_the_api_description(client):
    r = client.get("/")
    assert r.status_code == 200 and r.json == {"service": "studio-al", "dashboard": "/dashboard",
                                               "health": "/health", "openapi": "/openapi.json"}
    for path in ("/dashboard", "/health", "/openapi.json"):  # every link answers
        assert client.get(r.json[path.strip("/").split(".")[0]]).status_code == 200, path
