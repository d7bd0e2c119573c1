"""Random probes in a round (backend.probes, Round._with_probes) and what /status makes of the
accuracy estimate: the stop verdict held back, the labels-needed estimate withheld."""
from dataclasses import replace

import numpy as np

from backend import training
from backend.probes import ProbeLog
from backend.project_status import labels_needed_view, stop_view
from backend.store import Store
from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio, make_tasks
from tests.backend.test_training import NEG, POS, setup_project


def _label(store, ls, labels: dict) -> None:
    """Annotate tasks in the fake Label Studio and announce each as a webhook would."""
    for t, label in labels.items():
        ls.annotate(t, [label])
        store.append_event(1, {"action": "ANNOTATION_CREATED", "project": 1, "handled": "train",
                               "annotation": {"id": ls.tasks[t - 1]["annotations"][-1]["id"],
                                              "task": t}})


def test_probe_log_counts_only_the_serving_rankings_probes():
    log = ProbeLog()
    assert log.note_labels([1, 2], 1, None) == 0  # nothing served yet
    log.serve("v1", [3, 4, 5])
    # a round that did not start under v1 (its switch failed) takes nothing from this log
    assert log.note_labels([3], 2, "v0") == 0 and log.labeled == {}
    assert log.note_labels([1, 3, 5], 2, "v1") == 2 and log.labeled == {3: 2, 5: 2}
    assert log.note_labels([3, 5], 3, "v1") == 0  # counted once
    log.serve("v2", [7])
    assert log.note_labels([4], 3, "v2") == 0  # 4 was a probe of v1 only
    assert log.mask([3, 4, 5, 9]).tolist() == [True, False, True, False]


def test_round_queues_probes_and_counts_them_when_labeled(settings):
    """AL_PROBE_SHARE=0.5: about half the head slots hold random tasks; a probe labeled
    while its ranking serves is counted by the next round and the metrics estimate from it."""
    settings = replace(settings, probe_share=0.5)
    store = Store(settings.model_dir)
    texts = POS + NEG + [f"{w} text number {i}" for i in range(30)
                         for w in (["great"] if i % 2 else ["boring"])]
    ls = FakeLabelStudio(make_tasks(texts))
    setup_project(store, SINGLE_CONFIG, 1, ls)
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["cold_start"]
    assert rec["probes"]["queued"] == 0  # a cold start serves its own picks first
    _label(store, ls, {1: "pos", 6: "neg"})
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and not rec["cold_start"]
    log = ProbeLog.load(store, 1)
    assert rec["probes"]["tasks"] == log.serving.tolist()
    assert log.version == rec["version"] and rec["probes"]["queued"] == log.serving.size > 0
    # the probes are in the pushed ranking's first AL_PUSH_MAX slots
    ranking = store.load_ranking(1, rec["version"])
    assert set(log.serving.tolist()) <= set(ranking.task_ids[:settings.push_max].tolist())
    # label every task of 1..10 and the first probes: the probes are counted next round
    labeled = set(range(2, 11)) - {6} | {int(t) for t in log.serving[:4]}
    counted = labeled & set(log.serving.tolist())  # the first 4 probes, and any among 1..10
    _label(store, ls, {t: "pos" if "great" in texts[t - 1] else "neg" for t in sorted(labeled)})
    rec2 = training.run_round(1, settings, store, ls)
    assert rec2["status"] == "ok" and not rec2["cold_start"]
    assert rec2["probes"]["new"] == rec2["probes"]["labeled"] == len(counted)
    assert set(ProbeLog.load(store, 1).labeled) == counted
    est = rec2["metrics"]["accuracy_estimate"]
    assert est["n"] == len(counted) and 0.0 <= est["low"] <= est["value"] <= est["high"] <= 1.0
    assert est["majority_label"] in ("pos", "neg")


def test_no_probes_when_share_is_zero(settings):
    store = Store(settings.model_dir)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    setup_project(store, SINGLE_CONFIG, 1, ls)
    rec = training.run_round(1, settings, store, ls)  # the fixture's AL_PROBE_SHARE=0
    assert rec["probes"] == {"queued": 0, "labeled": 0, "new": 0, "tasks": []}
    assert ProbeLog.load(store, 1).serving.size == 0


