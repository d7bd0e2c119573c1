"""pytest plugin: small-text's own tests with one family of al_engine objects substituted.

:mod:`benchmarks.smalltext_compat` loads it as ``-p benchmarks.smalltext_compat_plugin`` in a
pytest subprocess whose root is small-text's unpacked source distribution. Options:

``--smalltext-family NAME``
    A key of :data:`al_engine.compat.names.FAMILIES`, or ``none`` (small-text unchanged: the
    baseline run).
``--smalltext-report PATH``
    Where to write the outcome of every test as JSON (a list of records, see :class:`_Recorder`).

At configure time, before any test module is imported, every small_text module attribute that
holds a substituted small-text object (the defining module's and every re-export, e.g.
``small_text.LeastConfidence``, ``small_text.query_strategies.LeastConfidence`` and
``small_text.query_strategies.strategies.LeastConfidence``) is rebound to the al_engine object.
Test modules, small-text's test utilities and small-text's own code then all see ours.

To tell which tests exercise al_engine at all, every substituted object records its use: a
class when it is instantiated (its ``__init__`` is wrapped, also for subclasses the tests
define), a function or callable object when it is called. Each record lists the small-text
names used by that test. A test over its time limit fails with ``TimeoutError``.

small_text is imported with torch and transformers hidden (importing them raises
``ModuleNotFoundError``, :class:`_Hidden`), so that it skips its pytorch and transformers
integrations, which are not under test (importing them costs ~7 s per run). torch is importable
again afterwards (small-text's test utilities need it); transformers stays hidden. None of the
al_engine objects in ``FAMILIES`` needs either.
"""
from __future__ import annotations

import functools
import json
import signal
import sys
from importlib import import_module
from importlib.abc import MetaPathFinder
from pathlib import Path
from typing import Any

import pytest

PER_TEST_SECONDS = 30

_used: set[str] = set()  # small-text names whose substitute the running test used


def pytest_addoption(parser) -> None:
    group = parser.getgroup("smalltext-compat")
    group.addoption("--smalltext-family", default="none",
                    help="al_engine.compat.names.FAMILIES key to substitute, or 'none'")
    group.addoption("--smalltext-report", default=None, help="JSON file of per-test outcomes")


def pytest_configure(config) -> None:
    hidden = _Hidden({"torch", "transformers"})
    sys.meta_path.insert(0, hidden)
    import small_text  # noqa: F401
    hidden.names.discard("torch")
    family = config.getoption("smalltext_family")
    if family != "none":
        from al_engine.compat.names import FAMILIES
        if family not in FAMILIES:
            raise pytest.UsageError(f"unknown family {family!r}; allowed: {sorted(FAMILIES)}")
        substitute(FAMILIES[family])
    report = config.getoption("smalltext_report")
    if report:
        config.pluginmanager.register(_Recorder(Path(report)), "smalltext-compat-recorder")


class _Hidden(MetaPathFinder):
    """Makes the top-level packages ``names`` unimportable."""

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is hidden by the small-text compatibility "
                                      "harness", name=fullname)
        return None


# ----------------------------------------------------------------------------- substitution
def substitute(mapping: dict[str, str | None]) -> None:
    """Rebind every small_text module attribute holding a mapped small-text object to its
    al_engine substitute (a tracked one, see the module docstring)."""
    from al_engine.compat.names import resolve
    for dotted, target in mapping.items():
        module_name, _, name = dotted.rpartition(".")
        original = getattr(import_module(module_name), name)
        ours = _missing(dotted, original) if target is None else _tracked(dotted, resolve(target))
        for module in [m for n, m in list(sys.modules.items()) if n.split(".")[0] == "small_text"]:
            for attr, value in list(vars(module).items()):
                if value is original:
                    setattr(module, attr, ours)


def _tracked(dotted: str, obj: Any) -> Any:
    """``obj`` recording its use under ``dotted``: a class gets a wrapped ``__init__`` (in
    place, once), anything else callable is wrapped in a function."""
    if isinstance(obj, type):
        if "_smalltext_names" not in vars(obj):
            obj._smalltext_names = set()
            init = obj.__init__

            @functools.wraps(init)
            def __init__(self, *args, **kwargs):
                _used.update(obj._smalltext_names)
                init(self, *args, **kwargs)

            obj.__init__ = __init__
        obj._smalltext_names.add(dotted)
        return obj

    @functools.wraps(obj)
    def call(*args, **kwargs):
        _used.add(dotted)
        return obj(*args, **kwargs)

    return call


def _missing(dotted: str, original: Any) -> Any:
    """A stand-in for a small-text object al_engine has no counterpart of: using it raises
    ``NotImplementedError`` naming ``dotted`` (a class, so that tests can still subclass it)."""
    message = f"al_engine has no counterpart of {dotted}"

    def fail(*args, **kwargs):
        _used.add(dotted)
        raise NotImplementedError(message)

    if isinstance(original, type):
        return type(original.__name__, (), {"__init__": fail, "__doc__": message})
    return fail


# ----------------------------------------------------------------------------- recording
def _timeout(signum, frame):
    raise TimeoutError(f"test exceeded the harness limit of {PER_TEST_SECONDS} s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(PER_TEST_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


class _Recorder:
    """Collects one record per test: ``nodeid``, ``outcome`` (passed, failed, error,
    skipped), ``reason`` (the exception's first line), ``where`` (the innermost al_engine
    frame of the traceback, else the innermost frame of small-text's tests) and ``used``
    (small-text names whose substitute ran); collection errors as records with outcome ``collection_error``."""

    def __init__(self, path: Path):
        self.path = path
        self.records: dict[str, dict] = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        _used.clear()
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        rec = self.records.setdefault(item.nodeid, {"nodeid": item.nodeid, "outcome": "passed",
                                                    "reason": "", "where": "", "used": []})
        rec["used"] = sorted(_used)
        if rec["outcome"] != "passed":
            return
        if report.skipped:
            rec["outcome"] = "skipped"
            rec["reason"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        elif report.failed:
            rec["outcome"] = "failed" if call.when == "call" else "error"
            rec["reason"], rec["where"] = _reason(call.excinfo)

    def pytest_collectreport(self, report):
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.records[report.nodeid] = {"nodeid": report.nodeid, "outcome": "collection_error",
                                           "reason": text[-1] if text else "", "where": "",
                                           "used": []}

    def pytest_sessionfinish(self, session):
        self.path.write_text(json.dumps(list(self.records.values()), indent=0))


def _reason(excinfo) -> tuple[str, str]:
    if excinfo is None:
        return "", ""
    lines = excinfo.exconly().strip().splitlines()
    frames = [(str(e.path), e.lineno + 1) for e in excinfo.traceback
              if Path(str(e.path)).name != Path(__file__).name]
    ours = [f for f in frames if "/al_engine/" in f[0]]
    tests = [f for f in frames if "/tests/" in f[0]]
    path, line = (ours or tests or frames or [("", 0)])[-1]
    if "/al_engine/" in path:
        path = "al_engine/" + path.rsplit("/al_engine/", 1)[1]
    elif "/tests/" in path:
        path = "tests/" + path.rsplit("/tests/", 1)[1]
    return (lines[0] if lines else ""), (f"{path}:{line}" if path else "")
