"""The product default (no AL_* variable) end to end in run_round, with the real
all-MiniLM-L6-v2: a label-free TypiClust queue before any label, TF-IDF while the pool's
embeddings are filled, then DiverseMiniBatch on MiniLM embeddings + logistic regression."""
from __future__ import annotations

import pytest

from backend import settings as settings_module
from backend import training
from backend.settings import Settings
from backend.store import Store
from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio, make_tasks
from tests.backend.test_training import NEG, POS, _webhook, setup_project
from tests.conftest import PRODUCT_DEFAULTS

pytestmark = pytest.mark.neural_real


def test_default_pipeline_from_cold_start_to_embeddings(tmp_path, monkeypatch):
    from al_engine.features_neural import clear_embedding_cache
    clear_embedding_cache()
    monkeypatch.setattr(settings_module, "ENV_DEFAULTS", dict(PRODUCT_DEFAULTS))
    settings = Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                                  "AL_PUSH_HEAD": "20"})
    assert (settings.classifier, settings.query_strategy, settings.init_strategy) == \
        ("embedding_logistic_regression", "diverse_mini_batch", "typiclust")
    store = Store(settings.model_dir)
    setup_project(store)
    ls = FakeLabelStudio(make_tasks(POS + NEG))
    ls.connect(store, 1, SINGLE_CONFIG)

    cold = training.run_round(1, settings, store, ls)           # no label yet
    assert cold["status"] == "ok" and cold["cold_start"] and cold["strategy_used"] == "init:typiclust"
    # the cold round ranked on TF-IDF and embedded the 10 texts after its push
    assert cold["features"]["used"] == "tfidf" and cold["features"]["embedded"] == 10
    for tid, label in ((1, "pos"), (6, "neg")):
        ls.annotate(tid, [label])
        _webhook(store, ls.tasks[tid - 1]["annotations"][-1]["id"], tid)
    rec = training.run_round(1, settings, store, ls)
    assert rec["status"] == "ok" and not rec["cold_start"]
    assert rec["features"] == {"used": "embeddings", "embedded": 10, "total": 10}
    assert rec["strategy_used"] == "diverse_mini_batch" and rec["n_labeled"] == 2
    clf = store.load_model(1, rec["version"])["clf"]
    assert type(clf.featurizer).__name__ == "SentenceEmbeddingFeaturizer"
    # the 8 unlabeled tasks are all ranked; the queue starts with the DiverseMiniBatch batch
    preds = ls.current_predictions()
    assert sorted(preds) == [2, 3, 4, 5, 7, 8, 9, 10]
