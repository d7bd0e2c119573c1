"""The audit record of one round: written to ``audit.jsonl``, read by ``/status`` and the
dashboard. Every key the readers use is declared here, with what it means: the top level as
the fields of :class:`RoundRecord`, the nested entries as the ``TypedDict`` s below (the
round builds them with these constructors). ``tests/backend/test_record.py`` checks that
every key the dashboard and ``/status`` read is declared, so renaming one fails a test
instead of blanking the dashboard."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypedDict

#: The steps of a round, in order (``backend.rounds.Round`` methods; ``RoundRecord.timings``
#: has one entry per step that ran, plus ``total``).
STEPS = ("connect", "sync", "train_and_rank", "write_version", "push", "clean_up", "catch_up",
         "evaluate")


class StoppingVerdict(TypedDict, total=False):
    """``RoundRecord.stopping``: the configured criterion on the stopping set
    (``backend.training.evaluate_stopping``)."""

    criterion: str                     # AL_STOPPING_CRITERION
    stop: bool | None                  # None when the criterion failed
    rounds: int                        # rounds it has seen since its last reset
    stopping_set: int                  # tasks in the stopping set
    reset: str                         # why its state was started over this round
    error: str                         # why it failed


class CriterionVerdict(TypedDict, total=False):
    """One entry of ``RoundMetrics.criteria`` (a criterion with default parameters)."""

    stop: bool | None
    value: float | None                # the statistic of this round (None before it has one)
    error: str


class CrossValidationSummary(TypedDict, total=False):
    """``RoundMetrics.cv``: k-fold quality of the classifier on the labeled tasks
    (``backend.metrics.cross_validate``), or only ``reason`` when not cross-validated."""

    accuracy: float                    # mean over folds at the whole training fold
    accuracy_std: float
    macro_f1: float
    folds: int
    n: int                             # labeled tasks cross-validated
    curve: dict[str, list]             # {"sizes", "mean", "std"}: the learning-curve points
    subsampled: bool                   # more labels than the budget: a seeded subsample
    reason: str                        # why there is no cross-validation


class RoundMetrics(TypedDict, total=False):
    """``RoundRecord.metrics``: the dashboard's figures (``backend.metrics.round_metrics``)."""

    class_counts: dict[str, int]       # labeled tasks per class
    class_counts_error: str
    accuracy_estimate: dict            # al_engine.accuracy.AccuracyEstimate.to_dict() or reason
    cv: CrossValidationSummary
    labels_needed: dict | None         # al_engine.estimate.LabelsNeeded.to_dict(), or a reason
    criteria: dict[str, CriterionVerdict]  # or {"error": ...}
    seconds: float


@dataclass(slots=True)
class RoundRecord:
    """One round of a project (see ``backend.rounds`` for the steps). Slotted: setting a
    field that is not declared here raises instead of silently missing from the record."""

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
    probes: dict | None = None         # random probes: {"queued", "labeled" (total), "new",
    #                                    "tasks" (the probes queued, by task id)}
    stopping: StoppingVerdict | None = None  # the configured stopping criterion's verdict
    metrics: RoundMetrics | None = None      # dashboard metrics (backend.metrics)
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
