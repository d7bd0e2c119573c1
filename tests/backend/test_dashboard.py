"""Dashboard routes (/dashboard, /dashboard/<project>), the per-round metrics behind them and
the /status twin: status codes, auth, a project without a model, a multi-label project."""
import base64
import json
import re

import numpy as np
import pytest

from backend import metrics, plots, project_status, training
from backend.app import create_app
from backend.jobs import JobRunner
from backend.settings import Settings
from backend.store import Store
from tests.backend.conftest import MULTI_CONFIG, SINGLE_CONFIG, FakeLabelStudio, make_tasks

POS = ["good great fine", "great nice good", "nice fine lovely", "lovely good nice",
       "fine great lovely", "good nice great", "superb good fine", "great superb nice"]
NEG = ["bad awful poor", "awful terrible bad", "poor bad nasty", "nasty awful poor",
       "terrible poor bad", "bad nasty awful", "horrid bad poor", "awful horrid nasty"]


class SyncRunner(JobRunner):
    """Runs the round inside submit (deterministic tests)."""

    def __init__(self):
        self.job = None

    def submit(self, project_id, reason):
        self.job(project_id, reason)
        return "idle"

    def status(self, project_id):
        return {"state": "idle", "runs": 0}

    def shutdown(self, timeout=None):
        pass


def post(client, path, body, **kw):
    return client.post(path, data=json.dumps(body), content_type="application/json", **kw)


def make_app(settings, ls, pid=1, config=SINGLE_CONFIG):
    runner = SyncRunner()
    app = create_app(settings, runner=runner, client_factory=lambda u, k: ls)
    runner.job = app.extensions["studio_al"]["job"]
    ls.connect(app.extensions["studio_al"]["store"], pid, config)
    return app


def announce(c, pid, ls, task_ids):
    """The ANNOTATIONS_CREATED webhook Label Studio sends for these tasks' last annotations."""
    annotations = [{"id": t["annotations"][-1]["id"], "task": t["id"]}
                   for t in ls.tasks if t["id"] in set(task_ids)]
    return post(c, "/webhook", {"action": "ANNOTATIONS_CREATED", "project": {"id": pid},
                                "annotations": annotations},
                headers=ls.webhooks[pid][0]["headers"])  # signed by the first round


@pytest.fixture
def single(settings):
    """Project 1: 16 labeled of 40 tasks (8 pos, 8 neg): the cold-start round of /setup, then
    two rounds trained."""
    texts = POS + NEG + [f"unlabeled text number {i} good" for i in range(24)]
    ls = FakeLabelStudio(make_tasks(texts))
    app = make_app(settings, ls)
    c = app.test_client()
    post(c, "/setup", {"project": "1.17", "schema": SINGLE_CONFIG, "hostname": "http://ls:8080",
                       "access_token": "tok"})
    first = [i if i <= 6 else i + 2 for i in range(1, 13)]
    for tid in first:
        ls.annotate(tid, ["pos"] if tid <= 6 else ["neg"])
    announce(c, 1, ls, first)
    for tid in (7, 8, 15, 16):
        ls.annotate(tid, ["pos"] if tid < 9 else ["neg"])
    announce(c, 1, ls, (7, 8, 15, 16))
    return app, c, ls


def test_round_records_metrics(single):
    app, _, _ = single
    records = app.extensions["studio_al"]["store"].audit(1)
    assert [r["status"] for r in records] == ["ok", "ok", "ok"]
    assert records[0]["cold_start"] and records[0]["metrics"] is None
    m = records[-1]["metrics"]
    assert m["class_counts"] == {"pos": 8, "neg": 8}
    assert m["cv"]["n"] == 16 and m["cv"]["folds"] == 5
    assert 0.0 <= m["cv"]["accuracy"] <= 1.0 and 0.0 <= m["cv"]["macro_f1"] <= 1.0
    # the last curve point is the full training fold: 16 - ceil(16/5) = 12
    assert m["cv"]["curve"]["sizes"][-1] == 12
    assert m["cv"]["curve"]["mean"][-1] == m["cv"]["accuracy"]
    assert set(m["criteria"]) == {"kappa_average", "classification_change",
                                  "overall_uncertainty", "delta_f_score"}
    assert "evaluate" in records[-1]["timings"]
    # the first trained round had 12 labels (6/6)
    assert records[1]["metrics"]["class_counts"] == {"pos": 6, "neg": 6}


