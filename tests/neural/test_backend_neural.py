"""Backend integration: AL_CLASSIFIER / AL_MODEL_PATH select the neural classifiers; the web
process's start-up (settings validation builds the classifier) never imports torch."""
from __future__ import annotations

import subprocess
import sys

from backend.settings import Settings
from backend.training import classifier_params


def test_model_path_and_cache_dir_reach_classifiers_that_take_them(tiny_bert_path, tmp_path):
    env = {"AL_CLASSIFIER": "transformer", "AL_MODEL_PATH": tiny_bert_path,
           "MODEL_DIR": str(tmp_path), "AL_CLASSIFIER_PARAMS": '{"num_epochs": 2}'}
    params = classifier_params(Settings.from_env(env))
    assert params == {"num_epochs": 2, "model_path": tiny_bert_path}
    emb = classifier_params(Settings.from_env({**env, "AL_CLASSIFIER": "embedding_logistic_regression",
                                               "AL_CLASSIFIER_PARAMS": "{}"}))
    assert emb == {"model_path": tiny_bert_path, "cache_dir": str(tmp_path / "embeddings")}
    assert classifier_params(Settings.from_env({**env, "AL_CLASSIFIER": "linear_svc",
                                                "AL_CLASSIFIER_PARAMS": "{}"})) == {}


def test_explicit_params_win(tiny_bert_path, tmp_path):
    env = {"AL_CLASSIFIER": "setfit", "AL_MODEL_PATH": tiny_bert_path, "MODEL_DIR": str(tmp_path),
           "AL_CLASSIFIER_PARAMS": f'{{"model_path": "{tmp_path}"}}'}
    assert classifier_params(Settings.from_env(env))["model_path"] == str(tmp_path)


def test_web_start_up_with_a_neural_classifier_does_not_import_torch(tiny_bert_path):
    code = ("import sys\nfrom backend.settings import Settings\n"
            f"Settings.from_env({{'AL_CLASSIFIER': 'transformer', 'AL_MODEL_PATH': {tiny_bert_path!r},"
            " 'AL_QUERY_STRATEGY': 'badge'})\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_predict_for_an_unranked_task_with_a_neural_classifier_does_not_import_torch(tmp_path):
    code = f"""
import sys
from backend.app import create_app
from backend.settings import Settings
from backend.store import Store
cfg = '<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/><Choice value="b"/></Choices></View>'
s = Settings.from_env({{"MODEL_DIR": {str(tmp_path)!r}, "AL_CLASSIFIER": "setfit", "LOG_LEVEL": "ERROR"}},
                      validate_components=False)
app = create_app(s, client_factory=lambda url, key: None)
c = app.test_client()
assert c.post("/setup", json={{"project": "1.1", "schema": cfg}}).status_code == 200
store = Store({str(tmp_path)!r})
from backend.ranking import Ranking
empty = Ranking.build([], [], None, None, ["a", "b"], False)
store.write_version(1, "studio-al-0001-x", {{"clf": object(), "labels": ["a", "b"], "multi_label": False}}, empty)
store.set_current(1, "studio-al-0001-x")
r = c.post("/predict", json={{"project": "1.1", "tasks": [{{"id": 7, "data": {{"text": "new task"}}}}]}})
assert r.status_code == 200, r.get_json()
print(r.get_json()["results"][0]["result"], "torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["[]", "False"]


def _embedding_env(tiny_bert_path, tmp_path, interval="5"):
    from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio, make_tasks
    from tests.backend.test_training import NEG, POS, setup_project
    from al_engine.features_neural import clear_embedding_cache
    from backend.store import Store
    clear_embedding_cache()  # the in-memory cache is process-wide: start from an empty one
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "AL_PUSH_HEAD": "20", "AL_CLASSIFIER": "embedding_logistic_regression",
                                  "AL_MODEL_PATH": tiny_bert_path, "AL_MIN_ROUND_INTERVAL": interval},
                                 validate_components=False)
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)
    for tid, label in ((1, "pos"), (2, "pos"), (6, "neg"), (7, "neg")):
        ls.annotate(tid, [label])
    return settings, store, ls


def test_rounds_train_on_tfidf_until_the_embeddings_are_filled(tiny_bert_path, tmp_path, monkeypatch):
    """A round never waits for the pool's embeddings: it trains on TF-IDF, then embeds
    missing texts after its push (bounded), and asks for another round; the next round
    trains on the embeddings."""
    from backend import embeddings, training
    settings, store, ls = _embedding_env(tiny_bert_path, tmp_path)
    monkeypatch.setattr(embeddings, "FILL_BUDGET_S", 0.0)   # no time to embed in round 1
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and rec["again"] is True
    assert rec["features"] == {"used": "tfidf", "embedded": 0, "total": 10, "encoded": 0,
                               "seconds": rec["features"]["seconds"]}
    assert type(store.load_model(1, rec["version"])["clf"].featurizer).__name__ == "TfidfFeaturizer"
    monkeypatch.setattr(embeddings, "FILL_BUDGET_S", 60.0)
    monkeypatch.setattr(embeddings, "CHUNK", 3)               # 4 chunks of at most 3 texts
    rec = training.run_round(1, settings, store, ls)
    assert rec["features"]["used"] == "tfidf" and rec["features"]["encoded"] == 10
    # all embedded: this round still trained on TF-IDF, so it asks for the round that switches
    assert rec["features"]["embedded"] == 10 and rec["again"] is True
    rec = training.run_round(1, settings, store, ls)
    assert rec["features"] == {"used": "embeddings", "embedded": 10, "total": 10}
    clf = store.load_model(1, rec["version"])["clf"]
    assert type(clf.featurizer).__name__ == "SentenceEmbeddingFeaturizer"
    assert rec["again"] is False and rec["n_labeled"] == 4


def test_embedding_fill_stops_when_a_newer_round_waits(tiny_bert_path, tmp_path, monkeypatch):
    from backend import embeddings, rounds, training
    # AL_MIN_ROUND_INTERVAL=0: no slack before the next round could start
    settings, store, ls = _embedding_env(tiny_bert_path, tmp_path, interval="0")
    monkeypatch.setattr(embeddings, "CHUNK", 2)
    calls = []
    monkeypatch.setattr(rounds.Round, "_no_newer_round", lambda self: calls.append(1) or len(calls) <= 3)
    rec = training.run_round(1, settings, store, ls)
    # two chunks of 2 texts, then a newer round is waiting: stop, leave the rest for later
    assert rec["features"]["encoded"] == 4 and rec["features"]["embedded"] == 4
    assert rec["again"] is True


def test_embedding_fill_uses_the_slack_before_the_next_round_may_start(tiny_bert_path, tmp_path,
                                                                        monkeypatch):
    """A newer round always waiting (annotators labeling without pause) still lets the fill
    run until AL_MIN_ROUND_INTERVAL after the round's start: that time delays nobody."""
    from backend import embeddings, rounds, training
    settings, store, ls = _embedding_env(tiny_bert_path, tmp_path, interval="60")
    monkeypatch.setattr(embeddings, "CHUNK", 2)
    monkeypatch.setattr(rounds.Round, "_no_newer_round", lambda self: False)
    rec = training.run_round(1, settings, store, ls)
    assert rec["features"]["encoded"] == 10 and rec["features"]["embedded"] == 10
