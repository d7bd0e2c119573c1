"""Finding 4 of issue 13 against a real Label Studio 1.23.2: with ``BASIC_AUTH_USER/PASS`` set,
Label Studio's own webhook subscription (created without credentials) still trains the model,
because the backend signs that subscription once the connection is proved; a forged,
unauthenticated webhook or Start Training from anyone else is refused."""
from __future__ import annotations

import time

import requests

from tests.e2e.flows import Project, wait_for_round

AUTH = ("studio", "s3cret-pass")


def test_annotation_webhooks_train_with_basic_auth(ls, backends):
    backend = backends("breaking_ties", BASIC_AUTH_USER=AUTH[0], BASIC_AUTH_PASS=AUTH[1])
    labels = ["ham", "spam"]
    project = Project.create(ls, "e2e basic auth", "sms_spam.train", labels, per_label=30)
    # without the credentials Label Studio cannot connect (our /setup answers 401) ...
    r = ls.req("POST", "/api/ml", json={"url": backend.url, "project": project.pid, "title": "no auth"},
               expect=(201, 400, 500))
    assert not (isinstance(r, dict) and r.get("state") == "CO"), r
    # ... with them it does, and proves the connection
    project.connect(backend.url, basic_auth=AUTH)

    # the annotation webhooks come from Label Studio's own subscription, without credentials:
    # they are accepted because the backend signs that subscription (in the round /setup starts)
    deadline, hooks = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        hooks = ls.req("GET", "/api/webhooks", params={"project": project.pid})
        mine = [h for h in hooks if h["url"] == f"{backend.url}/webhook"]
        if mine and len(mine[0]["headers"].get("X-Studio-AL-Signature", "")) == 64:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"Label Studio's webhook subscription was never signed: {hooks}")
    for name in labels:
        project.annotate(next(t for t in project.unlabeled if project.truth[t] == [name]))
    record = wait_for_round(backend.url, backend.extra["model_dir"], project.pid,
                            set(project.annotations.values()), auth=AUTH)
    assert record["n_labeled"] == 2 and record["k"] >= 6
    top = record["queried"][0]["task"]
    assert ls.req("GET", f"/api/projects/{project.pid}/next")["id"] == top

    # anyone else: no credentials, no signature -> 401, and nothing is queued
    for body in ({"action": "START_TRAINING", "project": {"id": project.pid}},
                 {"action": "ANNOTATION_CREATED", "project": {"id": project.pid},
                  "annotation": {"id": 1}, "task": {"id": top}}):
        forged = requests.post(f"{backend.url}/webhook", json=body, timeout=10)
        assert forged.status_code == 401, forged.text
    assert requests.get(f"{backend.url}/status", params={"project": project.pid},
                        timeout=10).status_code == 401
    status = requests.get(f"{backend.url}/status", params={"project": project.pid}, auth=AUTH,
                          timeout=10).json()
    assert status["model_version"] == record["version"]


def test_forged_events_never_write_into_a_project_that_did_not_connect(ls, backends):
    """Finding 2 of issue 13 on a real Label Studio: a forged Start Training (or annotation
    event) for a project that never connected this backend, with a label config in the body,
    writes nothing there, even though the backend holds Label Studio's admin token."""
    backend = backends("breaking_ties")
    labels = ["ham", "spam"]
    victim = Project.create(ls, "e2e never connected", "sms_spam.train", labels, per_label=10)
    mine = Project.create(ls, "e2e connected", "sms_spam.train", labels, per_label=10)
    mine.connect(backend.url)
    config = ls.req("GET", f"/api/projects/{victim.pid}")["label_config"]
    for body in ({"action": "START_TRAINING", "project": {"id": victim.pid, "label_config": config}},
                 {"action": "ANNOTATION_CREATED", "project": {"id": victim.pid, "label_config": config},
                  "annotation": {"id": 1}, "task": {"id": victim.task_ids[0]}}):
        r = requests.post(f"{backend.url}/webhook", json=body, timeout=10)
        assert r.status_code in (200, 401, 403), r.text
    # a legitimate round of the connected project, started after the forged events, completes
    for name in labels:
        mine.annotate(next(t for t in mine.unlabeled if mine.truth[t] == [name]))
    wait_for_round(backend.url, backend.extra["model_dir"], mine.pid, set(mine.annotations.values()))
    # ... and the victim project was never touched
    proj = ls.req("GET", f"/api/projects/{victim.pid}")
    assert proj["model_version"] in ("", None) and proj["sampling"] != "Uncertainty sampling", proj
    assert ls.req("GET", "/api/predictions", params={"project": victim.pid}) == []
    assert not (backend.extra["model_dir"] / str(victim.pid) / "audit.jsonl").exists()