def test_cross_validate_hand_checked():
    """A classifier that always predicts class 0: accuracy = share of class 0 in each held-out
    fold; macro-F1 = mean over 2 classes of (F1(class 0), 0)."""
    from al_engine.data import Dataset

    class Always0:
        def fit(self, ds):
            return self

        def predict(self, ds):
            return np.zeros(len(ds), dtype=np.int64)

    y = ["a"] * 15 + ["b"] * 5
    ds = Dataset.from_texts([f"t{i}" for i in range(20)], y, target_labels=["a", "b"])
    cv = metrics.cross_validate(Always0, ds, n_splits=5, n_sizes=3, min_size=4)
    # stratified deal: every fold gets 3 "a" and 1 "b" -> accuracy 0.75 in each fold
    assert cv["accuracy"] == pytest.approx(0.75) and cv["accuracy_std"] == pytest.approx(0.0)
    # F1(a) = 2*3/(2*3+1) = 6/7, F1(b) = 0 -> macro 3/7
    assert cv["macro_f1"] == pytest.approx(3 / 7, abs=1e-5)
    assert cv["curve"]["sizes"] == [4, 8, 16]


def test_class_distribution_flags_rare():
    rows = project_status.class_distribution({"a": 90, "b": 7, "c": 3}, ["a", "b", "c"])
    # K=3: rare below 25%/3 = 8.33% share or under 5 labels
    assert [(r["label"], r["count"], r["rare"]) for r in rows] == [
        ("a", 90, False), ("b", 7, True), ("c", 3, True)]
    assert rows[0]["share"] == 0.9
    assert [r["rare"] for r in project_status.class_distribution({}, ["a", "b"])] == [False, False]


def test_project_page_renders_everything(single):
    app, c, _ = single
    r = c.get("/dashboard/1")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    store = app.extensions["studio_al"]["store"]
    version = store.current(1)
    assert version in html
    assert '<svg xmlns="http://www.w3.org/2000/svg" id="learning-curve"' in html
    # two rounds -> two markers per CV series, one per round with a probe estimate
    svg = html[html.index('id="learning-curve"'):html.index("</svg>")]
    assert svg.count("CV on active labels (biased) ") == 4
    with_estimate = [p for p in c.get("/status?project=1").get_json()["learning_curve"]
                     if p["estimate"] is not None]
    assert svg.count("<circle") == 4 + len(with_estimate)
    # next tasks: the 20 lowest priority scores, linked to Label Studio
    ranking = store.load_ranking(1, version)
    expected = [str(e.task) for e in ranking.head(20)]
    assert [e.score for e in ranking.head(20)] == sorted(e.score for e in ranking.head(20))
    queue = html[html.index('id="queue"'):]
    queue = queue[:queue.index("</table>")]
    links = re.findall(r'href="http://ls:8080/projects/1/data\?task=(\d+)"', queue)
    assert links == expected
    assert ranking.head(1)[0].score == 0.0
    # audit log: one row per round
    audit = html[html.index('id="audit"'):]
    assert audit[:audit.index("</table>")].count("<tr>") == 1 + 3
    for section in ('id="classes"', 'id="criteria"', 'id="stopping-history"', 'id="estimate"'):
        assert section in html
    assert "kappa_average" in html and "no cross-validated rounds" not in html


