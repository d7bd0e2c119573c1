"""run_round with the real engine and an in-memory Label Studio (no network)."""
import json

import numpy as np
import pytest

from backend import training
from backend.labelconfig import parse_label_config
from backend.labels import task_label
from backend.mirror import HINT_ATTEMPTS, Hints
from backend.settings import Settings
from backend.store import Store
from tests.backend.conftest import MULTI_CONFIG, SINGLE_CONFIG, FakeLabelStudio, make_tasks

POS = ["great movie, loved it", "wonderful and great acting", "loved the great story",
       "a wonderful film", "great great fun"]
NEG = ["terrible movie, hated it", "awful and boring acting", "hated the boring story",
       "an awful film", "boring boring mess"]


def setup_project(store, config=SINGLE_CONFIG, pid=1, ls=None):
    """What /setup stores, and (with ``ls``) Label Studio with this backend connected."""
    store.save_project(pid, {"label_config": config,
                             "parsed": parse_label_config(config).to_dict()})
    if ls is not None:
        ls.connect(store, pid, config)
    return ls


@pytest.fixture
def env(settings):
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))  # ids 1..5 pos, 6..10 neg
    ls.connect(store, 1, SINGLE_CONFIG)
    return settings, store, ls


def test_cold_start_pushes_seeded_random_order(env):
    settings, store, ls = env
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["cold_start"] and rec["n_unlabeled"] == 10
    preds = ls.current_predictions()
    assert len(preds) == 10 and ls.project["sampling"] == "Uncertainty sampling"
    scores = sorted(p["score"] for p in preds.values())
    assert scores == pytest.approx([i / 9 for i in range(10)])
    assert all(p["result"] == [] for p in preds.values())
    # same seed -> same order; the init strategy with AL_SEED
    expected = np.random.default_rng(0).choice(10, size=10, replace=False) + 1
    order = sorted(preds, key=lambda t: preds[t]["score"])
    assert order == expected.tolist()
    assert store.current(1) == rec["version"] == ls.project["model_version"]
    assert store.load_model(1, rec["version"]) is None  # no model yet


def test_label_free_cold_start_heads_the_queue_with_typiclust(env):
    """AL_INIT_STRATEGY=typiclust: before any label, the queue starts with TypiClust's picks
    on the tasks' TF-IDF features (the configured classifier's), the rest in seeded order."""
    from dataclasses import replace

    from al_engine.coldstart import TypiClust
    from al_engine.features import TfidfFeaturizer
    settings, store, ls = env
    settings = replace(settings, init_strategy="typiclust", batch_size=3, push_head=3,
                       push_all=True)
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["cold_start"] and rec["strategy_used"] == "init:typiclust"
    preds = ls.current_predictions()
    order = sorted(preds, key=lambda t: preds[t]["score"])
    picks = TypiClust(seed=0).select(TfidfFeaturizer().fit_transform(POS + NEG), 3) + 1
    assert order[:3] == picks.tolist()
    assert sorted(order) == list(range(1, 11))


def test_trained_round_ranks_unlabeled_by_breaking_ties(env):
    settings, store, ls = env
    for tid in (1, 2):
        ls.annotate(tid, ["pos"])
    for tid in (6, 7):
        ls.annotate(tid, ["neg"])
    ls.annotate(3, ["neg"], cancelled=True)        # skipped: not a label
    ls.annotate(4, None)                           # empty result: not a label
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and not rec["cold_start"]
    assert rec["labels"]["count"] == 4 and rec["n_unlabeled"] == 6
    assert sorted(rec["labels"]["annotation_ids"]) == sorted(
        a["id"] for t in ls.tasks for a in t["annotations"]
        if not a["was_cancelled"] and a["result"])
    preds = ls.current_predictions()
    assert sorted(preds) == [3, 4, 5, 8, 9, 10]
    # Hand check: recompute the margins with the stored model and compare the order.
    bundle = store.load_model(1, rec["version"])
    from al_engine.data import Dataset
    texts = [ls.tasks[t - 1]["data"]["text"] for t in sorted(preds)]
    proba = bundle["clf"].predict_proba(Dataset.from_texts(texts, None, target_labels=["pos", "neg"]))
    ps = np.sort(proba, axis=1)
    margin = ps[:, -1] - ps[:, -2]
    expected = [sorted(preds)[i] for i in np.argsort(margin, kind="stable")]
    assert sorted(preds, key=lambda t: preds[t]["score"]) == expected
    # results: predicted label and its confidence
    for tid, row in zip(sorted(preds), proba):
        item = preds[tid]["result"][0]
        assert item["value"]["choices"] == [["pos", "neg"][int(np.argmax(row))]]
        assert item["score"] == pytest.approx(row.max(), abs=1e-6)
        assert (item["from_name"], item["to_name"], item["type"]) == ("sentiment", "text", "choices")
    # the obvious ones are predicted right
    assert preds[5]["result"][0]["value"]["choices"] == ["pos"]
    assert preds[10]["result"][0]["value"]["choices"] == ["neg"]
    assert rec["stopping"]["criterion"] == "kappa_average" and rec["stopping"]["stop"] is False
    assert [q["task"] for q in rec["queried"]] == expected[:settings.batch_size]
    assert set(rec["timings"]) == {"connect", "sync", "train_and_rank", "write_version", "push",
                                   "clean_up", "catch_up", "evaluate", "total"}


