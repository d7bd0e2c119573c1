"""Settings.from_env: defaults, and a one-line error naming the variable for every bad value."""
import pytest

from backend.settings import ENV_DEFAULTS, Settings, SettingsError


def test_defaults(tmp_path, monkeypatch):
    from backend import settings as settings_module
    from tests.conftest import PRODUCT_DEFAULTS
    monkeypatch.setattr(settings_module, "ENV_DEFAULTS", dict(PRODUCT_DEFAULTS))
    s = Settings.from_env({})
    # the measured default pipeline (benchmarks/results/label_efficiency.md); AL_CLASSIFIER=auto
    # is sentence embeddings with the neural extra (installed with [dev]), TF-IDF without
    assert (s.query_strategy, s.classifier, s.stopping_criterion, s.init_strategy) == \
        ("diverse_mini_batch", "embedding_logistic_regression", "kappa_average", "typiclust")
    from al_engine import registry
    monkeypatch.setattr(registry, "neural_installed", lambda: False)
    assert Settings.from_env({}).classifier == "linear_svc"
    assert (s.batch_size, s.min_annotations, s.seed, s.log_level) == (10, 1, 0, "INFO")
    assert s.model_dir == "./model_store" and s.redis_url is None and not s.basic_auth
    assert s.keep_prediction_history is False and s.query_params == {} and s.push_first == 4
    assert (s.push_head, s.push_max, s.push_all) == (6, 200, False)
    assert (s.min_round_interval, s.round_workers, s.job_timeout, s.max_request_mb) == \
        (5.0, 2, 600, 16)


def test_every_variable_is_read():
    env = {"LABEL_STUDIO_URL": "http://ls:8080/", "LABEL_STUDIO_API_KEY": "k",
           "AL_QUERY_STRATEGY": "least_confidence", "AL_QUERY_PARAMS": "{}",
           "AL_CLASSIFIER": "logistic_regression", "AL_CLASSIFIER_PARAMS": '{"C": 2.0}',
           "AL_STOPPING_CRITERION": "max_iterations",
           "AL_STOPPING_PARAMS": '{"max_iterations": 5}', "AL_INIT_STRATEGY": "random_stratified",
           "AL_BATCH_SIZE": "7", "AL_MIN_ANNOTATIONS": "3", "MODEL_DIR": "/tmp/x",
           "REDIS_URL": "redis://127.0.0.1:6379/0", "BASIC_AUTH_USER": "u",
           "BASIC_AUTH_PASS": "s3cret-pw", "LOG_LEVEL": "debug", "AL_KEEP_PREDICTION_HISTORY": "yes",
           "AL_SEED": "42", "AL_PUSH_FIRST": "75", "AL_PUSH_HEAD": "30", "AL_PUSH_MAX": "90",
           "AL_PUSH_ALL": "true", "AL_MIN_ROUND_INTERVAL": "0.5", "AL_ROUND_WORKERS": "3",
           "AL_PROBE_SHARE": "0.25"}
    scale_out = {"REDIS_QUEUE", "AL_JOB_TIMEOUT", "AL_LOCK_TTL", "LABEL_STUDIO_TIMEOUT",
                 "LABEL_STUDIO_RETRIES", "MAX_REQUEST_MB"}  # tested in tests/backend/test_rq_*.py  # tested in tests/backend/test_rq_*.py
    assert set(env) | {"AL_MODEL_PATH"} | scale_out == set(ENV_DEFAULTS)
    s = Settings.from_env(env)
    assert s.label_studio_url == "http://ls:8080"
    assert s.classifier_params == {"C": 2.0} and s.stopping_params == {"max_iterations": 5}
    assert (s.batch_size, s.min_annotations, s.seed, s.push_first) == (7, 3, 42, 75)
    assert (s.push_head, s.push_max, s.push_all, s.min_round_interval, s.round_workers) == \
        (30, 90, True, 0.5, 3)
    assert s.log_level == "DEBUG" and s.keep_prediction_history and s.basic_auth
    assert s.probe_share == 0.25
    assert s.init_strategy == "random_stratified" and s.redis_url.startswith("redis://")
    assert "s3cret-pw" not in str(s.public()) and s.basic_auth_pass == "s3cret-pw"