def test_status_is_the_twin_of_the_page(single):
    app, c, _ = single
    st = c.get("/status?project=1").json
    assert st["class_distribution"] == [
        {"label": "pos", "count": 8, "share": 0.5, "rare": False},
        {"label": "neg", "count": 8, "share": 0.5, "rare": False}]
    assert [p["labeled"] for p in st["learning_curve"]] == [12, 16]
    assert len(st["next_tasks"]) == 20 and len(st["rounds"]) == 3
    assert st["next_tasks"][0]["task"] == st["queued_tasks"][0]
    html = c.get("/dashboard/1").get_data(as_text=True)
    assert f"{st['quality']['accuracy']:.3f}" in html
    assert f"{st['quality']['macro_f1']:.3f}" in html
    assert [int(t) for t in re.findall(r"data\?task=(\d+)", html)] == \
        [t["task"] for t in st["next_tasks"]]
    all_st = c.get("/status").json
    assert all_st["projects"]["1"]["next_tasks"] == st["next_tasks"]


def test_index_lists_projects(single):
    _, c, _ = single
    r = c.get("/dashboard")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert 'href="/dashboard/1"' in html and 'id="projects"' in html
    assert c.get("/dashboard/").status_code == 200


def test_empty_store_and_unknown_projects(settings):
    c = make_app(settings, FakeLabelStudio()).test_client()
    r = c.get("/dashboard")
    assert r.status_code == 200 and 'id="no-projects"' in r.get_data(as_text=True)
    r = c.get("/dashboard/7")
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "unknown project 7" in r.get_data(as_text=True)
    for bad in ("abc", "0", "-3"):
        r = c.get(f"/dashboard/{bad}")
        assert r.status_code == 400 and "not a project id" in r.get_data(as_text=True)


def test_project_without_model(settings):
    ls = FakeLabelStudio(make_tasks(["one", "two", "three"]))
    app = make_app(settings, ls, pid=3)
    c = app.test_client()
    runner = app.extensions["studio_al"]["runner"]
    job, runner.job = runner.job, lambda *a: None  # /setup's round has not run yet
    post(c, "/setup", {"project": "3.1", "schema": SINGLE_CONFIG, "hostname": "http://ls:8080",
                       "access_token": "tok"})
    runner.job = job
    r = c.get("/dashboard/3")  # set up, never trained
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert training.UNTRAINED in html and "never trained" in html
    assert "no evaluated rounds yet" in html and "No ranking yet" in html
    # a cold-start round (no labels): queue exists, no metrics, no verdict
    post(c, "/webhook", {"action": "START_TRAINING", "project": {"id": 3}})
    st = c.get("/status?project=3").json
    assert st["learning_curve"] == [] and st["stop_now"] is None
    assert [t["task"] for t in st["next_tasks"]] == st["queued_tasks"][:3]
    html = c.get("/dashboard/3").get_data(as_text=True)
    assert 'id="queue"' in html and "no evaluated rounds yet" in html
    assert c.get("/dashboard").status_code == 200


def test_multi_label_project(settings):
    texts = ["alpha beta", "alpha", "beta gamma", "gamma", "alpha gamma", "beta",
             "alpha beta gamma", "gamma beta", "alpha alpha", "beta beta", "gamma gamma",
             "alpha beta two", "x y", "y z", "z alpha"]
    ls = FakeLabelStudio(make_tasks(texts, field="content"))
    app = make_app(settings, ls, pid=5, config=MULTI_CONFIG)
    c = app.test_client()
    post(c, "/setup", {"project": "5.1", "schema": MULTI_CONFIG, "hostname": "http://ls:8080",
                       "access_token": "tok"})
    truth = {1: ["a", "b"], 2: ["a"], 3: ["b", "c"], 4: ["c"], 5: ["a", "c"], 6: ["b"],
             7: ["a", "b", "c"], 8: ["b", "c"], 9: ["a"], 10: ["b"], 11: ["c"], 12: ["a", "b"]}
    for tid, names in truth.items():
        ls.annotate(tid, names, from_name="topics")
    announce(c, 5, ls, truth)
    st = c.get("/status?project=5").json
    assert st["multi_label"] is True
    # per-label counts of the 12 labeled tasks
    assert {r["label"]: r["count"] for r in st["class_distribution"]} == {"a": 6, "b": 7, "c": 6}
    assert st["quality"]["n"] == 12 and 0 <= st["quality"]["macro_f1"] <= 1
    r = c.get("/dashboard/5")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and "multi-label" in html and 'id="queue"' in html
    assert 'id="classes"' in html and "<circle" in html


