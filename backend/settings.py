"""Every environment variable of the backend, declared once, parsed and validated into a frozen
dataclass.

Each field of :class:`Settings` is one variable: :func:`setting` gives its name, its default
(the raw string, as it would be written in the environment), its :class:`Parser` (conversion,
allowed values, the text of the error) and a one-line doc. Everything else is derived from
those declarations: the field defaults, :data:`ENV_DEFAULTS`, :meth:`Settings.from_env`,
:meth:`Settings.public` and the README's table (:func:`markdown_table`, printed by
``python -m backend.settings``; ``tests/backend/test_settings.py`` checks the README holds it).

A bad value stops start-up with a one-line :class:`SettingsError` that names the variable and
the allowed values, e.g. ``AL_QUERY_STRATEGY='foo' is invalid; allowed: breaking_ties, ...``.
An empty string counts as unset (docker-compose writes ``VAR=`` for an unset variable).
Checks that involve two variables run once every variable is parsed: :data:`CROSS_CHECKS`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping
from urllib.parse import urlparse

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class SettingsError(ValueError):
    """A configuration value is invalid. The message is one line naming the variable."""


class Invalid(ValueError):
    """Raised by a :class:`Parser` for a value it does not allow; ``detail`` is appended to
    the message in parentheses (e.g. the JSON decoder's complaint)."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


# ---------------------------------------------------------------------------------- parsers
class Parser:
    """Turns the raw string of one variable into its value.

    :meth:`convert` is pure (no registry, no file system): it also makes the field default.
    :meth:`parse` may look further (registry names, existing folders). Both raise
    :class:`Invalid`; :meth:`allowed` is the text of the error, :attr:`short` the README's.
    """

    #: README text of the allowed values ("" when the doc line says it all).
    short = ""

    def convert(self, raw: str) -> Any:
        return raw

    def parse(self, raw: str) -> Any:
        return self.convert(raw)

    def allowed(self) -> str:
        return "any text"


class Text(Parser):
    """Any string (tokens, user names)."""


class Url(Parser):
    """A URL with one of ``schemes``; with ``need_host`` it must name a host."""

    def __init__(self, schemes: tuple[str, ...], allowed: str, short: str,
                 need_host: bool = False) -> None:
        self.schemes = schemes
        self.allowed_text = allowed
        self.short = short
        self.need_host = need_host

    def convert(self, raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in self.schemes or (self.need_host and not parsed.netloc):
            raise Invalid()
        return raw.rstrip("/") if self.need_host else raw

    def allowed(self) -> str:
        return self.allowed_text


class Registered(Parser):
    """A name registered in :mod:`al_engine.registry` under ``kind``; with ``auto`` also
    ``auto``, resolved to :func:`al_engine.registry.default_pipeline`'s choice."""

    def __init__(self, kind: str, auto: bool = False) -> None:
        self.kind = kind
        self.auto = auto

    def parse(self, raw: str) -> str:
        from al_engine.registry import available, default_pipeline
        if self.auto and raw == "auto":
            return default_pipeline()[self.kind]
        if raw not in available(self.kind):
            raise Invalid()
        return raw

    def allowed(self) -> str:
        from al_engine.registry import available
        return ("auto, " if self.auto else "") + ", ".join(available(self.kind))


class OneOf(Parser):
    """One of fixed ``values``, compared in upper case."""

    def __init__(self, values: tuple[str, ...]) -> None:
        self.values = values
        self.short = ", ".join(f"`{v}`" for v in values)

    def convert(self, raw: str) -> str:
        if raw.upper() not in self.values:
            raise Invalid()
        return raw.upper()

    def allowed(self) -> str:
        return ", ".join(self.values)


class JsonObject(Parser):
    """A JSON object (the parameters of a component)."""

    short = "a JSON object"

    def convert(self, raw: str) -> dict:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise Invalid(exc.msg) from None
        if not isinstance(value, dict):
            raise Invalid()
        return value

    def allowed(self) -> str:
        return 'a JSON object such as {"key": 1}'


class Int(Parser):
    """A base-10 integer ``>= minimum``."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.short = f"integer ≥ {minimum}"

    def convert(self, raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise Invalid() from None
        if value < self.minimum:
            raise Invalid()
        return value

    def allowed(self) -> str:
        return f"an integer >= {self.minimum}"


class Seconds(Parser):
    """A number of seconds in ``[low, high]`` (``(low, high]`` with ``low_open``)."""

    def __init__(self, low: float, high: float, low_open: bool = False) -> None:
        self.low = low
        self.high = high
        self.low_open = low_open
        self.short = (f"seconds, > {low:g} and ≤ {high:g}" if low_open else
                      f"seconds, {low:g}–{high:g}")

    def convert(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise Invalid() from None
        above = value > self.low if self.low_open else value >= self.low
        if not (above and value <= self.high):
            raise Invalid()
        return value

    def allowed(self) -> str:
        if self.low_open:
            return f"seconds, a number > {self.low:g} and <= {self.high:g}"
        return f"seconds, {self.low:g} to {self.high:g}"


class Fraction(Parser):
    """A number in ``[low, high]``."""

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high
        self.short = f"a number, {low:g}–{high:g}"

    def convert(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise Invalid() from None
        if not self.low <= value <= self.high:  # also rejects nan
            raise Invalid()
        return value

    def allowed(self) -> str:
        return f"a number from {self.low:g} to {self.high:g}"


class Bool(Parser):
    """``true``/``false``, ``1``/``0``, ``yes``/``no`` in any case."""

    short = "`true`, `false`, `1`, `0`, `yes`, `no`"

    def convert(self, raw: str) -> bool:
        low = raw.lower()
        if low not in _TRUE + _FALSE:
            raise Invalid()
        return low in _TRUE

    def allowed(self) -> str:
        return "true, false, 1, 0, yes, no"


class Pattern(Parser):
    """A string matching ``regex`` in full."""

    def __init__(self, regex: str, allowed: str, short: str) -> None:
        self.regex = regex
        self.allowed_text = allowed
        self.short = short

    def convert(self, raw: str) -> str:
        if not re.fullmatch(self.regex, raw):
            raise Invalid()
        return raw

    def allowed(self) -> str:
        return self.allowed_text


class ExistingDir(Parser):
    """A folder that exists."""

    short = "an existing local model folder"

    def parse(self, raw: str) -> str:
        if not os.path.isdir(raw):
            raise Invalid()
        return raw

    def allowed(self) -> str:
        return "an existing model folder, or unset"


class Directory(Parser):
    """A folder, created later if missing; an existing file is refused."""

    short = "a directory (created if missing)"

    def parse(self, raw: str) -> str:
        if os.path.exists(raw) and not os.path.isdir(raw):
            raise Invalid()
        return raw

    def allowed(self) -> str:
        return "a directory (created if missing), not a file"


# ---------------------------------------------------------------------------------- declarations
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


def _masked(value: str | None) -> str | None:
    return "***" if value else None


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Setting:
    """The declaration of one environment variable (see :func:`setting`).

    Attributes
    ----------
    env : str
        The variable's name.
    default : str or None
        The raw default, as it would be written in the environment (``None``: unset).
    parser : Parser
        Conversion, allowed values and error text.
    doc : str
        One line for the README's "Allowed values" column (after the parser's short text).
    default_doc : str
        Appended to the README's "Default" column (e.g. what "unset" means).
    show : callable or None
        How :meth:`Settings.public` shows the value; ``None`` leaves it out.
    name : str
        The :class:`Settings` attribute (filled in from the class).
    """

    env: str
    default: str | None
    parser: Parser
    doc: str = ""
    default_doc: str = ""
    show: Callable[[Any], Any] | None = _same
    name: str = ""

    def read(self, environ: Mapping[str, str]) -> Any:
        """This variable's value in ``environ``; raise :class:`SettingsError` if not allowed."""
        raw = environ.get(self.env)
        raw = ENV_DEFAULTS[self.env] if raw is None or raw.strip() == "" else raw.strip()
        if raw is None:
            return None
        try:
            return self.parser.parse(raw)
        except Invalid as exc:
            detail = f" ({exc.detail})" if exc.detail else ""
            raise SettingsError(f"{self.env}={raw!r} is invalid; allowed: "
                                f"{self.parser.allowed()}{detail}") from None

    def markdown_row(self) -> str:
        """This variable's row of the README table."""
        default = "unset" if self.default is None else f"`{self.default}`"
        allowed = ": ".join(t for t in (self.parser.short, self.doc) if t)
        return f"| `{self.env}` | {default}{self.default_doc} | {allowed} |"


def setting(env: str, default: str | None, parser: Parser, doc: str = "", *,
            default_doc: str = "", show: Callable[[Any], Any] | None = _same,
            value: Any = None) -> Any:
    """A :class:`Settings` field read from the variable ``env`` (see :class:`Setting`).

    The field default is ``value`` when given, else ``parser.convert(default)``.
    """
    meta = {"setting": Setting(env, default, parser, doc, default_doc, show)}
    if value is None and default is not None:
        value = parser.convert(default)
    if isinstance(value, (dict, list)):  # a fresh one per instance
        return field(default_factory=lambda: parser.convert(default), metadata=meta)
    return field(default=value, metadata=meta)


_STRATEGY_DOC = (
    "`diverse_mini_batch` (breaking ties, one task per cluster of the 100·n most uncertain), "
    "`breaking_ties`, `least_confidence`, `prediction_entropy`, `random`, `subsampling` "
    "(every registered name)")
_CLASSIFIER_DOC = (
    "`embedding_logistic_regression` (MiniLM sentence embeddings; rounds train on TF-IDF until "
    "every text is embedded, see Large projects), `linear_svc`, `logistic_regression` (TF-IDF "
    "features), `transformer`, `setfit`, `kimcnn`")
_INIT_DOC = (
    "`random`, `random_stratified`, `random_balanced`, or label-free on the classifier's "
    "features: `typiclust` (most typical text of each of the largest k-means clusters), "
    "`kmeans_centres` (orders the pool before the first model; the label-free ones pick the "
    "first max(`AL_BATCH_SIZE`, `AL_PUSH_HEAD`) tasks, the rest follow in seeded random order)")
_PUSH_FIRST_DOC = (
    "predictions of the head created (one `POST /api/predictions` each, ~0.1 s) before the "
    "project switches to the new version, i.e. how many annotators can take a fresh task at "
    "once; the rest of the head follows the switch")
_PUSH_ALL_DOC = (
    "`true` also bulk-imports every other task's prediction (all scores visible in the Data "
    "Manager), at a cost linear in the project: ~15 s per import request and ~30 ms per deleted "
    "prediction at 10k tasks, during which SQLite locks annotators out")
_INTERVAL_DOC = (
    "least time between two round starts of a project (a webhook flood cannot become a flood "
    "of Label Studio writes); a round also leaves Label Studio alone for a quarter of the time "
    "it spent on it")


@dataclass(frozen=True)
class Settings:
    """The validated configuration, one field per environment variable. Build it with
    :meth:`from_env`; the declarations below are the only list of variables."""

    label_studio_url: str | None = setting(
        "LABEL_STUDIO_URL", None, Url(("http", "https"), need_host=True,
                                      allowed="an http:// or https:// URL such as "
                                              "http://localhost:8080",
                                      short="an `http://` or `https://` URL"),
        default_doc=": the first `/setup` whose `hostname` and token work is pinned (Security)",
        show=redact_url)
    label_studio_api_key: str | None = setting(
        "LABEL_STUDIO_API_KEY", None, Text(), "a legacy API token; needs `LABEL_STUDIO_URL` "
        "(the key is only ever sent there)", default_doc=": the pinned token", show=_masked)
    query_strategy: str = setting("AL_QUERY_STRATEGY", "diverse_mini_batch",
                                  Registered("query_strategy"), _STRATEGY_DOC)
    query_params: dict = setting("AL_QUERY_PARAMS", "{}", JsonObject(),
                                 "the strategy's parameters (checked by building it)")
    # Settings() built directly (tests) gets the classic classifier; from_env resolves auto
    classifier: str = setting(
        "AL_CLASSIFIER", "auto", Registered("classifier", auto=True), _CLASSIFIER_DOC,
        default_doc=": `embedding_logistic_regression` with the `neural` extra, else `linear_svc`",
        value="linear_svc")
    classifier_params: dict = setting("AL_CLASSIFIER_PARAMS", "{}", JsonObject(),
                                      'the classifier\'s parameters, e.g. `{"C": 0.5}`')
    stopping_criterion: str = setting(
        "AL_STOPPING_CRITERION", "kappa_average", Registered("stopping_criterion"),
        "`kappa_average`, `delta_f_score`, `classification_change`, `overall_uncertainty`, "
        "`max_iterations`")
    stopping_params: dict = setting("AL_STOPPING_PARAMS", "{}", JsonObject(),
                                    'the criterion\'s parameters, e.g. `{"kappa": 0.9}`; '
                                    "`num_classes` is filled in from the label config")
    init_strategy: str = setting("AL_INIT_STRATEGY", "typiclust", Registered("initialization"),
                                 _INIT_DOC)
    batch_size: int = setting("AL_BATCH_SIZE", "10", Int(1), "tasks logged as \"queried\" per "
                              "round, `n` of batch strategies")
    min_annotations: int = setting("AL_MIN_ANNOTATIONS", "1", Int(1),
                                   "labeled tasks needed before the first training")
    model_path: str | None = setting("AL_MODEL_PATH", None, ExistingDir(),
                                     "the weights of embedding/transformer classifiers")
    model_dir: str = setting("MODEL_DIR", "./model_store", Directory())
    redis_url: str | None = setting(
        "REDIS_URL", None, Url(("redis", "rediss", "unix"),
                               allowed="a redis://, rediss:// or unix:// URL, or unset for "
                                       "embedded mode",
                               short="`redis://`, `rediss://` or `unix://` URL"),
        default_doc=" (embedded mode: one gunicorn worker; rounds run in `AL_ROUND_WORKERS` "
                    "long-lived child processes)", show=redact_url)
    basic_auth_user: str | None = setting(
        "BASIC_AUTH_USER", None, Text(), "set with `BASIC_AUTH_PASS` (both or neither); "
        "protects every route but `/health`", default_doc=" (no auth)", show=None)
    basic_auth_pass: str | None = setting(
        "BASIC_AUTH_PASS", None, Text(), "set with `BASIC_AUTH_USER` (both or neither)",
        default_doc=" (no auth)", show=None)
    log_level: str = setting("LOG_LEVEL", "INFO", OneOf(LOG_LEVELS),
                             "INFO logs one line per round")
    keep_prediction_history: bool = setting("AL_KEEP_PREDICTION_HISTORY", "false", Bool(),
                                            "keep old versions' predictions in Label Studio")
    push_first: int = setting("AL_PUSH_FIRST", "4", Int(1), _PUSH_FIRST_DOC)
    push_head: int = setting("AL_PUSH_HEAD", "6", Int(1), "the least K, the number of "
                             "best-ranked tasks written to Label Studio per round")
    push_max: int = setting("AL_PUSH_MAX", "200", Int(1), "at least `AL_PUSH_HEAD`; the most K "
                            "(K grows with the measured annotation rate × round time)")
    push_all: bool = setting("AL_PUSH_ALL", "false", Bool(), _PUSH_ALL_DOC)
    min_round_interval: float = setting("AL_MIN_ROUND_INTERVAL", "5", Seconds(0, 3600),
                                        _INTERVAL_DOC)
    round_workers: int = setting("AL_ROUND_WORKERS", "2", Int(1), "rounds of different "
                                 "projects that run at once in embedded mode (one slow project "
                                 "never holds up the others)")
    probe_share: float = setting(
        "AL_PROBE_SHARE", "0.1", Fraction(0, 0.5), "share of the queued tasks drawn at random "
        "from the unlabeled pool (probes): their labels give the dashboard's unbiased accuracy "
        "estimate; 0 turns the estimate off")
    seed: int = setting("AL_SEED", "0", Int(0), "seed of the cold-start ordering")
    redis_queue: str = setting(
        "REDIS_QUEUE", "studio-al", Pattern(r"[A-Za-z0-9_.-]{1,64}",
                                            allowed="1-64 characters from A-Z a-z 0-9 _ . - "
                                                    "(the RQ queue name and Redis key prefix)",
                                            short="1–64 of `A-Za-z0-9_.-`"),
        "the RQ queue name and Redis key prefix")
    job_timeout: int = setting("AL_JOB_TIMEOUT", "600", Int(10), "seconds a round may run "
                               "(embedded: its child process is killed and replaced; RQ: the "
                               "job is stopped)")
    lock_ttl: int = setting("AL_LOCK_TTL", "15", Int(2), "seconds of the per-project lock "
                            "(renewed by the running round); a killed worker's round is "
                            "re-queued after it")
    label_studio_timeout: float = setting("LABEL_STUDIO_TIMEOUT", "30",
                                          Seconds(0, 3600, low_open=True),
                                          "per Label Studio request")
    label_studio_retries: int = setting("LABEL_STUDIO_RETRIES", "3", Int(0), "retries "
                                        "(backoff 0.5 s, 1 s, 2 s ...) on connection errors, "
                                        "timeouts and 5xx")
    max_request_mb: int = setting("MAX_REQUEST_MB", "16", Int(1), "larger request bodies get "
                                  "`413` JSON (an annotation webhook is kilobytes; the backend "
                                  "keeps only its ids)")

    @property
    def basic_auth(self) -> bool:
        return self.basic_auth_user is not None

    def public(self) -> dict[str, Any]:
        """The settings without secrets, for /status and logs."""
        shown = {s.name: s.show(getattr(self, s.name)) for s in SETTINGS if s.show is not None}
        return {**shown, "mode": "redis" if self.redis_url else "embedded",
                "basic_auth": self.basic_auth}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, validate_components: bool = True
                 ) -> "Settings":
        """Parse and validate every variable of ``environ`` (default ``os.environ``).

        Each variable is parsed by its declaration (:data:`SETTINGS`), then the checks that
        involve several variables run (:data:`CROSS_CHECKS`). With ``validate_components`` the
        strategy, classifier, stopping criterion and initialization are built once with their
        parameters, so that a bad parameter is reported at start-up rather than at the first
        retrain.

        Raises
        ------
        SettingsError
            One line: the variable, its value and the allowed values.
        """
        env = os.environ if environ is None else environ
        settings = cls(**{s.name: s.read(env) for s in SETTINGS})
        for check in CROSS_CHECKS:
            check(settings)
        if validate_components:
            validate_components_of(settings)
        return settings


