"""/status while a round runs: which round serves, which runs and in which step. A round's new
version serves from its write_version step on, before its audit record exists: its counts and
queue must be the running round's, not the previous round's (issue 17)."""
from __future__ import annotations

import time

from backend.project_status import project_status
from backend.rounds import Round
from tests.backend.test_dashboard import single  # noqa: F401 - 3 real rounds on project 1


def _status(app, job):
    ext = app.extensions["studio_al"]
    return project_status(ext["store"], ext["settings"], 1, set_up=True, job=job)


def test_status_shows_the_running_round_and_its_step(single):  # noqa: F811
    app, _, _ = single
    store = app.extensions["studio_al"]["store"]
    last = store.audit(1)[-1]
    idle = _status(app, {"state": "idle"})
    assert idle["running"] is None and store.progress(1) is None  # a finished round clears it
    assert idle["serving"] == {"version": last["version"], "round": last["round"],
                               "from": "audit record"}
    assert idle["labeled"] == last["n_labeled"]
    # a round in its push step whose version already serves, with one more label
    t = time.time()
    store.write_progress(1, {"round": last["round"] + 1, "version": last["version"], "step": "push",
                             "reason": "webhook", "started_at": t - 2, "step_started_at": t,
                             "timings": {"connect": 0.1}, "n_labeled": last["n_labeled"] + 1,
                             "n_unlabeled": last["n_unlabeled"] - 1, "queued_tasks": [40, 39]})
    st = _status(app, {"state": "running"})
    assert st["running"]["step"] == "push" and st["running"]["round"] == last["round"] + 1
    assert st["serving"]["from"] == "running round"
    assert (st["labeled"], st["unlabeled"]) == (last["n_labeled"] + 1, last["n_unlabeled"] - 1)
    assert st["queued_tasks"] == [40, 39]
    # a progress file left by a killed round is not shown once no round runs
    assert _status(app, {"state": "idle"})["running"] is None


def _skip_steps(monkeypatch):
    """Every step of a round a no-op (keeping its name, which the round reports)."""
    def no_op(name):
        def step(self):
            pass
        step.__name__ = name
        return step
    for name in ("connect", "sync", "train_and_rank", "write_version", "push", "clean_up",
                 "catch_up", "evaluate"):
        monkeypatch.setattr(Round, name, no_op(name))


def test_a_round_reports_every_step_before_it_runs(single, monkeypatch):  # noqa: F811
    app, _, _ = single
    store = app.extensions["studio_al"]["store"]
    seen = []
    real = store.write_progress
    monkeypatch.setattr(store, "write_progress",
                        lambda pid, p: (seen.append(None if p is None else p["step"]), real(pid, p)))
    rnd = Round(1, app.extensions["studio_al"]["settings"], store, None, "test")
    _skip_steps(monkeypatch)
    rnd.run()
    assert seen == ["connect", "sync", "train_and_rank", "write_version", "push", "clean_up",
                    "catch_up", "evaluate", None]
    assert store.progress(1) is None


def test_dashboard_shows_the_running_step(single, monkeypatch):  # noqa: F811
    app, c, _ = single
    store = app.extensions["studio_al"]["store"]
    last = store.audit(1)[-1]
    store.write_progress(1, {"round": last["round"] + 1, "version": "studio-al-9999-x", "step": "push",
                             "reason": "webhook", "started_at": 1.0, "step_started_at": 2.0,
                             "timings": {"connect": 0.25}, "n_labeled": None, "n_unlabeled": None,
                             "queued_tasks": []})
    service = app.extensions["studio_al"]["service"]
    real = service.runner.status
    monkeypatch.setattr(service.runner, "status", lambda pid: {**real(pid), "state": "running"})
    html = c.get("/dashboard/1").get_data(as_text=True)
    assert f"round {last['round'] + 1} (<code>studio-al-9999-x</code>): step <b>push</b>" in html
    assert "connect" in html


def test_a_progress_file_that_cannot_be_written_does_not_fail_the_round(single, monkeypatch):  # noqa: F811
    from backend.store import StoreWriteError
    app, _, _ = single
    store = app.extensions["studio_al"]["store"]

    def full(pid, progress):
        raise StoreWriteError(28, "No space left on device")
    monkeypatch.setattr(store, "write_progress", full)
    rnd = Round(1, app.extensions["studio_al"]["settings"], store, None, "test")
    _skip_steps(monkeypatch)
    assert rnd.run()["status"] == "ok"
