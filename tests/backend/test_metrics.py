"""The science the dashboard shows is the engine's: the labels-needed figure is what
``benchmarks/labels_needed_eval.py`` validates, the configured stopping verdict and the
dashboard's are computed on the same stopping set, labels come from ``labels_from_proba``."""
import numpy as np
import pytest

from al_engine.data import Dataset
from al_engine.estimate import estimate_labels_needed
from al_engine.registry import make_classifier
from backend import metrics, training
from backend.labelconfig import parse_label_config
from backend.settings import Settings
from backend.store import Store
from tests.backend.conftest import MULTI_CONFIG, SINGLE_CONFIG


def _settings(tmp_path, **env):
    return Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                              "AL_CLASSIFIER": "linear_svc", "AL_SEED": "4", **env},
                             validate_components=False)


def _pool(n=120, seed=0):
    """Two noisy classes in 10 dims (features set: no featurizer needed)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 10))
    x[:, 0] += np.where(y == 1, 1.0, -1.0)
    return Dataset(x=x, y=y, target_labels=["pos", "neg"])


def test_labels_needed_is_the_validated_estimate(tmp_path):
    """round_metrics' estimate equals estimate_labels_needed called as the benchmark calls
    it (classifier factory, the labeled tasks, the pool size, the seed)."""
    settings, cfg, ds = _settings(tmp_path), parse_label_config(SINGLE_CONFIG), _pool()
    idx_l = np.arange(0, 120, 2)  # 60 labeled of 120
    ids = np.arange(1000, 1120)
    proba = np.full((120, 2), 0.5)
    m = metrics.round_metrics(Store(settings.model_dir), 1, settings, cfg, ds, idx_l, ids, proba)

    def factory():
        return make_classifier("linear_svc", num_classes=2, multi_label=False)

    expected = estimate_labels_needed(factory, ds[idx_l], pool_size=120, seed=settings.seed)
    assert m["labels_needed"] == expected.to_dict()
    assert [p[0] for p in expected.points] == m["cv"]["curve"]["sizes"]
    assert m["cv"]["accuracy"] == pytest.approx(expected.points[-1][1], abs=1e-5)


def test_configured_and_dashboard_verdicts_share_the_stopping_set(tmp_path):
    """The same criterion under the same name gives the same statistic in /status's
    configured verdict and in the dashboard's table: unlabeled members only."""
    settings = _settings(tmp_path, AL_STOPPING_CRITERION="overall_uncertainty")
    store, cfg = Store(settings.model_dir), parse_label_config(SINGLE_CONFIG)
    ids = np.array([5, 6, 7, 8])
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.7, 0.3]])
    labeled_ids = np.array([5, 6])
    verdict = training.evaluate_stopping(store, 1, settings, ids, proba, cfg, labeled_ids)
    assert verdict["stopping_set"] == 4 and verdict["stop"] is False
    configured = store.load_state(1, training.STOPPING_STATE)["criterion"].history_[-1]
    dashboard = metrics.evaluate_criteria(store, 1, ids, proba, labeled_ids, 2, False)
    assert dashboard["overall_uncertainty"]["value"] == pytest.approx(configured, abs=1e-5)
    entropy = -(0.7 * np.log(0.7) + 0.3 * np.log(0.3)) / np.log(2)
    assert configured == pytest.approx((1.0 + entropy) / 2)  # tasks 7 and 8 only


def test_predicted_labels_single_and_multi_label():
    single = parse_label_config(SINGLE_CONFIG)
    proba = np.array([[0.3, 0.7], [0.6, 0.4]])
    names, conf = training.predicted_labels(proba, single, np.array([1, 0]))
    assert names == [["pos"], ["neg"]] and conf.tolist() == [0.6, 0.7]
    multi = parse_label_config(MULTI_CONFIG)
    proba = np.array([[0.9, 0.2, 0.6], [0.1, 0.4, 0.5]])
    names, conf = training.predicted_labels(proba, multi, np.array([0, 1]))
    assert names == [["a", "c"], []]
    assert conf == pytest.approx([(0.9 + 0.8 + 0.6) / 3, (0.9 + 0.6 + 0.5) / 3])