def test_latest_annotation_wins_and_unknown_labels_ignored(env):
    settings, store, ls = env
    ls.annotate(1, ["neg"], updated_at="2026-01-01T00:00:00Z")
    ls.annotate(1, ["pos"], updated_at="2026-01-02T00:00:00Z")
    ls.annotate(6, ["neg"])
    ls.annotate(2, ["not-a-label"])
    cfg = parse_label_config(SINGLE_CONFIG)
    labels = [task_label(t, cfg)[0] for t in ls.tasks]
    assert labels[:2] == ["pos", None] and labels[5] == "neg"
    assert task_label(ls.tasks[0], cfg)[1] == ls.tasks[0]["annotations"][1]["id"]


def test_superseded_version_deleted_and_history_flag(env):
    settings, store, ls = env
    r1 = training.run_round(1, settings, store, ls)
    ls.annotate(1, ["pos"])
    r2 = training.run_round(1, settings, store, ls)
    assert r2["deleted_versions"] == [r1["version"]]
    assert set(ls.model_versions(1)) == {r2["version"]}
    assert r1["version"] < r2["version"]  # sortable names
    keep = Settings(**{**settings.__dict__, "keep_prediction_history": True})
    r3 = training.run_round(1, keep, store, ls)
    assert set(ls.model_versions(1)) == {r2["version"], r3["version"]}


def test_failure_keeps_previous_version_serving(env):
    settings, store, ls = env
    r1 = training.run_round(1, settings, store, ls)
    ls.annotate(1, ["pos"])
    ls.fail_on = {"update_project"}
    r2 = training.run_round(1, settings, store, ls)
    assert r2["status"] == "failed" and "injected failure" in r2["error"]
    assert store.current(1) == r1["version"] and r2["version"] not in store.versions(1)
    assert store.last_audit(1)["status"] == "failed"
    ls.fail_on = set()
    r3 = training.run_round(1, settings, store, ls)  # the next webhook retries
    assert r3["status"] == "ok" and store.current(1) == r3["version"]
    assert set(ls.model_versions(1)) == {r3["version"]}  # the orphan push is cleaned up too


def test_missing_text_is_skipped(env):
    settings, store, ls = env
    ls.tasks.append({"id": 99, "data": {"other": "x"}, "annotations": []})
    rec = training.run_round(1, settings, store, ls)
    assert rec["n_skipped"] == 1 and 99 not in ls.current_predictions()


def test_min_annotations_threshold(env):
    settings, store, ls = env
    s3 = Settings(**{**settings.__dict__, "min_annotations": 3})
    ls.annotate(1, ["pos"])
    ls.annotate(6, ["neg"])
    assert training.run_round(1, s3, store, ls)["cold_start"] is True
    ls.annotate(2, ["pos"])
    _webhook(store, ls.tasks[1]["annotations"][-1]["id"], 2)
    assert training.run_round(1, s3, store, ls)["cold_start"] is False


def test_one_class_training_set(env):
    settings, store, ls = env
    ls.annotate(1, ["pos"])
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and not rec["cold_start"]
    assert all(p["result"][0]["value"]["choices"] == ["pos"]
               for p in ls.current_predictions().values())


