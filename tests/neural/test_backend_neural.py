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
