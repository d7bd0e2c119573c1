"""The simulation runner on real data (a TREC subset) with the real TF-IDF + SVC pipeline."""
from pathlib import Path

import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.simulate import load_pair, read_jsonl, run_simulation

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def trec_small():
    if not (DATA / "trec.train.jsonl").exists():
        pytest.fail(f"shared datasets not found at {DATA}")
    train, test = load_pair(DATA / "trec.train.jsonl", DATA / "trec.test.jsonl")
    return train[np.arange(1500)], test


def test_run_is_deterministic_and_grows_by_batch(trec_small):
    train, test = trec_small
    a = run_simulation(train, test, strategy="breaking_ties", initial=20, batch=10, rounds=4,
                       progress=False)
    b = run_simulation(train, test, strategy="breaking_ties", initial=20, batch=10, rounds=4,
                       progress=False)
    assert [r["labeled"] for r in a["rounds"]] == [20, 30, 40, 50, 60]
    assert [r["queried"] for r in a["rounds"]] == [r["queried"] for r in b["rounds"]]
    assert [r["accuracy"] for r in a["rounds"]] == [r["accuracy"] for r in b["rounds"]]
    queried = [i for r in a["rounds"] for i in r["queried"]]
    assert len(queried) == len(set(queried)) == 60


def test_active_learning_beats_its_own_start(trec_small):
    train, test = trec_small
    run = run_simulation(train, test, strategy="least_confidence", initial=20, batch=20,
                         rounds=10, progress=False)
    acc = [r["accuracy"] for r in run["rounds"]]
    # 6 classes: 20 stratified labels give a weak model; 220 labels must do clearly better.
    assert acc[-1] > acc[0] + 0.1, acc


def test_read_jsonl_rejects_rows_without_text_or_label(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "a", "label": "x"}\n{"txt": "b"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_jsonl(p)


def test_multi_label_jsonl_round_trips(tmp_path):
    p = tmp_path / "ml.jsonl"
    p.write_text('{"text": "a", "labels": ["x", "y"]}\n{"text": "b", "labels": []}\n')
    texts, labels = read_jsonl(p)
    ds = Dataset.from_texts(texts, labels)
    assert ds.is_multi_label and ds.y.toarray().tolist() == [[1, 1], [0, 0]]


def test_label_free_initialization_starts_from_what_typiclust_picks(trec_small):
    """``--init typiclust``: the first labels are TypiClust's picks on the pool's features
    (the classifier's TF-IDF here), chosen without looking at a label."""
    from al_engine.coldstart import TypiClust
    from al_engine.features import TfidfFeaturizer
    train, test = trec_small
    run = run_simulation(train, test, strategy="breaking_ties", initialization="typiclust",
                         initial=12, batch=10, rounds=1, progress=False)
    x = TfidfFeaturizer().fit_transform(train.texts)
    expected = TypiClust(seed=0).select(x, 12)
    assert sorted(run["rounds"][0]["queried"]) == sorted(expected.tolist())