def test_empty_string_means_default():
    assert Settings.from_env({"AL_BATCH_SIZE": "", "AL_QUERY_STRATEGY": " "}).batch_size == 10


@pytest.mark.parametrize("var,value,allowed", [
    ("AL_QUERY_STRATEGY", "foo", "breaking_ties"),
    ("AL_CLASSIFIER", "svm", "linear_svc"),
    ("AL_STOPPING_CRITERION", "never", "kappa_average"),
    ("AL_INIT_STRATEGY", "magic", "random_balanced"),
    ("AL_QUERY_PARAMS", "[1, 2]", "JSON object"),
    ("AL_QUERY_PARAMS", "{bad", "JSON object"),
    ("AL_CLASSIFIER_PARAMS", "3", "JSON object"),
    ("AL_STOPPING_PARAMS", "null", "JSON object"),
    ("AL_BATCH_SIZE", "0", "integer >= 1"),
    ("AL_PUSH_FIRST", "0", "integer >= 1"),
    ("AL_PUSH_HEAD", "0", "integer >= 1"),
    ("AL_PUSH_MAX", "5", "AL_PUSH_HEAD (6)"),
    ("AL_PUSH_ALL", "all", "true, false"),
    ("AL_MIN_ROUND_INTERVAL", "-1", "0 to 3600"),
    ("AL_PROBE_SHARE", "0.6", "a number from 0 to 0.5"),
    ("AL_PROBE_SHARE", "nan", "a number from 0 to 0.5"),
    ("AL_MIN_ROUND_INTERVAL", "soon", "0 to 3600"),
    ("AL_ROUND_WORKERS", "0", "integer >= 1"),
    ("AL_BATCH_SIZE", "ten", "integer >= 1"),
    ("AL_MIN_ANNOTATIONS", "-1", "integer >= 1"),
    ("AL_SEED", "1.5", "integer >= 0"),
    ("LOG_LEVEL", "verbose", "DEBUG, INFO, WARNING, ERROR"),
    ("AL_KEEP_PREDICTION_HISTORY", "maybe", "true, false, 1, 0, yes, no"),
    ("LABEL_STUDIO_URL", "localhost:8080", "http://"),
    ("LABEL_STUDIO_API_KEY", "key-without-url", "LABEL_STUDIO_URL"),
    ("REDIS_URL", "http://x", "redis://"),
    ("AL_MODEL_PATH", "/does/not/exist", "existing model folder"),
    ("LABEL_STUDIO_TIMEOUT", "0", "> 0 and <= 3600"),
    ("REDIS_QUEUE", "a b", "1-64 characters"),
    ("AL_JOB_TIMEOUT", "9", "integer >= 10"),
    ("AL_LOCK_TTL", "1", "integer >= 2"),
    ("LABEL_STUDIO_RETRIES", "-1", "integer >= 0"),
    ("MAX_REQUEST_MB", "0", "integer >= 1"),
])
def test_bad_value_names_variable_and_allowed_values(var, value, allowed):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    msg = str(err.value)
    assert msg.startswith(var) and allowed in msg and "\n" not in msg


def test_model_dir_must_not_be_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SettingsError, match=r"^MODEL_DIR="):
        Settings.from_env({"MODEL_DIR": str(f)})


@pytest.mark.parametrize("present", ["BASIC_AUTH_USER", "BASIC_AUTH_PASS"])
def test_basic_auth_needs_both(present):
    with pytest.raises(SettingsError, match="both or neither"):
        Settings.from_env({present: "x"})


