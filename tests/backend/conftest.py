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


class FakeLabelStudio:
    """In-memory stand-in with the methods of backend.labelstudio.LabelStudioClient."""

    def __init__(self, tasks: list[dict] | None = None):
        self.tasks = tasks or []
        self.predictions: list[dict] = []
        self.project: dict = {"model_version": "", "sampling": "Sequential sampling"}
        self.calls: list[str] = []
        self.fail_on: set[str] = set()
        self._ann_ids = itertools.count(1000)

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

    def update_project(self, project_id, **fields):
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
        return dict(self.project)

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


@pytest.fixture
def settings(tmp_path):
    return Settings.from_env({"MODEL_DIR": str(tmp_path / "store"), "LOG_LEVEL": "WARNING"},
                             validate_components=False)


def make_tasks(texts, field="text", start=1):
    return [{"id": start + i, "data": {field: t}, "annotations": []} for i, t in enumerate(texts)]
