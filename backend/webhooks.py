"""Webhook bodies from Label Studio: untrusted hints, reduced to a small validated event.

Whoever can reach the backend can post to ``/webhook``, so nothing in a body is data the
backend trusts: the event keeps only the action, the project id and bounded lists of integer
ids (the tasks and annotations to re-read from Label Studio), plus the annotator id used to
size the pushed head. Annotation results, task data and project settings are never stored
(a 90 MB body used to be written whole to the event log and re-read every round).

Label Studio's own subscription carries a secret header once the backend has signed it
(``backend.instance``): :func:`signature` is the expected value for a project.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Any

#: Header Label Studio sends with the webhook subscription the backend signed.
SIGNATURE_HEADER = "X-Studio-AL-Signature"
#: Most ids kept from one webhook (a bulk action naming more is still a hint to re-read).
MAX_IDS = 1000
#: Largest id accepted (Label Studio's ids are 64-bit database keys).
MAX_ID = 2 ** 63 - 1

TRAIN_ACTIONS = frozenset({
    "ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED", "ANNOTATIONS_DELETED",
    "TASKS_CREATED", "TASKS_DELETED", "START_TRAINING",
})
RECORD_ACTIONS = frozenset({"PROJECT_UPDATED", "PROJECT_DELETED"})
IGNORED_ACTIONS = frozenset({
    "PROJECT_CREATED", "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED",
    "LABEL_LINK_DELETED", "REVIEW_CREATED", "REVIEW_UPDATED", "REVIEWS_DELETED",
})
KNOWN_ACTIONS = TRAIN_ACTIONS | RECORD_ACTIONS | IGNORED_ACTIONS


def _id(value: Any) -> int | None:
    """A positive integer id, or None (bools, floats, strings, lists are not ids)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    return None


def _ids(items: Any, key: str = "id") -> list[int]:
    out: list[int] = []
    if isinstance(items, list):
        for item in items[:MAX_IDS]:
            value = _id(item.get(key)) if isinstance(item, dict) else None
            if value is not None:
                out.append(value)
    return out


def webhook_event(action: str, project_id: int, body: dict) -> dict:
    """The event stored for a webhook: ``{"action", "project", "task_id"?, "annotation"?:
    {"id", "task", "completed_by"}, "annotation_ids"?, "task_ids"?}`` with validated ids."""
    event: dict[str, Any] = {"action": action, "project": project_id}
    ann = body.get("annotation")
    if isinstance(ann, dict):
        task = ann.get("task")
        small = {"id": _id(ann.get("id")),
                 "task": _id(task.get("id") if isinstance(task, dict) else task),
                 "completed_by": _id(ann.get("completed_by") if not isinstance(
                     ann.get("completed_by"), dict) else ann["completed_by"].get("id"))}
        event["annotation"] = {k: v for k, v in small.items() if v is not None}
    task = body.get("task")
    if isinstance(task, dict) and _id(task.get("id")) is not None:
        event["task_id"] = task["id"]
    annotations = body.get("annotations")
    if isinstance(annotations, list):
        event["annotation_ids"] = _ids(annotations)
        tasks = _ids(annotations, "task")
        if tasks:
            event["task_ids"] = tasks
    if isinstance(body.get("tasks"), list):
        event["task_ids"] = _ids(body["tasks"])
    return event


def signature(secret: bytes, project_id: int) -> str:
    """The header value that authenticates Label Studio's webhooks of ``project_id``."""
    return hmac.new(secret, f"webhook:{int(project_id)}".encode(), hashlib.sha256).hexdigest()


def signature_ok(secret: bytes, project_id: int, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(signature(secret, project_id).encode(),
                                                header.encode(errors="replace"))
