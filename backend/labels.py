"""Labels from Label Studio annotations: which choice of our control an annotation makes.

A task's label is its latest non-cancelled annotation that chooses at least one known label of
our ``<Choices>`` control (by ``updated_at``, then annotation id). A skipped (cancelled)
annotation, an empty result or choices of another control are not labels.
"""
from __future__ import annotations

from typing import Any

from backend.labelconfig import LabelConfig


def _annotation_key(a: dict) -> tuple:
    return (str(a.get("updated_at") or a.get("created_at") or ""),
            a.get("id") if isinstance(a.get("id"), int) else 0)


def annotation_label(annotation: dict, cfg: LabelConfig) -> list[str] | None:
    """The choices of ``annotation`` for our control that are known labels; None if none."""
    if annotation.get("was_cancelled"):
        return None
    result = annotation.get("result")
    if not isinstance(result, list):
        return None
    chosen: list[str] = []
    for item in result:
        if not isinstance(item, dict) or item.get("from_name") != cfg.from_name:
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list):
            chosen.extend(c for c in choices if isinstance(c, str) and c in cfg.labels)
    chosen = list(dict.fromkeys(chosen))
    return chosen or None


def task_label(task: dict, cfg: LabelConfig) -> tuple[Any, Any]:
    """``(label, annotation_id)`` of a task: its latest non-cancelled annotation with a usable
    choice for our control. ``label`` is a name (single-label), a list of names
    (multi-label) or None (unlabeled)."""
    annotations = task.get("annotations") or []
    for ann in sorted((a for a in annotations if isinstance(a, dict)), key=_annotation_key,
                      reverse=True):
        chosen = annotation_label(ann, cfg)
        if chosen is not None:
            return (chosen if cfg.multi_label else chosen[0]), ann.get("id")
    return None, None


def task_text(task: dict, cfg: LabelConfig) -> str | None:
    """The task's text in the label config's field, or None when it has none."""
    data = task.get("data") if isinstance(task, dict) else None
    text = data.get(cfg.text_field) if isinstance(data, dict) else None
    return text if isinstance(text, str) else None