def test_multi_label_falls_back_for_single_label_strategy(settings):
    store = Store(settings.model_dir)
    setup_project(store, MULTI_CONFIG, pid=2)
    texts = ["apple banana", "banana cherry", "cherry apple", "apple", "banana", "cherry",
             "apple banana cherry", "nothing here"]
    ls = FakeLabelStudio(make_tasks(texts, field="content"))
    ls.connect(store, 2, MULTI_CONFIG)
    for tid, labels in [(1, ["a", "b"]), (2, ["b", "c"]), (4, ["a"]), (5, ["b"])]:
        ls.annotate(tid, labels, from_name="topics")
    rec = training.run_round(2, settings, store, ls)
    assert rec["status"] == "ok", rec["error"]
    assert rec["strategy_used"] == "multi_label_uncertainty" and "warning" in rec
    preds = ls.current_predictions()
    assert sorted(preds) == [3, 6, 7, 8]
    proba = store.load_model(2, rec["version"])["clf"].predict_proba(
        __import__("al_engine.data", fromlist=["Dataset"]).Dataset.from_texts(
            [texts[t - 1] for t in [3, 6, 7, 8]], None, target_labels=["a", "b", "c"],
            multi_label=True))
    margin = np.abs(proba - 0.5).min(axis=1)
    expected = [[3, 6, 7, 8][i] for i in np.argsort(margin, kind="stable")]
    assert sorted(preds, key=lambda t: preds[t]["score"]) == expected


def test_stopping_state_persists_across_rounds(env):
    settings, store, ls = env
    s = Settings(**{**settings.__dict__, "stopping_criterion": "max_iterations",
                    "stopping_params": {"max_iterations": 2}})
    ls.annotate(1, ["pos"])
    ls.annotate(6, ["neg"])
    verdicts = [training.run_round(1, s, Store(settings.model_dir), ls)["stopping"]["stop"]
                for _ in range(3)]  # a new Store each round: state comes from disk
    assert verdicts == [False, True, True]


def test_unset_project_fails_cleanly(settings):
    store = Store(settings.model_dir)
    rec = training.run_round(7, settings, store, FakeLabelStudio([]))
    assert rec["status"] == "failed" and "not set up" in rec["error"]
    assert json.loads((store.audit(7)[-1] and json.dumps(store.audit(7)[-1])))["status"] == "failed"


def test_priorities_formula():
    assert training.priorities(1).tolist() == [0.0]
    assert training.priorities(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert training._complete_order([4, 2, 4, 9], np.array([1, 2, 3, 4])).tolist() == [4, 2, 1, 3]


class LaggingLabelStudio(FakeLabelStudio):
    """Label Studio where one annotation becomes visible only from the ``visible_after``-th
    read of its task on (the webhook arrives before the save is visible)."""

    def __init__(self, tasks, hidden_annotation, visible_after=2):
        super().__init__(tasks)
        self.hidden, self.visible_after, self.rereads = hidden_annotation, visible_after, 0

    def _hide(self, tasks):
        for t in tasks:
            t["annotations"] = [a for a in t["annotations"] if a["id"] != self.hidden]
        return tasks

    def list_annotated_tasks(self, project_id, after_id=0, limit=100):
        return self._hide(super().list_annotated_tasks(project_id, after_id, limit))

    def fetch_tasks_by_id(self, project_id, task_ids):
        self.rereads += 1
        tasks = super().fetch_tasks_by_id(project_id, task_ids)
        return tasks if self.rereads >= self.visible_after else self._hide(tasks)


def _webhook(store, ann_id, task_id, action="ANNOTATION_CREATED"):
    return store.append_event(1, {"action": action, "project": 1, "handled": "train",
                                  "annotation": {"id": ann_id, "task": task_id}})


def test_annotation_announced_but_not_yet_visible_is_read_by_the_next_round(settings):
    store = Store(settings.model_dir)
    setup_project(store)
    ls = LaggingLabelStudio(make_tasks(POS + NEG), hidden_annotation=1002, visible_after=2)
    ls.connect(store, 1, SINGLE_CONFIG)
    for i, (tid, label) in enumerate([(1, "pos"), (6, "neg"), (2, "pos")]):
        ls.annotate(tid, [label])
        _webhook(store, 1000 + i, tid)
    first = training.run_round(1, settings, store, ls)
    assert first["status"] == "ok" and first["n_labeled"] == 2 and first["again"] is True
    assert first["sync"]["waiting"] == 1
    second = training.run_round(1, settings, store, ls)  # the runner runs it at once ("again")
    assert sorted(second["labels"]["annotation_ids"]) == [1000, 1001, 1002]
    assert second["n_labeled"] == 3 and second["again"] is False and ls.rereads == 2


def test_forged_annotation_hint_costs_a_bounded_number_of_rereads(settings):
    store = Store(settings.model_dir)
    setup_project(store)
    ls = LaggingLabelStudio(make_tasks(POS + NEG), hidden_annotation=-1)
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); _webhook(store, 1000, 1)
    _webhook(store, 555, 7)        # an annotation that does not exist, on a real task
    _webhook(store, 556, 99999)    # ... on a task that does not exist
    records = [training.run_round(1, settings, store, ls) for _ in range(HINT_ATTEMPTS + 2)]
    assert all(r["status"] == "ok" and r["n_labeled"] == 1 for r in records)
    assert [r["again"] for r in records] == [True] * (HINT_ATTEMPTS - 1) + [False] * 3
    assert ls.rereads == HINT_ATTEMPTS  # then the hint is dropped: no re-read per round


