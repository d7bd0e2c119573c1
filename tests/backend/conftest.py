"""Fixtures for the backend unit tests: settings, a fake Label Studio client, label configs."""
from __future__ import annotations

import copy
import itertools

import pytest

from backend.settings import Settings

SINGLE_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="pos"/><Choice value="neg"/>
  </Choices>
</View>"""

MULTI_CONFIG = """<View>
  <Text name="body" value="$content"/>
  <Choices name="topics" toName="body" choice="multiple">
    <Choice value="a"/><Choice value="b"/><Choice value="c"/>
  </Choices>
</View>"""


class _LSError(RuntimeError):
    def __init__(self, status):
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeLabelStudio:
    """In-memory stand-in with the methods of backend.labelstudio.LabelStudioClient."""

    def __init__(self, tasks: list[dict] | None = None):
        self.tasks = tasks or []
        self.predictions: list[dict] = []
        self.project: dict = {"model_version": "", "sampling": "Sequential sampling"}
        self.calls: list[str] = []
        self.fail_on: set[str] = set()
        self._ann_ids = itertools.count(1000)
        self.ml_backends: dict[int, dict] = {}
        self.webhooks: dict[int, list[dict]] = {}
        self.deleted = False
        self._setup = None

    def _call(self, name):
        self.calls.append(name)
        if name in self.fail_on:
            raise RuntimeError(f"injected failure in {name}")

    def list_tasks(self, project_id, after_id=0, limit=250):
        self._call("list_tasks")
        rows = sorted((t for t in self.tasks if t["id"] > after_id), key=lambda t: t["id"])
        return [{"id": t["id"], "data": copy.deepcopy(t["data"])} for t in rows[:limit]]

    def list_annotated_tasks(self, project_id, after_id=0, limit=100):
        self._call("list_annotated_tasks")
        rows = sorted((t for t in self.tasks if t["id"] > after_id and any(
            not a.get("was_cancelled") for a in t.get("annotations") or [])),
            key=lambda t: t["id"])
        return copy.deepcopy(rows[:limit])

    def fetch_tasks_by_id(self, project_id, task_ids):
        self._call("fetch_tasks_by_id")
        wanted = set(task_ids)
        return copy.deepcopy([t for t in self.tasks if t["id"] in wanted])

    def import_predictions(self, project_id, predictions, chunk_size=1000):
        self._call("import_predictions")
        self.predictions.extend(copy.deepcopy(predictions))
        return len(predictions)

    def create_prediction(self, prediction):
        self._call("create_prediction")
        self.predictions.append(copy.deepcopy(prediction))
        return len(self.predictions)

    def update_project(self, project_id, answer_fields=None, **fields):
        self._call("update_project")
        self.project.update(fields)
        return dict(self.project)

    def model_versions(self, project_id):
        self._call("model_versions")
        out: dict[str, int] = {}
        for p in self.predictions:
            out[p["model_version"]] = out.get(p["model_version"], 0) + 1
        return out

    def delete_model_version(self, project_id, model_version):
        self._call("delete_model_version")
        before = len(self.predictions)
        self.predictions = [p for p in self.predictions if p["model_version"] != model_version]
        return before - len(self.predictions)

    def get_project(self, project_id):
        self._call("get_project")
        if project_id not in self.ml_backends and self.deleted:
            raise _LSError(404)
        return dict(self.project)

    def whoami(self):
        self._call("whoami")
        return {"id": 1, "email": "admin@example.com"}

    # ML backends and webhooks: connect(store, pid, config) makes this fake behave like Label
    # Studio with our backend connected (it calls our /setup with extra_params on PATCH)
    def connect(self, store, project_id, label_config, url="http://backend:9090"):
        from backend.instance import record_challenge
        self.project["label_config"] = label_config
        self.ml_backends[project_id] = {"id": 40 + project_id, "url": url, "extra_params": None,
                                        "project": project_id}
        self.webhooks[project_id] = [{"id": 70 + project_id, "url": url + "/webhook",
                                      "headers": {}}]
        self._setup = lambda pid, extra: record_challenge(store, pid, extra)
        return self

    def list_ml_backends(self, project_id):
        self._call("list_ml_backends")
        if self.deleted and project_id not in self.ml_backends:
            raise _LSError(404)
        b = self.ml_backends.get(project_id)
        return [dict(b)] if b else []

    def update_ml_backend(self, backend_id, **fields):
        self._call("update_ml_backend")
        b = next(b for b in self.ml_backends.values() if b["id"] == backend_id)
        b.update(fields)
        if self._setup is not None:
            self._setup(b["project"], b.get("extra_params"))
        return dict(b)

    def list_webhooks(self, project_id):
        self._call("list_webhooks")
        return copy.deepcopy(self.webhooks.get(project_id, []))

    def update_webhook(self, webhook_id, **fields):
        self._call("update_webhook")
        for hooks in self.webhooks.values():
            for h in hooks:
                if h["id"] == webhook_id:
                    h.update(copy.deepcopy(fields))
        return {}

    # helpers for tests
    def annotate(self, task_id, choices, from_name="sentiment", cancelled=False,
                 updated_at="2026-01-01T00:00:00Z"):
        task = next(t for t in self.tasks if t["id"] == task_id)
        task.setdefault("annotations", []).append({
            "id": next(self._ann_ids), "was_cancelled": cancelled, "ground_truth": False,
            "updated_at": updated_at, "completed_by": 1,
            "result": [] if choices is None else [{"from_name": from_name, "to_name": "text",
                                                   "type": "choices",
                                                   "value": {"choices": list(choices)}}]})

    def current_predictions(self):
        v = self.project["model_version"]
        return {p["task"]: p for p in self.predictions if p["model_version"] == v}


class RecordingRunner:
    """A job runner (``backend.jobs.JobRunner`` interface) that only records submissions."""

    def __init__(self):
        self.submits: list[tuple[int, str]] = []

    def submit(self, project_id, reason):
        self.submits.append((project_id, reason))
        return "queued"

    def status(self, project_id):
        return {"state": "idle"}

    def shutdown(self, timeout=None):
        pass


@pytest.fixture
def settings(tmp_path):
    # AL_PUSH_HEAD=20: the small pools of these tests are pushed whole, so that every ranked
    # task can be checked in the fake Label Studio (head sizing: test_push.py);
    # AL_PROBE_SHARE=0: the hand-checked orders are the strategy's (probes: test_probes.py)
    return Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING",
                              "AL_PUSH_HEAD": "20", "AL_PROBE_SHARE": "0"},
                             validate_components=False)


def make_tasks(texts, field="text", start=1):
    return [{"id": start + i, "data": {field: t}, "annotations": []} for i, t in enumerate(texts)]
