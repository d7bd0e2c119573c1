"""Helpers of the end-to-end tests: projects, annotations, waiting for a backend round, and an
independent re-computation of the strategy's first choice with al_engine."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests

from tests.e2e.harness import LS, load_jsonl


def label_config(labels: list[str], multiple: bool = False) -> str:
    choices = "".join(f'<Choice value="{name}"/>' for name in labels)
    kind = "multiple" if multiple else "single"
    return (f'<View><Text name="text" value="$text"/>'
            f'<Choices name="label" toName="text" choice="{kind}">{choices}</Choices></View>')


def choices_result(names: list[str]) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": list(names)}}]


@dataclass
class Project:
    ls: LS
    pid: int
    labels: list[str]
    truth: dict[int, list[str]]           # task id -> true label name(s)
    texts: dict[int, str]
    multi_label: bool = False
    annotations: dict[int, int] = field(default_factory=dict)  # task id -> annotation id

    @classmethod
    def create(cls, ls: LS, title: str, dataset: str, labels: list[str], per_label: int | None = None,
               n: int | None = None, multiple: bool = False, records: list[dict] | None = None) -> "Project":
        recs = records if records is not None else load_jsonl(dataset, n=n, per_label=per_label)
        pid = ls.create_project(title, label_config(labels, multiple), [{"text": r["text"]} for r in recs])
        tasks = ls.req("GET", "/api/tasks", params={"project": pid, "page_size": len(recs) + 10})["tasks"]
        by_text = {r["text"]: (r["labels"] if multiple else [r["label"]]) for r in recs}
        truth = {t["id"]: by_text[t["data"]["text"]] for t in tasks}
        texts = {t["id"]: t["data"]["text"] for t in tasks}
        assert len(truth) == len(recs)
        return cls(ls, pid, labels, truth, texts, multiple)

    @property
    def task_ids(self) -> list[int]:
        return sorted(self.texts)

    @property
    def unlabeled(self) -> list[int]:
        return [t for t in self.task_ids if t not in self.annotations]

    def annotate(self, task_id: int) -> int:
        ann = self.ls.req("POST", f"/api/tasks/{task_id}/annotations",
                          json={"result": choices_result(self.truth[task_id])}, expect=201)
        self.annotations[task_id] = ann["id"]
        return ann["id"]

    def connect(self, backend_url: str, title: str = "studio-al",
                basic_auth: tuple[str, str] | None = None) -> dict:
        body = {"url": backend_url, "project": self.pid, "title": title}
        if basic_auth:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0],
                        basic_auth_pass=basic_auth[1])
        ml = self.ls.req("POST", "/api/ml", json=body, expect=201)
        assert ml["state"] == "CO", f"ML backend not connected: {ml}"
        return ml


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written
            pass
    return out


def wait_for_round(backend_url: str, model_dir: Path, pid: int, annotation_ids: set[int],
                   timeout: float = 180.0, auth: tuple[str, str] | None = None) -> dict:
    """Poll (bounded) until the backend is idle for ``pid``, its serving version's audit record is
    ok and used every id in ``annotation_ids``; return that audit record."""
    audit_path = Path(model_dir) / str(pid) / "audit.jsonl"
    t0 = time.monotonic()
    delay = 0.1
    last = None
    while time.monotonic() - t0 < timeout:
        status = requests.get(f"{backend_url}/status", params={"project": pid}, timeout=10, auth=auth)
        if status.status_code == 200:
            st = status.json()
            records = read_jsonl(audit_path)
            ok = [r for r in records if r.get("status") == "ok" and r.get("version") == st.get("model_version")]
            last = (st, records[-1] if records else None)
            if ok and (st.get("job") or {}).get("state") == "idle":
                rec = ok[-1]
                used = set((rec.get("labels") or {}).get("annotation_ids") or [])
                if annotation_ids <= used:
                    return rec
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    raise AssertionError(f"no completed round using annotations {sorted(annotation_ids)} of project {pid} "
                         f"after {timeout:.0f}s; last status/audit: {json.dumps(last, default=str)[:1500]}")


def independent_best(project: Project, strategy_name: str) -> tuple[set[int], dict]:
    """Re-rank with al_engine on the same texts and labels (as the backend sees them: tasks by
    id, TF-IDF over all texts, linear_svc): the set of task ids tied for the best score."""
    from al_engine.data import Dataset
    from al_engine.registry import make_classifier, make_query_strategy

    tids = project.task_ids
    labels = [(project.truth[t] if project.multi_label else project.truth[t][0]) if t in project.annotations
              else None for t in tids]
    ds = Dataset.from_texts([project.texts[t] for t in tids], labels, target_labels=project.labels,
                            multi_label=project.multi_label)
    clf = make_classifier("linear_svc", num_classes=len(project.labels), multi_label=project.multi_label)
    ds = clf.featurize(ds)
    idx_l = np.flatnonzero([lab is not None for lab in labels])
    idx_u = np.flatnonzero([lab is None for lab in labels])
    clf.fit(ds[idx_l])
    strategy = make_query_strategy(strategy_name)
    scores = np.asarray(strategy.score(clf, ds, idx_u, idx_l, ds.y[idx_l]), dtype=float)[idx_u]
    best = scores.min() if strategy.lower_is_better else scores.max()
    tied = idx_u[np.isclose(scores, best, rtol=1e-9, atol=1e-12)]
    return {tids[i] for i in tied}, {"best_score": float(best), "n_tied": int(tied.size)}
