"""The audit record of one round: written to ``audit.jsonl``, read by ``/status`` and the
dashboard. Every field the readers use is declared here (rename one and the type checker and
the tests see it), with what it means."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RoundRecord:
    """One round of a project (see ``backend.training.run_round`` for the steps)."""

    round: int                         # 1-based count of this project's rounds
    version: str                       # the model version this round created
    previous: str | None               # the version serving when it started
    reason: str                        # why it ran (webhook actions, "recovery", "sync", ...)
    started_at: float                  # epoch seconds
    events_upto: int                   # last webhook event (seq) this round has read
    strategy: str                      # AL_QUERY_STRATEGY
    classifier: str                    # AL_CLASSIFIER
    status: str = "failed"             # "ok" or "failed"
    error: str | None = None           # why it failed
    warning: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step, and "total"
    # --- the data the round saw
    n_tasks: int | None = None         # mirrored tasks with a text
    n_skipped: int | None = None       # mirrored tasks without the label config's text field
    n_labeled: int | None = None
    n_unlabeled: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)  # {"count", "annotation_ids"}
    sync: dict[str, Any] = field(default_factory=dict)    # what the mirror read this round
    cold_start: bool | None = None     # no model yet: ordered by AL_INIT_STRATEGY
    features: dict | None = None       # sentence embeddings: {"used", "embedded", "total", ...}
    strategy_used: str | None = None
    stopping: dict | None = None       # the configured stopping criterion's verdict
    metrics: dict | None = None        # dashboard metrics (backend.metrics)
    # --- what went to Label Studio
    queried: list[dict] = field(default_factory=list)  # the AL_BATCH_SIZE best tasks
    k: int | None = None               # head size pushed
    pushed: int | None = None          # predictions created in Label Studio
    push_complete: bool | None = None  # False: stopped early for a newer round (AL_PUSH_ALL)
    live_at: float | None = None       # when Label Studio's project switched to this version
    queue_reordered_s: float | None = None  # started_at -> live_at
    deleted_versions: list[str] = field(default_factory=list)
    warning_delete: str | None = None
    ls_requests: int = 0               # requests sent to Label Studio by this round
    ls_seconds: float = 0.0            # time spent waiting for Label Studio
    # --- pacing
    pace_s: float = 0.0                # leave Label Studio alone this long before the next round
    again: bool = False                # the round left work (sync, pending hints): run another
    finished_at: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)
