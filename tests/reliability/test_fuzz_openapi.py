"""Schemathesis fuzzes every operation of ``/openapi.json`` (in-process WSGI, basic auth on):
zero 5xx, and every response conforms to the documented schema."""
from __future__ import annotations

import base64

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the [dev] extra")
from hypothesis import HealthCheck, settings as hsettings  # noqa: E402

from backend.app import create_app  # noqa: E402
from backend.settings import Settings  # noqa: E402
from tests.reliability.harness import LABEL_CONFIG  # noqa: E402


class NullRunner:
    def submit(self, project_id, reason):
        return "queued"

    def status(self, project_id):
        return {"state": "idle"}

    def shutdown(self, timeout=None):
        pass


def _make_app(tmp_dir):
    # LABEL_STUDIO_URL/KEY set: fuzzed /setup hostnames are ignored, never contacted
    s = Settings.from_env({"MODEL_DIR": str(tmp_dir), "LOG_LEVEL": "ERROR",
                           "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": "pw",
                           "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "k"},
                          validate_components=False)
    app = create_app(s, runner=NullRunner())
    # projects 1 and 2 are set up, so fuzzed ids hit real code paths too
    c = app.test_client()
    for pid in (1, 2):
        c.post("/setup", json={"project": pid, "schema": LABEL_CONFIG}, headers=AUTH)
    return app


AUTH = {"Authorization": "Basic " + base64.b64encode(b"ls:pw").decode()}
import tempfile  # noqa: E402

APP = _make_app(tempfile.mkdtemp(prefix="studio-al-fuzz-"))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP, headers=AUTH)


@schema.parametrize()
@hsettings(max_examples=60, deadline=None, derandomize=True,
           suppress_health_check=list(HealthCheck))
def test_fuzz_no_5xx(case):
    from schemathesis.checks import not_a_server_error
    from schemathesis.checks import response_schema_conformance, status_code_conformance
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error, status_code_conformance,
                                                 response_schema_conformance])