def test_stop_is_held_while_the_model_does_not_beat_the_majority():
    worse = {"value": 0.5, "low": 0.3, "high": 0.7, "n": 20, "majority": 0.6,
             "majority_label": "neg", "beats_majority": False}
    view = stop_view(True, worse)
    assert view["stop_now"] is False and "'neg'" in view["stop_note"]
    assert "20 random tasks" in view["stop_note"]
    assert stop_view(True, {**worse, "beats_majority": True}) == {"stop_now": True,
                                                                   "stop_note": None}
    assert stop_view(True, None)["stop_note"].startswith("unconfirmed")
    assert stop_view(False, worse) == {"stop_now": False, "stop_note": None}


def test_labels_needed_is_withheld_when_it_cannot_be_trusted():
    est = {"labels_needed": 851, "accuracy_limit": 1.0}
    assert labels_needed_view(est, None)["labels_needed"] is None  # pinned at the bound
    ok = {"labels_needed": 851, "accuracy_limit": 0.9}
    assert labels_needed_view(ok, {"beats_majority": False})["labels_needed"] is None
    shown = labels_needed_view(ok, {"beats_majority": True})
    assert shown["labels_needed"] == 851 and "2.4x" in shown["error"]
    assert labels_needed_view(None, None) is None


def test_place_probes_slots_are_seeded_per_round():
    from al_engine.accuracy import place_probes
    order = np.arange(50)
    a = place_probes(order, 0.2, 30, np.random.default_rng([0, 3]))[1]
    b = place_probes(order, 0.2, 30, np.random.default_rng([0, 3]))[1]
    c = place_probes(order, 0.2, 30, np.random.default_rng([0, 4]))[1]
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()


def test_status_marks_the_random_tasks_of_the_queue(settings):
    from backend.project_status import status_details
    settings = replace(settings, probe_share=0.5)
    store = Store(settings.model_dir)
    ls = FakeLabelStudio(make_tasks(POS + NEG + [f"text {i}" for i in range(20)]))
    setup_project(store, SINGLE_CONFIG, 1, ls)
    training.run_round(1, settings, store, ls)
    _label(store, ls, {1: "pos", 6: "neg"})
    rec = training.run_round(1, settings, store, ls)
    assert not rec["cold_start"]
    queue = status_details(store, settings, 1)["next_tasks"]
    assert {t["task"] for t in queue if t["probe"]} == set(rec["probes"]["tasks"]) & \
        {t["task"] for t in queue}
    assert any(t["probe"] for t in queue) and not all(t["probe"] for t in queue)


def test_prequential_estimate_scores_the_serving_predictions():
    """For classifiers too expensive to refit: each probe is scored by the prediction the
    serving ranking held for it when it got labeled. Probes 3 and 4 predicted 'pos', 5 'neg'
    (a cold-start ranking would give no label: probe 9 is left out)."""
    from backend.metrics import PREQUENTIAL, prequential_accuracy
    from backend.labelconfig import parse_label_config
    from backend.ranking import Ranking
    from al_engine.accuracy import wilson_interval
    ranking = Ranking.build([3, 4, 5, 9], [0.0, 0.3, 0.6, 1.0],
                            [["pos"], ["pos"], ["neg"], []], None, ["pos", "neg"], False)
    log = ProbeLog("v1", [3, 4, 5, 9])
    assert log.note_labels([3, 4, 5, 9], 2, "v1", lambda: ranking) == 4
    assert log.predicted == {3: ["pos"], 4: ["pos"], 5: ["neg"], 9: []}
    cfg = parse_label_config(SINGLE_CONFIG)
    # truth: 3 pos (right), 4 neg (wrong), 5 neg (right), 9 pos (no prediction: left out)
    y = np.array([cfg.labels.index(x) for x in ("pos", "neg", "neg", "pos")])
    est = prequential_accuracy(cfg, y, [3, 4, 5, 9], log)
    assert est["n"] == 3 and est["value"] == round(2 / 3, 4) and est["method"] == PREQUENTIAL
    assert (est["low"], est["high"]) == tuple(round(v, 4) for v in wilson_interval(2, 3))
