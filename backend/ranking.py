"""The ranking of one model version: every unlabeled task's priority and predicted label.

Only the head of a ranking is pushed to Label Studio (``backend.push``); every other task is
answered from this file when Label Studio asks ``/predict``. So the web process must look a
task up in microseconds in a ranking of 100,000 tasks: the ranking is a handful of numpy
arrays in one ``.npz`` file (no pickle), loaded once per version and searched with
``np.searchsorted``.

Arrays (all of length ``n``, in rank order, rank 0 = the task the strategy wants first):

* ``task_ids`` (int64) and ``scores`` (float64, the priority ``rank / (n - 1)``);
* ``confidence`` (float32, NaN when there is no model yet);
* single-label: ``label_codes`` (int16, index into ``label_names``; -1 = no prediction);
  multi-label: ``label_bits`` (bool, ``(n, len(label_names))``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

import numpy as np

FORMAT = 1


@dataclass(frozen=True)
class RankedTask:
    """One task of a ranking: its priority ``score`` (lowest served first), the predicted
    label names and the model's ``confidence`` (None before the first model)."""

    task: int
    score: float
    labels: list[str]
    confidence: float | None

    def as_dict(self) -> dict:
        return {"task": self.task, "score": self.score, "labels": self.labels,
                "confidence": self.confidence}


class Ranking:
    """A version's ranking (see the module docstring). Build with :meth:`build`."""

    def __init__(self, task_ids: np.ndarray, scores: np.ndarray, confidence: np.ndarray,
                 label_names: Sequence[str], multi_label: bool,
                 label_codes: np.ndarray | None = None, label_bits: np.ndarray | None = None):
        n = len(task_ids)
        self.task_ids = np.asarray(task_ids, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float64)
        self.confidence = np.asarray(confidence, dtype=np.float32)
        self.label_names = [str(x) for x in label_names]
        self.multi_label = bool(multi_label)
        if multi_label:
            bits = np.zeros((n, len(self.label_names)), dtype=bool) if label_bits is None \
                else np.asarray(label_bits, dtype=bool)
            self.label_bits, self.label_codes = bits.reshape(n, len(self.label_names)), None
        else:
            codes = np.full(n, -1, dtype=np.int16) if label_codes is None \
                else np.asarray(label_codes, dtype=np.int16)
            self.label_codes, self.label_bits = codes, None
        if not (len(self.scores) == len(self.confidence) == n):
            raise ValueError("task_ids, scores and confidence must have the same length")
        self._sorter = np.argsort(self.task_ids, kind="stable")
        self._sorted = self.task_ids[self._sorter]

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, task_ids, scores, predicted: list[list[str]] | None, confidence,
              label_names: Sequence[str], multi_label: bool) -> "Ranking":
        """From task ids in rank order, their scores, predicted label names per task (None:
        no model) and confidences (NaN: none)."""
        names = list(label_names)
        n = len(task_ids)
        conf = np.full(n, np.nan) if confidence is None else np.asarray(confidence, float)
        if predicted is None:
            return cls(task_ids, scores, conf, names, multi_label)
        index = {name: i for i, name in enumerate(names)}
        if multi_label:
            bits = np.zeros((n, len(names)), dtype=bool)
            for row, chosen in enumerate(predicted):
                bits[row, [index[c] for c in chosen]] = True
            return cls(task_ids, scores, conf, names, True, label_bits=bits)
        codes = np.fromiter((index[p[0]] if p else -1 for p in predicted), dtype=np.int16,
                            count=n)
        return cls(task_ids, scores, conf, names, False, label_codes=codes)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self.task_ids.size)

    def _labels_at(self, row: int) -> list[str]:
        if self.multi_label:
            return [self.label_names[j] for j in np.flatnonzero(self.label_bits[row])]
        code = int(self.label_codes[row])
        return [] if code < 0 else [self.label_names[code]]

    def _entry(self, row: int) -> RankedTask:
        conf = float(self.confidence[row])
        return RankedTask(int(self.task_ids[row]), float(self.scores[row]), self._labels_at(row),
                          None if conf != conf else round(conf, 6))

    def head(self, n: int) -> list[RankedTask]:
        """The ``n`` best-ranked tasks, best first."""
        return self.entries(0, n)

    def entries(self, start: int, stop: int) -> list[RankedTask]:
        """The tasks ranked ``start`` to ``stop - 1``."""
        return [self._entry(i) for i in range(max(int(start), 0), min(int(stop), len(self)))]

    def rows_of(self, task_ids) -> np.ndarray:
        """Rank positions of ``task_ids`` (-1 where a task is not in the ranking)."""
        ids = np.asarray(task_ids, dtype=np.int64).reshape(-1)
        if not len(self):
            return np.full(ids.size, -1, dtype=np.int64)
        pos = np.searchsorted(self._sorted, ids)
        pos = np.minimum(pos, len(self) - 1)
        found = self._sorted[pos] == ids
        return np.where(found, self._sorter[pos], -1)

    def lookup(self, task_ids) -> list[RankedTask | None]:
        """The entry of every task id (None for a task outside the ranking)."""
        return [None if r < 0 else self._entry(int(r)) for r in self.rows_of(task_ids)]

    # ------------------------------------------------------------------ files
    def to_bytes(self) -> bytes:
        arrays = {"format": np.array([FORMAT]), "task_ids": self.task_ids, "scores": self.scores,
                  "confidence": self.confidence, "multi_label": np.array([self.multi_label]),
                  "label_names": np.array(self.label_names, dtype=np.str_)}
        if self.multi_label:
            arrays["label_bits"] = self.label_bits
        else:
            arrays["label_codes"] = self.label_codes
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Ranking":
        """Parse :meth:`to_bytes` output; raises ``ValueError`` on a damaged file."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                if int(z["format"][0]) != FORMAT:
                    raise ValueError(f"unknown ranking format {int(z['format'][0])}")
                multi = bool(z["multi_label"][0])
                return cls(z["task_ids"], z["scores"], z["confidence"],
                           [str(x) for x in z["label_names"]], multi,
                           label_codes=None if multi else z["label_codes"],
                           label_bits=z["label_bits"] if multi else None)
        except Exception as exc:  # noqa: BLE001 - BadZipFile, KeyError, ValueError, EOFError...
            raise ValueError(f"damaged ranking file: {type(exc).__name__}: {exc}") from None
