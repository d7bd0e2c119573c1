"""Parse a Label Studio label config into what text classification needs.

We need one ``<Choices>`` control (its ``name`` is the result's ``from_name``), the ``<Text>``
object it points to with ``toName`` (its ``name`` is ``to_name``, its ``value="$field"`` names
the task data field holding the text), the choice values, and whether ``choice="multiple"``
makes the project multi-label.

The XML comes from a request body: documents with a DOCTYPE or entity declarations are
rejected before parsing, and the size is bounded.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass

MAX_CONFIG_CHARS = 1_000_000
_FORBIDDEN = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class LabelConfigError(ValueError):
    """The label config cannot be used for text classification; the message says why."""


@dataclass(frozen=True)
class LabelConfig:
    """What the backend needs from a label config."""

    from_name: str
    to_name: str
    text_field: str
    labels: tuple[str, ...]
    multi_label: bool

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LabelConfig":
        return cls(d["from_name"], d["to_name"], d["text_field"], tuple(d["labels"]),
                   bool(d["multi_label"]))

    def result(self, labels: list[str], confidence: float | None = None) -> list[dict]:
        """A Label Studio ``result`` list choosing ``labels`` (empty list for no labels)."""
        if not labels:
            return []
        item = {"from_name": self.from_name, "to_name": self.to_name, "type": "choices",
                "value": {"choices": list(labels)}}
        if confidence is not None:
            item["score"] = float(confidence)
        return [item]


def _tag(el: ET.Element) -> str:
    return el.tag.lower() if isinstance(el.tag, str) else ""


def parse_label_config(xml: str) -> LabelConfig:
    """Parse ``xml``; raise :class:`LabelConfigError` with a clear message when unusable."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("label config is empty")
    if len(xml) > MAX_CONFIG_CHARS:
        raise LabelConfigError(f"label config is larger than {MAX_CONFIG_CHARS} characters")
    if _FORBIDDEN.search(xml):
        raise LabelConfigError("label config must not contain a DOCTYPE or entity declarations")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"label config is not well-formed XML: {exc}") from None

    texts = {}
    for el in root.iter():
        if _tag(el) == "text" and el.get("name"):
            texts.setdefault(el.get("name"), el)
    choices = [el for el in root.iter() if _tag(el) == "choices"]
    if not choices:
        raise LabelConfigError("label config has no <Choices> control; studio-al classifies "
                               "texts with a <Choices> control on a <Text> object")
    if not texts:
        raise LabelConfigError("label config has no <Text name=... value=\"$field\"> object")

    problems = []
    for control in choices:
        name = control.get("name")
        to_names = [t.strip() for t in (control.get("toName") or "").split(",") if t.strip()]
        if not name:
            problems.append("a <Choices> control has no name")
            continue
        target = next((t for t in to_names if t in texts), None)
        if target is None:
            problems.append(f"<Choices name={name!r}> has toName={control.get('toName')!r} but "
                            f"there is no <Text> with that name (Text names: {sorted(texts)})")
            continue
        value = texts[target].get("value") or ""
        if not value.startswith("$") or len(value) < 2:
            problems.append(f"<Text name={target!r}> has value={value!r}; expected \"$field\"")
            continue
        labels = []
        for option in control.iter():
            if _tag(option) != "choice":
                continue
            label = option.get("alias") or option.get("value")
            if not label:
                raise LabelConfigError(f"a <Choice> in <Choices name={name!r}> has no value")
            if label in labels:
                raise LabelConfigError(f"duplicate choice {label!r} in <Choices name={name!r}>")
            labels.append(label)
        if not labels:
            problems.append(f"<Choices name={name!r}> has no <Choice value=...> options")
            continue
        multi = (control.get("choice") or "single").lower() == "multiple"
        return LabelConfig(name, target, value[1:], tuple(labels), multi)
    raise LabelConfigError("; ".join(problems))
