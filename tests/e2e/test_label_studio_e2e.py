"""End to end: a real Label Studio 1.23.2 drives our real backend (gunicorn, ``studio-al serve``).

For each strategy x project: connect the backend with ``POST /api/ml``, annotate through Label
Studio's API (Label Studio sends the webhooks), and after every round check in Label Studio that
the new version's predictions cover every unlabeled task, the project serves that version with
uncertainty sampling, the superseded version is gone, and ``/next`` serves the task our
strategy ranked first - which an independent al_engine re-computation confirms.
"""
from __future__ import annotations

import json

import pytest
import requests

from backend.store import Store
from tests.e2e.flows import Project, independent_best, wait_for_round

ROUNDS = 3
PROJECTS = {
    # name: (dataset, labels, tasks per label)
    "sms-binary": ("sms_spam.train", ["ham", "spam"], 100),
    "agnews-4class": ("ag_news.train", ["World", "Sports", "Business", "Sci/Tech"], 50),
}


def check_round(project: Project, backend, record: dict, previous: str | None, strategy: str) -> str:
    ls, pid = project.ls, project.pid
    version = record["version"]
    model_dir = backend.extra["model_dir"]

    # the backend proved the connection and signed Label Studio's webhook subscription
    hooks = ls.req("GET", "/api/webhooks", params={"project": pid})
    signed = [h for h in hooks if h["url"] == f"{backend.url}/webhook"]
    assert signed and len(signed[0]["headers"].get("X-Studio-AL-Signature", "")) == 64, hooks
    assert requests.get(f"{backend.url}/status", params={"project": pid}, timeout=10).json()["connected"]

    # a new version: the head of the ranking (K tasks) in Label Studio, the old one deleted
    assert version != previous and version.startswith("studio-al-")
    assert record["n_labeled"] == len(project.annotations)
    assert record["n_unlabeled"] == len(project.unlabeled)
    ranking = Store(str(model_dir)).load_ranking(pid, version)
    assert sorted(e.task for e in ranking.head(len(ranking))) == sorted(project.unlabeled)
    # K: at least AL_PUSH_HEAD (6), more when annotations come faster; never more than exist
    assert record["k"] == record["pushed"] == min(record["k"], len(project.unlabeled))
    assert record["k"] >= min(6, len(project.unlabeled))
    versions = ls.req("GET", f"/api/projects/{pid}/model-versions")
    assert versions.get(version) == record["k"], versions
    if previous is not None:
        assert previous not in versions, f"superseded version {previous} still in Label Studio: {versions}"
    assert not [v for v in versions if v.startswith("studio-al-") and v != version], versions
    preds = ls.req("GET", "/api/predictions", params={"project": pid})
    covered = {p["task"] for p in preds if p["model_version"] == version}
    assert covered == {e.task for e in ranking.head(record["k"])}

    # the project serves that version with uncertainty sampling
    proj = ls.req("GET", f"/api/projects/{pid}")
    assert proj["model_version"] == version
    assert proj["sampling"] == "Uncertainty sampling"

    # /next serves the backend's first-ranked task ...
    top = record["queried"][0]["task"]
    assert record["queried"][0]["score"] == 0.0
    nxt = ls.req("GET", f"/api/projects/{pid}/next")
    assert nxt["id"] == top, f"/next served {nxt['id']}, backend ranked {top} first"
    # ... and an independent re-computation with al_engine agrees on the strategy's first
    # choice: the first queued task that is not a random probe (AL_PROBE_SHARE), unless the
    # strategy's best itself was drawn as a probe
    probes = set((record.get("probes") or {}).get("tasks") or [])
    top = next(q["task"] for q in record["queried"] if q["task"] not in probes)
    tied, info = independent_best(project, strategy)
    assert top in tied or tied & probes, f"backend's top task {top} not among the independently best {sorted(tied)[:10]} {info}"
    return version


