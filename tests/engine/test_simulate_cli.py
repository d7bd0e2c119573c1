"""``studio-al simulate`` (al_engine.simulate.main) on a tiny dataset: JSON schema,
determinism with a seed, plots, stopping evaluation, multi-label, bad input; and the
aggregation helpers against hand-computed values."""
import json

import numpy as np
import pytest

from al_engine.simulate import (STOPPING_CRITERIA, curve_auc, load_split, main,
                                markdown_tables, stopping_table, summarize)

WORDS = {"sport": "goal match team score league", "tech": "chip code server cloud data",
         "food": "bread cheese soup salad spice"}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _tiny(tmp_path, n_per_class=30, seed=0):
    """Three classes, each document = 4 words of its class's vocabulary + 2 shared words."""
    rng = np.random.default_rng(seed)
    shared = "the a of and to in".split()
    rows = []
    for label, vocab in WORDS.items():
        words = vocab.split()
        for _ in range(n_per_class):
            rows.append({"text": " ".join(list(rng.choice(words, 4)) + list(rng.choice(shared, 2))),
                         "label": label})
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    return _write(d / "train.jsonl", _tiny(d, 30, 0)), _write(d / "test.jsonl", _tiny(d, 10, 1))


def _run(tmp_path, files, *extra, out="out"):
    train, test = files
    argv = ["--train", train, "--test", test, "--strategy", "random", "--strategy",
            "least_confidence", "--seeds", "2", "--initial", "6", "--batch", "5", "--rounds", "3",
            "--out", str(tmp_path / out), "--quiet",
            "--classifier", "linear_svc", "--init", "random_stratified", *extra]
    assert main(argv) == 0
    return json.loads((tmp_path / out / "results.json").read_text())


def test_results_schema_plot_and_tables(tmp_path, tiny_files, capsys):
    res = _run(tmp_path, tiny_files)
    assert len(res["runs"]) == 4
    assert [(r["strategy"], r["seed"]) for r in res["runs"]] == [
        ("random", 0), ("random", 1), ("least_confidence", 0), ("least_confidence", 1)]
    for run in res["runs"]:
        assert run["classifier"] == "linear_svc"
        assert [r["labeled"] for r in run["rounds"]] == [6, 11, 16, 21]
        for r in run["rounds"]:
            assert set(r) >= {"labeled", "accuracy", "macro_f1", "seconds", "queried"}
            assert 0 <= r["accuracy"] <= 1 and 0 <= r["macro_f1"] <= 1 and r["seconds"] >= 0
        assert len(run["rounds"][0]["queried"]) == 6
        assert all(len(r["queried"]) == 5 for r in run["rounds"][1:])
        queried = [i for r in run["rounds"] for i in r["queried"]]
        assert len(set(queried)) == 21 and max(queried) < 90
        # every criterion is reported: a round in [0, 3] or None, or skipped with a reason
        assert set(run["stopping"]) | set(run["stopping_skipped"]) == set(STOPPING_CRITERIA)
        assert run["stopping_skipped"] == {"delta_f_score": "binary only (3 classes)"}
        assert run["stopping"]["max_iterations"] == 1  # rounds // 2 + 1 = 2 calls -> round 1
        assert all(v is None or 0 <= v <= 3 for v in run["stopping"].values())
        values = run["stopping_values"]
        # window/change criteria have no statistic before the second model; uncertainty has
        assert values["classification_change"][0] is None and len(values["classification_change"]) == 4
        assert all(0 <= v <= 1 for v in values["classification_change"][1:])
        assert all(0 <= v <= 1 for v in values["overall_uncertainty"])
        assert values["kappa_average"][:1] == [None] and values["max_iterations"] == [None] * 4
        assert run["auc"] == pytest.approx(curve_auc([6, 11, 16, 21],
                                                     [r["accuracy"] for r in run["rounds"]]))
        assert run["labels_needed"]["pool_size"] == 90 and run["labels_needed"]["labeled"] == 21
    assert {s["strategy"] for s in res["summary"]} == {"random", "least_confidence"}
    assert res["dataset"] == {"name": "train", "train": 90, "test": 30, "classes": 3,
                              "multi_label": False}
    png = tmp_path / "out" / "learning_curves_linear_svc.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| linear_svc | least_confidence |" in md and "max_iterations" in md
    assert "max_iterations" in capsys.readouterr().out


