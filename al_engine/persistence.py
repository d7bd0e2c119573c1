"""Pickle an object to a path, a string or a binary file handle, and back (the learner's
``save``/``load``, small-text's conventions: any of the three; small-text uses dill)."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO


def dump(obj: Any, file: str | Path | BinaryIO) -> None:
    """Pickle ``obj`` to ``file``; nothing is written if pickling fails.

    Raises
    ------
    TypeError
        If a part of ``obj`` cannot be pickled (e.g. a lambda), naming the cause.
    """
    try:
        data = pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise TypeError(f"cannot pickle this {type(obj).__name__} ({exc}); everything it holds "
                        "must be picklable") from exc
    if isinstance(file, (str, Path)):
        Path(file).write_bytes(data)
    else:
        file.write(data)


def load(file: str | Path | BinaryIO, expected: type) -> Any:
    """The object pickled in ``file``. Unpickling runs code named in the file: load only
    files you trust.

    Raises
    ------
    TypeError
        If the file holds something else than an ``expected``.
    """
    if isinstance(file, (str, Path)):
        with open(file, "rb") as f:
            obj = pickle.load(f)
    else:
        obj = pickle.load(file)
    if not isinstance(obj, expected):
        raise TypeError(f"the file holds a {type(obj).__name__}, not a {expected.__name__}")
    return obj