#: Every declaration, in the order of :class:`Settings` (and of the README table).
SETTINGS: tuple[Setting, ...] = tuple(replace(f.metadata["setting"], name=f.name)
                                      for f in fields(Settings))

#: Every variable read by :meth:`Settings.from_env`, with its raw default. ``from_env`` reads
#: this dict at call time, so tests may replace defaults here (``tests/conftest.py``).
ENV_DEFAULTS: dict[str, str | None] = {s.env: s.default for s in SETTINGS}


# ---------------------------------------------------------------------------------- cross-field
def _check_api_key_has_url(settings: Settings) -> None:
    if settings.label_studio_api_key is not None and settings.label_studio_url is None:
        raise SettingsError("LABEL_STUDIO_API_KEY is set while LABEL_STUDIO_URL is unset; "
                            "allowed: set both (the key is only ever sent to that URL) or "
                            "neither (Label Studio's first /setup is trusted)")


def _check_basic_auth_pair(settings: Settings) -> None:
    user, password = settings.basic_auth_user, settings.basic_auth_pass
    if (user is None) != (password is None):
        missing, present = (("BASIC_AUTH_PASS", "BASIC_AUTH_USER") if password is None else
                            ("BASIC_AUTH_USER", "BASIC_AUTH_PASS"))
        raise SettingsError(f"{missing} is unset while {present} is set; allowed: set both "
                            "or neither")