@pytest.mark.parametrize("var,value,name", [
    ("AL_QUERY_PARAMS", '{"nope": 1}', "nope"),
    ("AL_CLASSIFIER_PARAMS", '{"C": -1}', "C"),
    ("AL_STOPPING_PARAMS", '{"windowsize": 3}', "windowsize"),
])
def test_component_parameters_are_validated_by_building(var, value, name):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({var: value})
    assert str(err.value).startswith(var) and name in str(err.value)


@pytest.mark.parametrize("raw,expected", [("true", True), ("1", True), ("YES", True),
                                          ("false", False), ("0", False), ("no", False)])
def test_booleans(raw, expected):
    assert Settings.from_env({"AL_KEEP_PREDICTION_HISTORY": raw}).keep_prediction_history is expected


def test_readme_table_is_the_generated_one():
    """The README's variable table is ``markdown_table()``: regenerate it with
    ``python -m backend.settings`` after changing a declaration."""
    from pathlib import Path

    from backend.settings import markdown_table
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("| Variable | Default | Allowed values |")
    end = readme.index("\n\n", start)
    assert readme[start:end] == markdown_table()


def test_every_field_is_one_declared_variable():
    from dataclasses import fields

    from backend.settings import SETTINGS
    assert [s.name for s in SETTINGS] == [f.name for f in fields(Settings)]
    assert len({s.env for s in SETTINGS}) == len(SETTINGS) == len(ENV_DEFAULTS)


def test_field_defaults_are_the_declared_defaults():
    """``Settings()`` holds the declared defaults, except ``AL_CLASSIFIER=auto`` (resolved by
    ``from_env``), which is the TF-IDF ``linear_svc`` when built directly."""
    from backend.settings import SETTINGS
    direct = Settings()
    for s in SETTINGS:
        expected = None if s.default is None else s.parser.convert(s.default)
        if s.env == "AL_CLASSIFIER":
            expected = "linear_svc"
        assert getattr(direct, s.name) == expected, s.env


def test_public_hides_secrets_and_adds_mode():
    s = Settings(label_studio_url="http://u:pw@ls:8080", label_studio_api_key="tok",
                 redis_url="redis://:pw@r:6379/0", basic_auth_user="u", basic_auth_pass="p")
    shown = s.public()
    assert set(shown) == {f for f in Settings.__dataclass_fields__
                          if not f.startswith("basic_auth_")} | {"mode", "basic_auth"}
    assert shown["label_studio_api_key"] == "***" and "pw" not in str(shown)
    assert (shown["mode"], shown["basic_auth"]) == ("redis", True)
    assert Settings().public()["label_studio_api_key"] is None


def test_cross_checks_run_after_every_variable_is_parsed(monkeypatch):
    from backend import settings as settings_module
    seen = []
    monkeypatch.setattr(settings_module, "CROSS_CHECKS", (seen.append,))
    s = Settings.from_env({"AL_PUSH_HEAD": "9", "AL_PUSH_MAX": "3"}, validate_components=False)
    assert seen == [s] and s.push_max == 3



def test_documented_component_names_are_registered():
    """The README lists names by hand for the registry choices: each must be registered."""
    import re

    from al_engine.registry import available
    from backend.settings import SETTINGS, Registered
    for s in SETTINGS:
        if isinstance(s.parser, Registered):
            named = {n for n in re.findall(r"`([a-z_]+)`", s.doc)}
            assert named and named <= set(available(s.parser.kind)), s.env


def test_strategy_that_cannot_work_with_the_classifier_is_refused_at_start_up():
    # BALD samples with dropout: a linear SVC has none, so every round would fail
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"AL_QUERY_STRATEGY": "bald", "AL_CLASSIFIER": "linear_svc"})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("AL_QUERY_STRATEGY=bald cannot work with AL_CLASSIFIER=linear_svc")
    assert "transformer" in msg  # names the classifiers that can
    s = Settings.from_env({"AL_QUERY_STRATEGY": "bald", "AL_CLASSIFIER": "transformer"})
    assert (s.query_strategy, s.classifier) == ("bald", "transformer")
