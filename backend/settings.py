"""Every environment variable of the backend, parsed and validated once, into a frozen dataclass.

A bad value stops start-up with a one-line :class:`SettingsError` that names the variable and
the allowed values, e.g. ``AL_QUERY_STRATEGY='foo' is invalid; allowed: breaking_ties, ...``.
An empty string counts as unset (docker-compose writes ``VAR=`` for an unset variable).
"""
from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urlparse

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")

#: Every variable read by :meth:`Settings.from_env`, with its default (for docs and tests).
ENV_DEFAULTS: dict[str, str | None] = {
    "LABEL_STUDIO_URL": None,
    "LABEL_STUDIO_API_KEY": None,
    "AL_QUERY_STRATEGY": "diverse_mini_batch",
    "AL_QUERY_PARAMS": "{}",
    "AL_CLASSIFIER": "auto",
    "AL_CLASSIFIER_PARAMS": "{}",
    "AL_STOPPING_CRITERION": "kappa_average",
    "AL_STOPPING_PARAMS": "{}",
    "AL_INIT_STRATEGY": "typiclust",
    "AL_BATCH_SIZE": "10",
    "AL_MIN_ANNOTATIONS": "1",
    "AL_MODEL_PATH": None,
    "MODEL_DIR": "./model_store",
    "REDIS_URL": None,
    "BASIC_AUTH_USER": None,
    "BASIC_AUTH_PASS": None,
    "LOG_LEVEL": "INFO",
    "AL_KEEP_PREDICTION_HISTORY": "false",
    "AL_SEED": "0",
    "REDIS_QUEUE": "studio-al",
    "AL_JOB_TIMEOUT": "600",
    "AL_LOCK_TTL": "15",
    "LABEL_STUDIO_TIMEOUT": "30",
    "LABEL_STUDIO_RETRIES": "3",
    "MAX_REQUEST_MB": "16",
    "AL_PUSH_FIRST": "4",
    "AL_PUSH_HEAD": "6",
    "AL_PUSH_MAX": "200",
    "AL_PUSH_ALL": "false",
    "AL_MIN_ROUND_INTERVAL": "5",
    "AL_ROUND_WORKERS": "2",
}


