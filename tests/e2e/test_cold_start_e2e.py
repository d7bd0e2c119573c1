"""A queue from the first minute, on a real Label Studio 1.23.2: a fresh project (no label yet)
connected to the backend serves, as its very first ``/next``, the task the label-free cold start
(TypiClust on the pool's TF-IDF features) chose, not Label Studio's task 1, 2, 3... order.
The pick is re-computed independently with al_engine on the same texts."""
from __future__ import annotations

from tests.e2e.flows import Project, wait_for_round


def independent_cold_start(project: Project, head: int, seed: int = 0) -> list[int]:
    """TypiClust's first ``head`` picks on the TF-IDF features of every task (tasks by id),
    as the backend featurizes a linear_svc project."""
    from al_engine.coldstart import TypiClust
    from al_engine.data import Dataset
    from al_engine.registry import make_classifier
    tids = project.task_ids
    ds = Dataset.from_texts([project.texts[t] for t in tids], [None] * len(tids),
                            target_labels=project.labels)
    x = make_classifier("linear_svc", num_classes=len(project.labels)).featurize(ds).x
    return [tids[i] for i in TypiClust(seed=seed).select(x, head)]


def test_fresh_project_serves_a_cold_start_pick_first(ls, backends):
    backend = backends("breaking_ties", AL_INIT_STRATEGY="typiclust")
    labels = ["World", "Sports", "Business", "Sci/Tech"]
    project = Project.create(ls, "e2e cold start", "ag_news.train", labels, per_label=50)
    project.connect(backend.url)
    record = wait_for_round(backend.url, backend.extra["model_dir"], project.pid, set())
    assert record["cold_start"] and record["n_labeled"] == 0
    assert record["n_unlabeled"] == len(project.task_ids)
    first = record["queried"][0]["task"]
    nxt = ls.req("GET", f"/api/projects/{project.pid}/next")
    assert nxt["id"] == first, f"/next served {nxt['id']}, the cold start chose {first}"
    head = max(10, 6)  # max(AL_BATCH_SIZE, AL_PUSH_HEAD): the label-free picks
    picks = independent_cold_start(project, head)
    assert first == picks[0], (first, picks)
    assert [q["task"] for q in record["queried"]] == picks[:len(record["queried"])]