@pytest.mark.parametrize("strategy", ["least_confidence", "breaking_ties"])
@pytest.mark.parametrize("kind", list(PROJECTS))
def test_rounds_reorder_label_studio_queue(ls, backends, strategy, kind):
    dataset, labels, per_label = PROJECTS[kind]
    backend = backends(strategy)
    project = Project.create(ls, f"e2e {kind} {strategy}", dataset, labels, per_label=per_label)
    project.connect(backend.url)

    # seed: one task of every class, annotated through Label Studio (which sends the webhooks)
    for name in labels:
        tid = next(t for t in project.unlabeled if project.truth[t] == [name])
        project.annotate(tid)
    previous = None
    for _rnd in range(ROUNDS):
        record = wait_for_round(backend.url, backend.extra["model_dir"], project.pid,
                                set(project.annotations.values()))
        assert record["strategy_used"] == strategy
        previous = check_round(project, backend, record, previous, strategy)
        # label the served task (it stays locked otherwise): one webhook, one more round
        project.annotate(record["queried"][0]["task"])
    # the round that last annotation started is checked too, so that no round of this test is
    # still writing to Label Studio's SQLite database when the next test starts
    record = wait_for_round(backend.url, backend.extra["model_dir"], project.pid,
                            set(project.annotations.values()))
    previous = check_round(project, backend, record, previous, strategy)
    status = ls.req("GET", f"/api/projects/{project.pid}")
    assert status["model_version"] == previous
    check_predict_outside_head(project, backend, record)


def check_predict_outside_head(project: Project, backend, record: dict) -> None:
    """A task outside the pushed head has no prediction in Label Studio; opening it makes Label
    Studio call /predict, which answers from the ranking on disk (same score and label)."""
    ranking = Store(str(backend.extra["model_dir"])).load_ranking(project.pid, record["version"])
    outside = ranking.entries(record["k"], len(ranking))
    assert outside, "every unlabeled task is in the head: nothing to check"
    entry = outside[len(outside) // 2]
    task = project.ls.req("GET", f"/api/tasks/{entry.task}")
    mine = [p for p in task["predictions"] if p["model_version"] == record["version"]]
    assert len(mine) == 1, task["predictions"]
    assert mine[0]["score"] == pytest.approx(entry.score)
    assert mine[0]["result"][0]["value"]["choices"] == entry.labels


def test_multi_label_project(ls, backends):
    """A Choices choice="multiple" project: a single-label strategy falls back to multi-label
    uncertainty (reported in the audit record); the queue is still reordered."""
    from tests.e2e.harness import load_jsonl
    wanted = ["earn", "acq", "crude"]
    recs = [r for r in load_jsonl("reuters21578.train", n=3000) if set(r["labels"]) & set(wanted)][:80]
    for r in recs:
        r["labels"] = [x for x in r["labels"] if x in wanted]
    backend = backends("breaking_ties")
    project = Project.create(ls, "e2e multi-label", "reuters21578.train", wanted, multiple=True, records=recs)
    project.connect(backend.url)
    for name in wanted:
        project.annotate(next(t for t in project.unlabeled if name in project.truth[t]))
    record = wait_for_round(backend.url, backend.extra["model_dir"], project.pid, set(project.annotations.values()))
    assert record["strategy_used"] != "breaking_ties", json.dumps(record)[:500]
    versions = ls.req("GET", f"/api/projects/{project.pid}/model-versions")
    assert versions.get(record["version"]) == record["k"] >= min(6, len(project.unlabeled))
    top = record["queried"][0]["task"]
    assert ls.req("GET", f"/api/projects/{project.pid}/next")["id"] == top
    preds = ls.req("GET", "/api/predictions", params={"project": project.pid})
    # every pushed prediction shows the labels the round predicted: a choices result with a
    # subset of the wanted labels, or none when no label's probability reaches 0.5 (a random
    # probe in the head often has none)
    shown = {p["task"]: p["result"] for p in preds if p["model_version"] == record["version"]}
    assert top in shown
    for q in record["queried"]:
        if q["task"] not in shown:
            continue
        result = shown[q["task"]]
        assert sorted(result[0]["value"]["choices"] if result else []) == sorted(q["labels"])
        assert not result or (result[0]["type"] == "choices" and set(q["labels"]) <= set(wanted))
