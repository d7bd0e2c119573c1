"""Random probes of a project: which queued tasks were drawn at random, which got labeled.

Each round puts probes into the head of its ranking (:func:`al_engine.accuracy.place_probes`,
share ``AL_PROBE_SHARE``). A task counts as a labeled probe when it was a probe of the ranking
that was serving while it got labeled: the round that first sees its label checks the probes
of the version that served before it (``serving``). A probe of an older ranking that the
strategy later queued again and got labeled from there is not counted, so only random draws
count. The probes' labels give the dashboard's unbiased accuracy estimate
(``backend.metrics``, :func:`al_engine.accuracy.probe_accuracy`).

Kept as the project state ``probes`` (``Store.save_state``): a small dict.
"""
from __future__ import annotations

import numpy as np

STATE = "probes"


class ProbeLog:
    """The probes of one project.

    Attributes
    ----------
    version : str or None
        The version whose ranking holds ``serving``.
    serving : ndarray of int
        Probe task ids of that ranking.
    labeled : dict of int to int
        Labeled probe task id -> the round that counted it.
    predicted : dict of int to list of str
        Labeled probe task id -> the labels the serving ranking predicted for it (a model
        that had not seen its label; empty when that ranking had no model): the prequential
        estimate for classifiers too expensive to refit (``backend.metrics``).
    """

    def __init__(self, version: str | None = None, serving=(), labeled: dict | None = None,
                 predicted: dict | None = None):
        self.version = version
        self.serving = np.asarray(serving, dtype=np.int64).reshape(-1)
        self.labeled = dict(labeled or {})
        self.predicted = dict(predicted or {})

    @classmethod
    def load(cls, store, project_id: int) -> "ProbeLog":
        state = store.load_state(project_id, STATE)
        if not isinstance(state, dict):
            return cls()
        return cls(state.get("version"), state.get("serving", ()), state.get("labeled"),
                   state.get("predicted"))

    def save(self, store, project_id: int) -> None:
        store.save_state(project_id, STATE, {"version": self.version,
                                             "serving": self.serving.tolist(),
                                             "labeled": self.labeled,
                                             "predicted": self.predicted})

    def note_labels(self, labeled_ids, round_no: int, serving_version: str | None,
                    load_ranking=None) -> int:
        """Count the serving ranking's probes that are labeled now; returns how many are new.

        ``serving_version`` is the version serving when the round started: probes are only
        taken from this log when it belongs to that version (a round that failed before its
        switch left the log of an older ranking). ``load_ranking()`` returns that version's
        :class:`~backend.ranking.Ranking` (or None), which gives the labels predicted for
        them; it is only called when a probe is newly labeled."""
        if self.version is None or self.version != serving_version or not self.serving.size:
            return 0
        now = np.asarray(labeled_ids, dtype=np.int64)
        new = [int(t) for t in self.serving[np.isin(self.serving, now)] if int(t) not in
               self.labeled]
        ranking = load_ranking() if new and load_ranking is not None else None
        entries = ranking.lookup(new) if ranking is not None else [None] * len(new)
        for t, entry in zip(new, entries):
            self.labeled[t] = int(round_no)
            self.predicted[t] = [] if entry is None else list(entry.labels)
        return len(new)

    def serve(self, version: str, probe_ids) -> None:
        """The probes of the ranking that serves from now on."""
        self.version = version
        self.serving = np.asarray(probe_ids, dtype=np.int64).reshape(-1)

    def mask(self, task_ids) -> np.ndarray:
        """Which of ``task_ids`` are labeled probes."""
        return np.isin(np.asarray(task_ids, dtype=np.int64),
                       np.fromiter(self.labeled, dtype=np.int64, count=len(self.labeled)))