def _check_push_bounds(settings: Settings) -> None:
    if settings.push_max < settings.push_head:
        raise SettingsError(f"AL_PUSH_MAX={settings.push_max} is invalid; allowed: an integer "
                            f">= AL_PUSH_HEAD ({settings.push_head})")


def _check_strategy_fits_classifier(settings: Settings) -> None:
    """E.g. ``AL_QUERY_STRATEGY=bald`` needs a classifier with dropout sampling: refused at
    start-up instead of failing every round (``al_engine.registry.check_compatible``)."""
    from al_engine.exceptions import IncompatibleComponentsError, InvalidParameterError
    from al_engine.registry import check_compatible
    try:
        check_compatible(settings.query_strategy, settings.classifier, settings.query_params)
    except IncompatibleComponentsError as exc:
        raise SettingsError(f"AL_QUERY_STRATEGY={settings.query_strategy} cannot work with "
                            f"AL_CLASSIFIER={settings.classifier}: {str(exc).splitlines()[0]}"
                            ) from None
    except (InvalidParameterError, ImportError):
        pass  # a bad parameter or a missing extra: validate_components_of reports it


#: Checks over several variables, run in order by :meth:`Settings.from_env` once every
#: variable is parsed (``AL_CLASSIFIER=auto`` already resolved); each raises a one-line
#: :class:`SettingsError`. This is the one place for a rule between two settings.
CROSS_CHECKS: tuple[Callable[[Settings], None], ...] = (
    _check_api_key_has_url,
    _check_basic_auth_pair,
    _check_push_bounds,
    _check_strategy_fits_classifier,
)


# ---------------------------------------------------------------------------------- helpers
def markdown_table() -> str:
    """The README's table of variables (``python -m backend.settings`` prints it)."""
    head = ["| Variable | Default | Allowed values |", "|---|---|---|"]
    return "\n".join(head + [s.markdown_row() for s in SETTINGS])


def _with_num_classes(kind: str, name: str, params: dict, num_classes: int = 2) -> dict:
    """``params`` plus a placeholder ``num_classes`` when the component needs one."""
    from al_engine.registry import accepted_params
    if "num_classes" in accepted_params(kind, name) and "num_classes" not in params:
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


if __name__ == "__main__":  # pragma: no cover - prints the README table
    print(markdown_table())
