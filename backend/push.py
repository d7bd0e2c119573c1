"""Writing a round's ranking to Label Studio with a bounded number of writes.

Label Studio 1.23's uncertainty sampling (``projects/functions/next_task.py``) serves, among
the unlabeled tasks that have a prediction of the project's current ``model_version``, the one
with the lowest ``score`` (after the ``cluster`` the annotator solved least); with several
annotators it picks at random among the first ``annotators + 1``; with no such task left it
falls back to random order. So only the head of the ranking has to be in Label Studio:

1. push the first ``AL_PUSH_FIRST`` predictions of the head (``POST /api/predictions``, ~0.1 s
   each whatever the project size),
2. switch the project to the new version (``PATCH``: the queue is now the new ranking),
3. push the rest of the head,
4. delete the superseded versions (only their head and the few predictions Label Studio stored
   from ``/predict`` answers: ~0.2 s for 20).

Every other task gets its prediction from ``/predict`` (answered from the ranking on disk)
when Label Studio asks for it. The head size K (:func:`head_size`) covers the annotations
expected before the next round lands. ``AL_PUSH_ALL=true`` pushes every task instead (the
whole ranking visible in the Data Manager, at a cost linear in the project size: a bulk import
recounts every task of the project, and deleting a version costs ~30 ms per prediction).
"""
from __future__ import annotations

import logging
import math
from typing import Iterable

from backend.labelconfig import LabelConfig
from backend.ranking import Ranking

log = logging.getLogger("studio_al.push")

SAMPLING = "Uncertainty sampling"
VERSION_PREFIX = "studio-al-"
#: Predictions per bulk import when every task is pushed (``AL_PUSH_ALL``).
TAIL_CHUNK = 10_000
#: Seconds of recent annotations used to measure the annotation rate.
RATE_WINDOW_S = 300.0


def annotation_rate(recent: Iterable[list], now: float, window: float = RATE_WINDOW_S
                    ) -> tuple[float, int]:
    """``(annotations per second, distinct annotators)`` over the last ``window`` seconds,
    from ``[received_at, annotator]`` pairs of ``ANNOTATION_CREATED`` webhooks."""
    times = [t for t, _ in recent if now - window <= t <= now]
    users = {u for t, u in recent if now - window <= t <= now and u is not None}
    if len(times) < 2:
        return 0.0, len(users)
    span = max(now - min(times), 30.0)
    return len(times) / span, len(users)


def head_size(settings, rate: float, annotators: int, round_s: float) -> int:
    """K: enough tasks for the annotations expected until the next round is live.

    :math:`K = \\lceil 1.5\\, r (t_{round} + t_{interval}) \\rceil + a + 1`, clipped to
    ``[AL_PUSH_HEAD, AL_PUSH_MAX]``, with ``r`` the annotation rate (per second), ``t_round``
    the last round's duration, ``t_interval`` = ``AL_MIN_ROUND_INTERVAL`` and ``a`` the
    number of recent annotators (each holds one task; Label Studio Enterprise picks at random
    among the first ``a + 1``). The factor 1.5 covers a round that starts just after an
    annotation. Every prediction written costs Label Studio 3-4 commits, during which an
    annotator's ``/next`` on SQLite may hit "database is locked" (Label Studio then sleeps 1 s
    and retries), so K is kept no larger than needed.
    """
    horizon = max(round_s, 0.0) + settings.min_round_interval
    k = math.ceil(1.5 * rate * horizon) + annotators + 1
    return int(min(max(k, settings.push_head), settings.push_max))


def prediction(entry, version: str, cfg: LabelConfig) -> dict:
    return {"task": entry.task, "model_version": version, "score": entry.score,
            "result": cfg.result(entry.labels, entry.confidence)}


class Pusher:
    """The Label Studio writes of one round (``created`` counts the predictions)."""

    def __init__(self, client, project_id: int, cfg: LabelConfig, version: str):
        self.client, self.project_id, self.cfg, self.version = client, project_id, cfg, version
        self.created = 0

    def create(self, entries) -> None:
        """One ``POST /api/predictions`` per entry."""
        for entry in entries:
            self.client.create_prediction(prediction(entry, self.version, self.cfg))
            self.created += 1

    def switch(self) -> None:
        """Make the new version the project's ranking (uncertainty sampling on it)."""
        self.client.update_project(self.project_id, model_version=self.version,
                                   sampling=SAMPLING, answer_fields="id")

    def import_all(self, ranking: Ranking, start: int, keep_going) -> bool:
        """Bulk-import the ranking from position ``start`` (``AL_PUSH_ALL``); stops early
        (returns False) when ``keep_going()`` turns false (a newer round is wanted)."""
        for lo in range(start, len(ranking), TAIL_CHUNK):
            if not keep_going():
                return False
            chunk = [prediction(e, self.version, self.cfg)
                     for e in ranking.entries(lo, lo + TAIL_CHUNK)]
            self.created += self.client.import_predictions(self.project_id, chunk,
                                                           chunk_size=TAIL_CHUNK)
        return True

    def delete_superseded(self, previous: str | None) -> tuple[list[str], str | None]:
        """Delete every other studio-al version of the project from Label Studio; returns
        ``(deleted versions, warning or None)``. A failure is a warning: the new version
        already serves."""
        warning = None
        try:
            existing = self.client.model_versions(self.project_id)
            old = [v for v in existing if v.startswith(VERSION_PREFIX) and v != self.version]
        except Exception as exc:  # noqa: BLE001
            old = [previous] if previous else []
            warning = f"model_versions failed: {type(exc).__name__}: {exc}"
        deleted = []
        for v in old:
            try:
                self.client.delete_model_version(self.project_id, v)
                deleted.append(v)
            except Exception as exc:  # noqa: BLE001
                warning = f"deleting {v} failed: {type(exc).__name__}: {exc}"
                log.warning("event=delete_version_failed project=%s version=%s error=%r",
                            self.project_id, v, str(exc))
        return deleted, warning
