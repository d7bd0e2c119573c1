"""How the app is wired: the service behind the routes and the dashboard, where rounds run,
start-up recovery in the entry point (backend.wsgi), not in create_app."""
import functools
import json
import sys

import pytest

from backend import app as app_module
from backend.app import create_app, round_job
from backend.jobs import ProcessRoundExecutor, run_project_round
from backend.service import BackendService
from tests.backend.conftest import SINGLE_CONFIG, FakeLabelStudio, RecordingRunner

SETUP = {"project": 1, "schema": SINGLE_CONFIG, "hostname": "http://ls:8080",
         "access_token": "tok"}


def _with_pending_event(settings):
    """A store where project 1 is set up and has a webhook never trained on."""
    app = create_app(settings, runner=RecordingRunner(),
                     client_factory=lambda u, k: FakeLabelStudio())
    app.test_client().post("/setup", data=json.dumps(SETUP), content_type="application/json")
    app.extensions["studio_al"]["store"].append_event(
        1, {"action": "ANNOTATION_CREATED", "project": 1, "handled": "train"})


def test_create_app_queues_nothing_recover_does(settings):
    _with_pending_event(settings)
    runner = RecordingRunner()
    app = create_app(settings, runner=runner, client_factory=lambda u, k: FakeLabelStudio())
    assert runner.submits == []
    service = app.extensions["studio_al"]["service"]
    assert isinstance(service, BackendService) and service.runner is runner
    assert service.recover() == [1] and runner.submits == [(1, "recovery")]


def test_wsgi_entry_point_runs_recovery(settings, monkeypatch):
    _with_pending_event(settings)
    runner = RecordingRunner()
    real = app_module.create_app
    monkeypatch.setattr(app_module, "create_app", lambda s: real(
        s, runner=runner, client_factory=lambda u, k: FakeLabelStudio()))
    monkeypatch.setenv("MODEL_DIR", settings.model_dir)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.delitem(sys.modules, "backend.wsgi", raising=False)
    interval = sys.getswitchinterval()
    try:
        import backend.wsgi as wsgi
        assert runner.submits == [(1, "recovery")]
        assert wsgi.app.extensions["studio_al"]["runner"] is runner
    finally:
        sys.setswitchinterval(interval)
        sys.modules.pop("backend.wsgi", None)


def test_dashboard_reads_the_service(settings):
    app = create_app(settings, runner=RecordingRunner(),
                     client_factory=lambda u, k: FakeLabelStudio())
    c = app.test_client()
    c.post("/setup", data=json.dumps(SETUP), content_type="application/json")
    service = app.extensions["studio_al"]["service"]
    calls = []
    status = service.status
    service.status = lambda pid: calls.append(pid) or status(pid)
    assert c.get("/dashboard/1").status_code == 200 and calls == [1]
    assert c.get("/dashboard").status_code == 200 and calls == [1, 1]


def test_round_job_modes(settings):
    fake = lambda u, k: FakeLabelStudio()  # noqa: E731
    job = round_job(settings, None, fake)  # "auto" with an injected client: in the thread
    assert isinstance(job, functools.partial) and job.func is run_project_round
    assert job.keywords["client_factory"] is fake
    job = round_job(settings, None, rounds="thread")
    assert job.func is run_project_round and job.keywords["client_factory"] is not None
    job = round_job(settings, None)  # "auto" without one: child processes
    assert isinstance(job, ProcessRoundExecutor)
    job.shutdown()
    with pytest.raises(ValueError, match="rounds='thread'"):
        round_job(settings, None, fake, rounds="process")
    with pytest.raises(ValueError, match="allowed"):
        round_job(settings, None, rounds="fork")