def test_hints_from_events_replay_creates_updates_and_deletes():
    events = [{"seq": 1, "action": "ANNOTATION_CREATED", "annotation": {"id": 5, "task": 1}},
              {"seq": 2, "action": "ANNOTATION_UPDATED", "annotation": {"id": 5, "task": 1}},
              {"seq": 3, "action": "ANNOTATION_CREATED", "annotation": {"id": 6, "task": 2}},
              {"seq": 4, "action": "ANNOTATIONS_DELETED", "annotation_ids": [6, "x"]},
              {"seq": 5, "action": "TASKS_DELETED", "task_ids": [9, [1]]},
              {"seq": 6, "action": "ANNOTATION_CREATED", "annotation": {"id": [1], "task": "3"}}]
    h = Hints.from_events(events)
    assert h.task_ids == {1, 2} and h.expected == {5: 1}
    assert h.deleted_annotations == {6} and h.deleted_tasks == {9}


@pytest.mark.parametrize("criterion", ["kappa_average", "overall_uncertainty",
                                       "classification_change", "delta_f_score"])
def test_every_stopping_criterion_gives_a_verdict(tmp_path, criterion):
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "AL_STOPPING_CRITERION": criterion}, validate_components=False)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok"
    assert "error" not in rec["stopping"], rec["stopping"]
    assert rec["stopping"]["stop"] in (True, False)


def _settings(tmp_path, **env):
    return Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                              "AL_PUSH_HEAD": "20", **env}, validate_components=False)


def test_head_of_ranking_is_pushed_before_the_queue_switch_then_the_rest_of_the_head(tmp_path):
    settings = _settings(tmp_path, AL_PUSH_FIRST="3")
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["push_complete"] and rec["pushed"] == rec["k"] == 8
    calls = [c for c in ls.calls if c in ("create_prediction", "import_predictions", "update_project")]
    assert calls == ["create_prediction"] * 3 + ["update_project"] + ["create_prediction"] * 5
    assert [p["score"] for p in ls.predictions[:3]] == pytest.approx([0.0, 1 / 7, 2 / 7])
    assert rec["live_at"] >= rec["started_at"]


def test_only_the_head_goes_to_label_studio_the_rest_is_on_disk(tmp_path):
    settings = _settings(tmp_path, AL_PUSH_HEAD="4", AL_PUSH_FIRST="2")
    store = Store(settings.model_dir)
    setup_project(store)
    texts = [f"{w} movie number {i}" for i in range(30) for w in ("great",)] + NEG
    ls = FakeLabelStudio(make_tasks(texts))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(31, ["neg"])
    r1 = training.run_round(1, settings, store, ls)
    assert r1["k"] == 4 and r1["pushed"] == 4 and len(ls.current_predictions()) == 4
    ranking = store.load_ranking(1, r1["version"])
    assert len(ranking) == r1["n_unlabeled"] == 33
    head = [e.task for e in ranking.head(4)]
    assert sorted(ls.current_predictions()) == sorted(head)
    assert [q["task"] for q in r1["queried"]][:4] == head
    # next round: the previous version's 4 predictions are deleted, 4 new ones pushed
    ls.annotate(head[0], ["pos"])
    _webhook(store, 5000, head[0])
    r2 = training.run_round(1, settings, store, ls)
    assert r2["deleted_versions"] == [r1["version"]] and len(ls.predictions) == 4
    assert set(ls.model_versions(1)) == {r2["version"]}


def test_a_later_round_reads_only_what_changed(tmp_path):
    settings = _settings(tmp_path)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    training.run_round(1, settings, store, ls)
    ls.calls.clear()
    ls.annotate(2, ["pos"]); _webhook(store, 1002, 2)
    ls.tasks.append({"id": 11, "data": {"text": "a great new task"}, "annotations": []})
    rec = training.run_round(1, settings, store, ls)
    reads = [c for c in ls.calls if c in ("fetch_tasks_by_id", "list_tasks", "list_annotated_tasks")]
    assert reads == ["fetch_tasks_by_id", "list_tasks"]  # the hinted task; one page of new ids
    assert rec["n_labeled"] == 3 and rec["n_tasks"] == 11 and 11 in ls.current_predictions()
    assert rec["ls_requests"] == 0  # the fake client counts nothing; the real one does


