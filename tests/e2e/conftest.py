"""Fixtures of the end-to-end suite: ONE real Label Studio 1.23.2 per session and one real
``studio-al serve`` (gunicorn) process per query strategy.

Label Studio is installed on first use into ``<repo>/.e2e-cache/ls-venv`` (and a migrated data
dir template is kept in ``.e2e-cache``); if it cannot be installed or started, the tests FAIL
with the reason (they are never skipped silently).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import harness
from tests.e2e.harness import LS, HarnessError


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """A running Label Studio (``Server`` with ``.url``), killed at the end of the session."""
    try:
        server = harness.start_label_studio(tmp_path_factory.mktemp("label-studio") / "data")
    except HarnessError as exc:
        pytest.fail(f"Label Studio {harness.LS_VERSION} could not be installed/started: {exc}",
                    pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ls(label_studio) -> LS:
    return LS(label_studio.url, logfile=label_studio.logfile)


@pytest.fixture(scope="session")
def backends(label_studio, tmp_path_factory):
    """``backends(strategy, **env) -> Server``: one backend process per distinct configuration,
    started on first use, stopped at the end of the session. ``server.extra["model_dir"]``."""
    started: dict[tuple, harness.Server] = {}

    def get(strategy: str, **env: str) -> harness.Server:
        key = (strategy, tuple(sorted(env.items())))
        if key not in started:
            model_dir = tmp_path_factory.mktemp(f"model_store_{strategy}")
            try:
                server = harness.start_backend(label_studio.url, model_dir, strategy, extra_env=env)
            except HarnessError as exc:
                pytest.fail(f"backend (studio-al serve, AL_QUERY_STRATEGY={strategy}) did not start: {exc}",
                            pytrace=False)
            server.extra["model_dir"] = Path(model_dir)
            started[key] = server
        return started[key]

    yield get
    for server in started.values():
        server.stop()