def test_basic_auth_protects_the_pages(tmp_path):
    s = Settings.from_env({"MODEL_DIR": str(tmp_path / "s"), "LOG_LEVEL": "WARNING",
                           "BASIC_AUTH_USER": "admin", "BASIC_AUTH_PASS": "pw"},
                          validate_components=False)
    c = make_app(s, FakeLabelStudio()).test_client()
    for path in ("/dashboard", "/dashboard/1"):
        r = c.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        bad = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
        assert c.get(path, headers=bad).status_code == 401
    good = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    assert c.get("/dashboard", headers=good).status_code == 200
    assert c.get("/dashboard/1", headers=good).status_code == 404  # authenticated, no project


def test_learning_curve_svg_geometry():
    pts = [{"round": 1, "labeled": 0, "accuracy": 0.5, "macro_f1": None},
           {"round": 2, "labeled": 100, "accuracy": 1.0, "macro_f1": 0.8}]
    svg = plots.learning_curve_svg(pts, width=400, height=200)
    # plot area: x 48..384 (width 336), y 14..162 (height 148); y axis from
    # floor(0.5 * 10) / 10 - 0.1 = 0.4 to 1.0: y(0.5) = 14 + (1 - 0.1 / 0.6) * 148 = 137.33
    assert 'points="48.0,137.3 384.0,14.0"' in svg
    assert svg.count("<circle") == 3 and svg.startswith("<svg")
    assert "no evaluated rounds yet" in plots.learning_curve_svg([])


def test_audit_cache_follows_the_file(tmp_path):
    store = Store(str(tmp_path))
    store.append_audit(1, {"round": 1, "status": "ok"})
    assert [r["round"] for r in project_status.audit_records(store, 1)] == [1]
    store.append_audit(1, {"round": 2, "status": "failed"})
    assert [r["round"] for r in project_status.audit_records(store, 1)] == [1, 2]


def test_page_says_when_the_model_is_no_better_than_the_majority(single):
    """A round whose criteria say stop while the probe estimate does not beat the majority
    label: the page warns, holds every "stop" back and withholds the labels-needed figure."""
    app, c, _ = single
    store = app.extensions["studio_al"]["store"]
    last = dict(store.audit(1)[-1])
    estimate = {"value": 0.5, "low": 0.3, "high": 0.7, "n": 20, "method": "m",
                "majority": 0.6, "majority_label": "neg", "beats_majority": False}
    last["metrics"] = {**last["metrics"], "accuracy_estimate": estimate,
                       "criteria": {"kappa_average": {"stop": True, "value": 0.95}},
                       "labels_needed": {"labels_needed": 851, "accuracy_limit": 0.9}}
    last["stopping"] = {**(last.get("stopping") or {}), "stop": True}
    last["round"] = len(store.audit(1)) + 1
    store.append_audit(1, last)
    status = c.get("/status?project=1").get_json()
    assert status["stop_now"] is False and "'neg'" in status["stop_note"]
    assert status["accuracy_estimate"]["beats_majority"] is False
    assert status["labels_needed"]["labels_needed"] is None
    html = c.get("/dashboard/1").get_data(as_text=True)
    assert 'id="majority-warning"' in html and "always answering “neg”" in html
    assert "stop (held)" in html and 'class="badge stop">stop<' not in html
    assert "keep labeling" in html