def test_reconciliation_catches_what_no_webhook_told(tmp_path, monkeypatch):
    from backend import rounds
    monkeypatch.setattr(rounds, "RECONCILE_EVERY_S", 0.0)
    settings = _settings(tmp_path)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    training.run_round(1, settings, store, ls)
    ls.annotate(7, ["neg"])                                  # no webhook (backend was down)
    ls.tasks = [t for t in ls.tasks if t["id"] != 3]         # deleted, no webhook
    ls.tasks[1]["data"]["text"] = "now an awful boring film"  # task 2 edited
    training.run_round(1, settings, store, ls)               # reconciles after its push
    rec = training.run_round(1, settings, store, ls)
    assert rec["n_labeled"] == 3 and rec["n_tasks"] == 9
    ranking = store.load_ranking(1, rec["version"])
    assert 3 not in {e.task for e in ranking.head(100)}
    bundle = store.load_model(1, rec["version"])
    from al_engine.data import Dataset
    pred = bundle["clf"].predict_proba(Dataset.from_texts(["now an awful boring film"], None,
                                                          target_labels=["pos", "neg"]))
    entry = ranking.lookup([2])[0]
    assert entry.labels == ["neg"] and entry.confidence == pytest.approx(pred.max(), abs=1e-6)


def test_project_whose_texts_are_all_empty_still_gets_an_order(tmp_path):
    settings = _settings(tmp_path)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks([""] * 6))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(2, ["neg"])
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["cold_start"] and "no features" in rec["warning"]
    assert len(ls.current_predictions()) == 4


def test_push_all_imports_the_rest_and_stops_when_a_newer_round_is_pending(tmp_path):
    settings = _settings(tmp_path, AL_PUSH_FIRST="2", AL_PUSH_ALL="true")
    store = Store(settings.model_dir)
    setup_project(store)

    class Busy(FakeLabelStudio):
        busy = False

        def update_project(self, project_id, **fields):
            out = super().update_project(project_id, **fields)
            if self.busy:
                store.append_event(1, {"action": "ANNOTATION_CREATED", "project": 1,
                                       "handled": "train"})
            return out

    ls = Busy(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    full = training.run_round(1, settings, store, ls)
    assert full["push_complete"] and full["pushed"] == 8 and "import_predictions" in ls.calls
    ls.busy = True
    first = training.run_round(1, settings, store, ls)
    assert first["status"] == "ok" and first["push_complete"] is False and first["pushed"] == 2
    assert first["deleted_versions"] == []
    assert ls.project["model_version"] == first["version"]


def test_metrics_wait_while_newer_annotations_are_pending(tmp_path, monkeypatch):
    """Dashboard metrics never delay the next round of a busy project: skipped while a newer
    round is wanted, unless the last ones are older than METRICS_EVERY_S."""
    from backend import rounds
    settings = _settings(tmp_path)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    ls.annotate(1, ["pos"]); ls.annotate(6, ["neg"])
    assert training.run_round(1, settings, store, ls)["metrics"] is not None  # first: computed
    real_switch = ls.update_project

    def switch_and_annotate(project_id, **fields):  # an annotation arrives during the round
        _webhook(store, 9999, 3)
        return real_switch(project_id, **fields)
    ls.update_project = switch_and_annotate
    assert training.run_round(1, settings, store, ls)["metrics"] is None
    monkeypatch.setattr(rounds, "METRICS_EVERY_S", 0.0)
    assert training.run_round(1, settings, store, ls)["metrics"] is not None


def test_first_listing_of_a_large_project_yields_to_annotators(tmp_path, monkeypatch):
    """The first listing goes one page per round while newer annotations wait (the queue of
    the tasks mirrored so far is pushed at once), then within a budget once it is quiet."""
    from backend import mirror as mirror_module
    monkeypatch.setattr(mirror_module, "LIST_PAGE", 3)
    settings = _settings(tmp_path)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    real_switch = ls.update_project

    def switch_and_annotate(project_id, **fields):  # annotators are busy during the round
        store.append_event(1, {"action": "START_TRAINING", "project": 1, "handled": "train"})
        return real_switch(project_id, **fields)
    ls.update_project = switch_and_annotate
    busy = training.run_round(1, settings, store, ls)
    assert busy["n_tasks"] == 3 and busy["again"] is True  # one page, then the queue
    assert sorted(ls.current_predictions()) == [1, 2, 3]
    ls.update_project = real_switch
    quiet = training.run_round(1, settings, store, ls)  # "again": the runner runs it
    assert quiet["again"] is False and quiet["sync"]["after_complete"] is True
    assert training.run_round(1, settings, store, ls)["n_tasks"] == 10