def test_same_seed_same_runs_different_seed_different_start(tmp_path, tiny_files):
    a = _run(tmp_path, tiny_files, "--no-plots", "--no-estimate", out="a")
    b = _run(tmp_path, tiny_files, "--no-plots", "--no-estimate", out="b")
    strip = [[{k: v for k, v in r.items() if "seconds" not in k} for r in run["rounds"]]
             for run in a["runs"]]
    assert strip == [[{k: v for k, v in r.items() if "seconds" not in k} for r in run["rounds"]]
                     for run in b["runs"]]
    seed0, seed1 = a["runs"][0]["rounds"][0]["queried"], a["runs"][1]["rounds"][0]["queried"]
    assert seed0 != seed1
    # the same seed gives every strategy the same initial labels
    assert a["runs"][2]["rounds"][0]["queried"] == seed0
    assert not (tmp_path / "a" / "learning_curves_linear_svc.png").exists()
    assert a["runs"][0]["labels_needed"] is None


def test_randomized_strategies_get_the_run_seed(tmp_path, tiny_files):
    """lightweight_coreset samples with seed=None by default: the runner must seed it."""
    from al_engine.simulate import load_pair, run_simulation
    train, test = load_pair(*tiny_files)
    runs = [run_simulation(train, test, strategy="lightweight_coreset", initial=6, batch=5,
                           rounds=2, seed=s, progress=False, stopping=None) for s in (3, 3, 4)]
    queried = [[r["queried"] for r in run["rounds"][1:]] for run in runs]
    assert queried[0] == queried[1]
    assert queried[0] != queried[2]


def test_test_split_and_multi_label(tmp_path):
    rows = []
    for i, row in enumerate(_tiny(tmp_path, 20, 3)):
        labels = [row["label"]] + (["extra"] if i % 3 == 0 else [])
        rows.append({"text": row["text"] + (" bonus" if i % 3 == 0 else ""), "labels": labels})
    path = _write(tmp_path / "ml.jsonl", rows)
    assert main(["--train", path, "--test-split", "0.25", "--strategy", "random", "--seeds", "1",
                 "--initial", "8", "--batch", "4", "--rounds", "2", "--out", str(tmp_path / "ml"),
                 "--quiet", "--no-plots", "--classifier", "linear_svc",
                 "--init", "random_stratified"]) == 0
    res = json.loads((tmp_path / "ml" / "results.json").read_text())
    assert res["dataset"]["multi_label"] and res["dataset"]["classes"] == 4
    assert res["dataset"]["train"] + res["dataset"]["test"] == 60
    run = res["runs"][0]
    assert set(run["stopping_skipped"]) == {"kappa_average", "delta_f_score"}
    assert [r["labeled"] for r in run["rounds"]] == [8, 12, 16]
    # the estimate runs on multi-label data too (subset accuracy, plain k-fold)
    assert run["labels_needed"]["labeled"] == 16 and len(run["labels_needed"]["points"]) >= 3