class SettingsError(ValueError):
    """A configuration value is invalid. The message is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    """The validated configuration. Build it with :meth:`from_env`."""

    label_studio_url: str | None = None
    label_studio_api_key: str | None = None
    query_strategy: str = "diverse_mini_batch"
    query_params: dict = field(default_factory=dict)
    classifier: str = "linear_svc"
    classifier_params: dict = field(default_factory=dict)
    stopping_criterion: str = "kappa_average"
    stopping_params: dict = field(default_factory=dict)
    init_strategy: str = "typiclust"
    batch_size: int = 10
    min_annotations: int = 1
    model_path: str | None = None
    model_dir: str = "./model_store"
    redis_url: str | None = None
    basic_auth_user: str | None = None
    basic_auth_pass: str | None = None
    log_level: str = "INFO"
    keep_prediction_history: bool = False
    seed: int = 0
    redis_queue: str = "studio-al"
    job_timeout: int = 600
    lock_ttl: int = 15
    label_studio_timeout: float = 30.0
    label_studio_retries: int = 3
    max_request_mb: int = 16
    push_first: int = 4
    push_head: int = 6
    push_max: int = 200
    push_all: bool = False
    min_round_interval: float = 5.0
    round_workers: int = 2

    @property
    def basic_auth(self) -> bool:
        return self.basic_auth_user is not None

    def public(self) -> dict[str, Any]:
        """The settings without secrets, for /status and logs."""
        return {
            "label_studio_url": redact_url(self.label_studio_url),
            "label_studio_api_key": "***" if self.label_studio_api_key else None,
            "query_strategy": self.query_strategy, "query_params": self.query_params,
            "classifier": self.classifier, "classifier_params": self.classifier_params,
            "stopping_criterion": self.stopping_criterion, "stopping_params": self.stopping_params,
            "init_strategy": self.init_strategy, "batch_size": self.batch_size,
            "min_annotations": self.min_annotations, "model_path": self.model_path,
            "model_dir": self.model_dir, "mode": "redis" if self.redis_url else "embedded",
            "basic_auth": self.basic_auth, "log_level": self.log_level,
            "keep_prediction_history": self.keep_prediction_history, "seed": self.seed,
            "redis_url": redact_url(self.redis_url), "redis_queue": self.redis_queue,
            "job_timeout": self.job_timeout, "lock_ttl": self.lock_ttl,
            "label_studio_timeout": self.label_studio_timeout,
            "label_studio_retries": self.label_studio_retries,
            "max_request_mb": self.max_request_mb, "push_first": self.push_first,
            "push_head": self.push_head, "push_max": self.push_max, "push_all": self.push_all,
            "min_round_interval": self.min_round_interval, "round_workers": self.round_workers,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, validate_components: bool = True
                 ) -> "Settings":
        """Parse and validate every variable of ``environ`` (default ``os.environ``).

        With ``validate_components`` the strategy, classifier, stopping criterion and
        initialization are built once with their parameters, so that a bad parameter is
        reported at start-up rather than at the first retrain.

        Raises
        ------
        SettingsError
            One line: the variable, its value and the allowed values.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name)
            if value is None or value.strip() == "":
                return ENV_DEFAULTS[name]
            return value.strip()

        from al_engine.registry import available, default_pipeline

        def choice(name: str, kind: str) -> str:
            value = get(name)
            allowed = available(kind)
            if value not in allowed:
                extra = "auto, " if name == "AL_CLASSIFIER" else ""
                raise SettingsError(f"{name}={value!r} is invalid; allowed: {extra}{', '.join(allowed)}")
            return value

        url = get("LABEL_STUDIO_URL")
        if url is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise SettingsError(f"LABEL_STUDIO_URL={url!r} is invalid; allowed: an http:// or "
                                    "https:// URL such as http://localhost:8080")
            url = url.rstrip("/")
        if get("LABEL_STUDIO_API_KEY") is not None and url is None:
            raise SettingsError("LABEL_STUDIO_API_KEY is set while LABEL_STUDIO_URL is unset; "
                                "allowed: set both (the key is only ever sent to that URL) or "
                                "neither (Label Studio's first /setup is trusted)")
        redis_url = get("REDIS_URL")
        if redis_url is not None and urlparse(redis_url).scheme not in ("redis", "rediss", "unix"):
            raise SettingsError(f"REDIS_URL={redis_url!r} is invalid; allowed: a redis://, "
                                "rediss:// or unix:// URL, or unset for embedded mode")
        user, password = get("BASIC_AUTH_USER"), get("BASIC_AUTH_PASS")
        if (user is None) != (password is None):
            missing = "BASIC_AUTH_PASS" if password is None else "BASIC_AUTH_USER"
            raise SettingsError(f"{missing} is unset while "
                                f"{'BASIC_AUTH_USER' if password is None else 'BASIC_AUTH_PASS'} "
                                "is set; allowed: set both or neither")
        level = get("LOG_LEVEL").upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={get('LOG_LEVEL')!r} is invalid; allowed: "
                                f"{', '.join(LOG_LEVELS)}")
        model_path = get("AL_MODEL_PATH")
        if model_path is not None and not os.path.isdir(model_path):
            raise SettingsError(f"AL_MODEL_PATH={model_path!r} is invalid; allowed: an existing "
                                "model folder, or unset")
        queue = get("REDIS_QUEUE")
        if not _QUEUE_RE.fullmatch(queue):
            raise SettingsError(f"REDIS_QUEUE={queue!r} is invalid; allowed: 1-64 characters "
                                "from A-Z a-z 0-9 _ . - (the RQ queue name and Redis key prefix)")
        ls_timeout = get("LABEL_STUDIO_TIMEOUT")
        try:
            ls_timeout_f = float(ls_timeout)
        except ValueError:
            ls_timeout_f = -1.0
        if not 0 < ls_timeout_f <= 3600:
            raise SettingsError(f"LABEL_STUDIO_TIMEOUT={ls_timeout!r} is invalid; allowed: "
                                "seconds, a number > 0 and <= 3600")
        interval = get("AL_MIN_ROUND_INTERVAL")
        try:
            interval_f = float(interval)
        except ValueError:
            interval_f = -1.0
        if not 0 <= interval_f <= 3600:
            raise SettingsError(f"AL_MIN_ROUND_INTERVAL={interval!r} is invalid; allowed: "
                                "seconds between two round starts of a project, 0 to 3600")
        push_head = _int("AL_PUSH_HEAD", get("AL_PUSH_HEAD"), minimum=1)
        push_max = _int("AL_PUSH_MAX", get("AL_PUSH_MAX"), minimum=1)
        if push_max < push_head:
            raise SettingsError(f"AL_PUSH_MAX={push_max} is invalid; allowed: an integer >= "
                                f"AL_PUSH_HEAD ({push_head})")
        model_dir = get("MODEL_DIR")
        if os.path.exists(model_dir) and not os.path.isdir(model_dir):
            raise SettingsError(f"MODEL_DIR={model_dir!r} is invalid; allowed: a directory "
                                "(created if missing), not a file")

        settings = cls(
            label_studio_url=url,
            label_studio_api_key=get("LABEL_STUDIO_API_KEY"),
            query_strategy=choice("AL_QUERY_STRATEGY", "query_strategy"),
            query_params=_json_object("AL_QUERY_PARAMS", get("AL_QUERY_PARAMS")),
            classifier=default_pipeline()["classifier"] if get("AL_CLASSIFIER") == "auto" else
            choice("AL_CLASSIFIER", "classifier"),
            classifier_params=_json_object("AL_CLASSIFIER_PARAMS", get("AL_CLASSIFIER_PARAMS")),
            stopping_criterion=choice("AL_STOPPING_CRITERION", "stopping_criterion"),
            stopping_params=_json_object("AL_STOPPING_PARAMS", get("AL_STOPPING_PARAMS")),
            init_strategy=choice("AL_INIT_STRATEGY", "initialization"),
            batch_size=_int("AL_BATCH_SIZE", get("AL_BATCH_SIZE"), minimum=1),
            min_annotations=_int("AL_MIN_ANNOTATIONS", get("AL_MIN_ANNOTATIONS"), minimum=1),
            model_path=model_path,
            model_dir=model_dir,
            redis_url=redis_url,
            basic_auth_user=user,
            basic_auth_pass=password,
            log_level=level,
            keep_prediction_history=_bool("AL_KEEP_PREDICTION_HISTORY",
                                          get("AL_KEEP_PREDICTION_HISTORY")),
            seed=_int("AL_SEED", get("AL_SEED"), minimum=0),
            redis_queue=queue,
            job_timeout=_int("AL_JOB_TIMEOUT", get("AL_JOB_TIMEOUT"), minimum=10),
            lock_ttl=_int("AL_LOCK_TTL", get("AL_LOCK_TTL"), minimum=2),
            label_studio_timeout=ls_timeout_f,
            label_studio_retries=_int("LABEL_STUDIO_RETRIES", get("LABEL_STUDIO_RETRIES"),
                                      minimum=0),
            max_request_mb=_int("MAX_REQUEST_MB", get("MAX_REQUEST_MB"), minimum=1),
            push_first=_int("AL_PUSH_FIRST", get("AL_PUSH_FIRST"), minimum=1),
            push_head=push_head,
            push_max=push_max,
            push_all=_bool("AL_PUSH_ALL", get("AL_PUSH_ALL")),
            min_round_interval=interval_f,
            round_workers=_int("AL_ROUND_WORKERS", get("AL_ROUND_WORKERS"), minimum=1),
        )
        if validate_components:
            validate_components_of(settings)
        return settings


