"""The audit record's keys are declared once (backend/record.py): every key the dashboard and
``/status`` read from an audit record, and every key a round writes, is declared there. A
key renamed on one side only fails here instead of blanking the dashboard."""
from dataclasses import fields

import pytest

from al_engine.estimate import LabelsNeeded
from backend import project_status
from backend import store as store_module
from backend.ranking import RankedTask
from backend.record import (CriterionVerdict, CrossValidationSummary, RoundMetrics,
                            RoundRecord, StoppingVerdict)
from tests.backend.test_dashboard import single  # noqa: F401 - the fixture: 3 real rounds


def _typed_keys(typed_dict) -> set[str]:
    return set(typed_dict.__required_keys__ | typed_dict.__optional_keys__)


#: declared keys of the audit record and of its nested records, by path
DECLARED = {
    "": {f.name for f in fields(RoundRecord)},
    "metrics": _typed_keys(RoundMetrics),
    "metrics.cv": _typed_keys(CrossValidationSummary),
    "metrics.labels_needed": {f.name for f in fields(LabelsNeeded)},
    "stopping": _typed_keys(StoppingVerdict),
    "queried[]": {f.name for f in fields(RankedTask)},
}


class _Reads(dict):
    """An audit record (or a declared part of one) that notes every key read from it."""

    def __init__(self, data, path: str, seen: set):
        super().__init__(data)
        self._path, self._seen = path, seen

    def _child(self, key, value):
        path = f"{self._path}.{key}" if self._path else str(key)
        if isinstance(value, dict) and path in DECLARED:
            return _Reads(value, path, self._seen)
        if isinstance(value, list) and f"{path}[]" in DECLARED:
            return [_Reads(v, f"{path}[]", self._seen) if isinstance(v, dict) else v
                    for v in value]
        return value

    def get(self, key, default=None):
        self._seen.add((self._path, key))
        return self._child(key, super().get(key, default))

    def __getitem__(self, key):
        self._seen.add((self._path, key))
        return self._child(key, super().__getitem__(key))

    def __contains__(self, key):
        self._seen.add((self._path, key))
        return super().__contains__(key)


@pytest.fixture
def reads(monkeypatch):
    """Every (path, key) read from audit records while the test runs."""
    seen: set = set()
    read_jsonl = store_module._read_jsonl

    def noting(path, *args, **kwargs):
        rows = read_jsonl(path, *args, **kwargs)
        if str(path).endswith("audit.jsonl"):
            return [_Reads(r, "", seen) for r in rows]
        return rows

    monkeypatch.setattr(store_module, "_read_jsonl", noting)
    monkeypatch.setattr(project_status, "_read_jsonl", noting)
    monkeypatch.setattr(project_status, "_audit_cache", {})
    return seen


def test_every_key_the_dashboard_and_status_read_is_declared(single, reads):  # noqa: F811
    app, c, _ = single
    assert c.get("/status?project=1").status_code == 200
    assert c.get("/status").status_code == 200
    assert c.get("/dashboard/1").status_code == 200
    with app.app_context():
        project_status.status_details(app.extensions["studio_al"]["store"],
                                 app.extensions["studio_al"]["settings"], 1)
    # the instrumentation saw the readers (else this test would pass vacuously)
    assert {("", "n_labeled"), ("", "metrics"), ("metrics", "cv"), ("metrics.cv", "accuracy"),
            ("stopping", "stop"), ("queried[]", "task")} <= reads
    undeclared = sorted(f"{path or '<record>'}: {key!r}" for path, key in reads
                        if key not in DECLARED[path])
    assert not undeclared, f"read from the audit record but not declared: {undeclared}"


def test_every_key_a_round_writes_is_declared(single):  # noqa: F811
    app, _, _ = single
    records = app.extensions["studio_al"]["store"].audit(1)
    trained = [r for r in records if r.get("metrics")]
    assert trained and all(r["stopping"] for r in trained)
    for r in records:
        assert set(r) <= DECLARED[""]
    for r in trained:
        m = r["metrics"]
        assert set(m) <= DECLARED["metrics"]
        assert set(m["cv"]) <= DECLARED["metrics.cv"]
        assert set(m["labels_needed"]) <= DECLARED["metrics.labels_needed"]
        assert set(r["stopping"]) <= DECLARED["stopping"]
        for verdict in m["criteria"].values():
            assert set(verdict) <= _typed_keys(CriterionVerdict)
        for q in r["queried"]:
            assert set(q) <= DECLARED["queried[]"]


def test_a_field_that_is_not_declared_cannot_be_set():
    rec = RoundRecord(round=1, version="v1", previous=None, reason="test", started_at=0.0,
                      events_upto=0, strategy="random", classifier="linear_svc")
    rec.n_labeled = 3
    with pytest.raises(AttributeError):
        rec.n_labelled = 3  # a typo in a round step fails the round's tests, not the dashboard
    assert rec.to_dict()["n_labeled"] == 3
