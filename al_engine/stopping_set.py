"""The stopping set: what a stopping criterion is shown, round after round.

small-text's ``StoppingCriterion.stop(predictions, proba, indices_stopping)`` receives the
predictions and probabilities of a FIXED set of documents, the same set at every call
("usually the full train set"), plus ``indices_stopping``, positions into that set. The
window criteria (:class:`~al_engine.stopping.KappaAverage`,
:class:`~al_engine.stopping.DeltaFScore`, :class:`~al_engine.stopping.ClassificationChange`)
compare the whole prediction arrays from call to call and ignore ``indices_stopping``;
:class:`~al_engine.stopping.OverallUncertainty` averages over ``indices_stopping`` only, and
small-text says to pass the unlabeled set there to reproduce the original criterion
(Zhu et al., 2008: the uncertainty of the unlabeled pool). Hence one definition, used by the
simulation, by the backend's configured criterion and by the dashboard's criteria:

* the **stopping set** is the pool when the criteria are first evaluated, kept fixed (tasks
  added later are not in it; when one of its members disappears the caller starts over);
* ``predictions`` are :func:`~al_engine.classifiers.base.labels_from_proba` of the model's
  probabilities on that set (argmax; multi-label: ``p > 0.5``);
* ``indices_stopping`` are the positions of its members that are unlabeled now.

:func:`stop_arguments` builds the keyword arguments for positions already aligned with the
set (the simulation: the pool never changes); :class:`StoppingSet` maps a round's document
ids onto a set of ids kept between rounds (the backend: tasks come and go);
:func:`criterion_step` calls a criterion and reads the statistic that call produced.
"""
from __future__ import annotations

import numpy as np

from al_engine.classifiers.base import labels_from_proba


def stop_arguments(proba, multi_label: bool, unlabeled) -> dict:
    """Keyword arguments of ``StoppingCriterion.stop`` for the model's ``proba`` on the
    stopping set.

    Parameters
    ----------
    proba : ndarray of shape (n, num_classes)
        Probabilities of every member of the stopping set, in the set's order.
    multi_label : bool
    unlabeled : array-like of int
        Positions (into ``proba``) of the members that are unlabeled now.

    Returns
    -------
    dict
        ``{"predictions", "proba", "indices_stopping"}``.
    """
    proba = np.asarray(proba)
    return {"predictions": labels_from_proba(proba, multi_label), "proba": proba,
            "indices_stopping": np.asarray(unlabeled, dtype=np.int64).reshape(-1)}


def criterion_step(criterion, **stop_kwargs) -> tuple[bool, float | None]:
    """Call ``criterion.stop(**stop_kwargs)``; return its verdict and the statistic this call
    added to ``history_`` (None when it added none: before a window criterion's second call,
    or for criteria without a history such as ``MaxIterations``).

    A window criterion cuts its history to the window once full, so a full window that stays
    full also counts as a new value.
    """
    history = getattr(criterion, "history_", None)
    before = len(history) if history is not None else 0
    stop = bool(criterion.stop(**stop_kwargs))
    history = getattr(criterion, "history_", None) or []
    grew = len(history) > before
    cut = bool(history) and len(history) == before == getattr(criterion, "window_size", -1)
    return stop, (float(history[-1]) if grew or cut else None)


class StoppingSet:
    """A stopping set identified by document ids, kept between rounds while the pool changes.

    Parameters
    ----------
    ids : array-like of int
        The members' document ids (the pool when the criteria were first evaluated).
    """

    def __init__(self, ids):
        self.ids = ids

    def __len__(self) -> int:
        return int(np.asarray(self.ids).size)

    def covers(self, ids) -> bool:
        """Whether every member is among ``ids`` (else the set must be started over)."""
        return bool(np.all(np.isin(self.ids, ids)))

    def positions(self, ids) -> np.ndarray:
        """Position of each member in ``ids`` (every member must be there)."""
        ids = np.asarray(ids)
        sorter = np.argsort(ids, kind="stable")
        return sorter[np.searchsorted(ids, self.ids, sorter=sorter)]

    def stop_arguments(self, ids, proba, labeled_ids, multi_label: bool) -> dict:
        """:func:`stop_arguments` for a round whose rows are the documents ``ids``.

        Parameters
        ----------
        ids : array-like of int
            Document id of each row of ``proba`` (a superset of the members).
        proba : ndarray of shape (len(ids), num_classes)
        labeled_ids : array-like of int
            Ids of the documents labeled now.
        multi_label : bool
        """
        p = np.asarray(proba)[self.positions(ids)]
        unlabeled = np.flatnonzero(~np.isin(self.ids, labeled_ids))
        return stop_arguments(p, multi_label, unlabeled)