_QUEUE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def redact_url(url: str | None) -> str | None:
    """``url`` with its password (and user) replaced by ``***``, for logs and /status."""
    if not url:
        return url
    parsed = urlparse(url)
    if parsed.password is None and parsed.username is None:
        return url
    host = parsed.hostname or ""
    if parsed.port:
        host = f"{host}:{parsed.port}"
    return parsed._replace(netloc=f"***@{host}").geturl()


def _json_object(name: str, raw: str) -> dict:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name}={raw!r} is invalid; allowed: a JSON object such as "
                            f'{{"key": 1}} ({exc.msg})') from None
    if not isinstance(value, dict):
        raise SettingsError(f"{name}={raw!r} is invalid; allowed: a JSON object such as "
                            '{"key": 1}')
    return value


def _int(name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw, 10)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SettingsError(f"{name}={raw!r} is invalid; allowed: an integer >= {minimum}")
    return value


def _bool(name: str, raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is invalid; allowed: true, false, 1, 0, yes, no")


def _with_num_classes(kind: str, name: str, params: dict, num_classes: int = 2) -> dict:
    """``params`` plus a placeholder ``num_classes`` when the component needs one."""
    from al_engine.registry import resolve
    factory = resolve(kind, name)
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return dict(params)
    if "num_classes" in accepted and "num_classes" not in params:
        return {**params, "num_classes": num_classes}
    return dict(params)


def validate_components_of(settings: Settings) -> None:
    """Build every configured component once; raise :class:`SettingsError` on a bad parameter."""
    from al_engine.exceptions import InvalidParameterError
    from al_engine.registry import make
    checks = [
        ("AL_QUERY_PARAMS", "query_strategy", settings.query_strategy, settings.query_params),
        ("AL_CLASSIFIER_PARAMS", "classifier", settings.classifier, settings.classifier_params),
        ("AL_STOPPING_PARAMS", "stopping_criterion", settings.stopping_criterion,
         settings.stopping_params),
        ("AL_INIT_STRATEGY", "initialization", settings.init_strategy, {}),
    ]
    for var, kind, name, params in checks:
        try:
            make(kind, name, **_with_num_classes(kind, name, params))
        except InvalidParameterError as exc:
            raise SettingsError(f"{var}={json.dumps(params)} is invalid for {name}: "
                                f"{str(exc).splitlines()[0]}") from None
        except ImportError as exc:
            raise SettingsError(f"{var}: component {name!r} cannot be loaded: {exc}") from None