def test_load_split_is_stratified_and_seeded(tmp_path):
    path = _write(tmp_path / "d.jsonl", _tiny(tmp_path, 20, 4))
    train, test = load_split(path, 0.25)
    assert len(test) == 15 and np.bincount(test.y).tolist() == [5, 5, 5]
    again = load_split(path, 0.25)[1]
    assert list(again.texts) == list(test.texts)


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "nope"], "unknown query strategy 'nope'"),
    (["--classifier", "nope"], "unknown classifier 'nope'"),
    (["--stopping-params", "{bad"], "--stopping-params: not valid JSON"),
    (["--stopping-params", '{"kappa_average": {"window": 2}}'], "window"),
    (["--seeds", "0"], "--seeds must be >= 1"),
])
def test_bad_input_exits_2_naming_the_flag(tmp_path, tiny_files, capsys, argv, message):
    train, test = tiny_files
    assert main(["--train", train, "--test", test, "--out", str(tmp_path / "x"), "--quiet",
                 *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(tmp_path, capsys):
    assert main(["--train", str(tmp_path / "none.jsonl"), "--test-split", "0.2",
                 "--out", str(tmp_path / "x")]) == 2
    assert "none.jsonl" in capsys.readouterr().err


def test_curve_auc_by_hand():
    # trapezoids: (0.5+0.7)/2*10 + (0.7+0.8)/2*10 = 13.5 over a width of 20 -> 0.675
    assert curve_auc([10, 20, 30], [0.5, 0.7, 0.8]) == pytest.approx(0.675)
    assert curve_auc([10], [0.4]) == 0.4


def _fake_run(strategy, seed, accs, stopping, skipped=None):
    return {"classifier": "c", "strategy": strategy, "seed": seed, "auc": curve_auc(
        [10 * (i + 1) for i in range(len(accs))], accs), "labels_needed": None,
            "rounds": [{"labeled": 10 * (i + 1), "accuracy": a, "macro_f1": a / 2, "seconds": 0.5}
                       for i, a in enumerate(accs)],
            "stopping": stopping, "stopping_skipped": skipped or {}}


def test_summary_and_stopping_table_by_hand():
    runs = [_fake_run("s", 0, [0.5, 0.7, 0.6, 0.8], {"kappa_average": 1, "max_iterations": 2}),
            _fake_run("s", 1, [0.3, 0.5, 0.7, 0.6], {"kappa_average": None, "max_iterations": 2},
                      )]
    (s,) = summarize(runs)
    assert s["labeled"] == [10, 20, 30, 40]
    assert s["accuracy_mean"] == pytest.approx([0.4, 0.6, 0.65, 0.7])
    assert s["accuracy_std"] == pytest.approx([0.1, 0.1, 0.05, 0.1])
    assert s["final_accuracy"] == pytest.approx([0.7, 0.1])
    assert s["seconds_per_round"] == 0.5
    rows = {r["criterion"]: r for r in stopping_table(runs)}
    # kappa: seed 0 stops at round 1 (0.7), seed 1 never (counted at the last round: 0.6)
    assert rows["kappa_average"]["stopped"] == "1/2"
    assert rows["kappa_average"]["round"] == 2.0
    assert rows["kappa_average"]["accuracy_at_stop"] == pytest.approx(0.65)
    assert rows["kappa_average"]["final_accuracy"] == pytest.approx(0.7)
    assert rows["kappa_average"]["best_accuracy"] == pytest.approx(0.75)
    assert rows["max_iterations"]["accuracy_at_stop"] == pytest.approx(0.65)
    assert rows["max_iterations"]["labels_saved"] == 10.0
    md = markdown_tables([s], stopping_table(runs))
    assert "| c | s | 0.400 ± 0.100 | 0.700 ± 0.100 |" in md


def test_a_criterion_that_never_fired_has_no_stop_round():
    runs = [_fake_run("s", seed, [0.5, 0.7, 0.6, 0.8], {"kappa_average": None}) for seed in (0, 1)]
    (row,) = stopping_table(runs)
    assert row["stopped"] == "0/2"
    assert row["round"] is row["labeled"] is row["accuracy_at_stop"] is row["labels_saved"] is None
    assert row["final_accuracy"] == pytest.approx(0.8)
    md = markdown_tables(summarize(runs), [row])
    assert "| s | kappa_average | 0/2 | never | – | – | 0.8000 | 0.8000 |" in md


def test_no_flags_run_the_backends_default_pipeline(tmp_path, tiny_files):
    """Without --strategy/--classifier/--init, simulate runs what the backend runs with no
    AL_* variable: the same classifier, DiverseMiniBatch, and a label-free TypiClust start."""
    from al_engine.registry import default_pipeline
    train, test = tiny_files
    assert main(["--train", train, "--test", test, "--seeds", "1", "--initial", "6", "--batch",
                 "5", "--rounds", "1", "--out", str(tmp_path / "d"), "--quiet", "--no-plots",
                 "--no-estimate"]) == 0
    res = json.loads((tmp_path / "d" / "results.json").read_text())
    run = res["runs"][0]
    assert (run["strategy"], run["classifier"]) == ("diverse_mini_batch",
                                                    default_pipeline()["classifier"])
    assert res["config"]["initialization"] == "typiclust"
