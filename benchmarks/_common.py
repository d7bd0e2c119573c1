"""What the benchmark scripts share: paths, thread pinning, timing, result files, Markdown
tables, the stub classifier and the Label Studio set-up steps.

The scripts run as ``.venv/bin/python benchmarks/<script>.py`` from the repository root.
Python then puts ``benchmarks/`` first on ``sys.path``, so ``from _common import ...`` finds
this module; importing it also makes the repository root importable (the one place that
touches ``sys.path``), for ``benchmarks.corpus`` and the test harnesses some benchmarks drive
(``tests.e2e``, ``tests.reliability``). ``backend`` and ``al_engine`` need no path set-up (they
are installed: ``pip install -e .``); with the root first on the path they are this checkout's.

Only the standard library is imported at import time, so a script can import this module
before :func:`pin_threads` (which must run before numpy is imported); the helpers that need
numpy import it when called.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

#: The repository root, ``benchmarks/results`` and the shared datasets (``../shared/data``).
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data"

if str(REPO) not in sys.path:  # run as a script: ``benchmarks.*`` and ``tests.*`` import
    # first: a dependency installs a top-level ``tests`` package into site-packages
    sys.path.insert(0, str(REPO))

#: The environment variables that size the BLAS / OpenMP thread pools.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

#: Tasks per Label Studio import request.
IMPORT_CHUNK = 10_000


# ---------------------------------------------------------------------------------- threads
def pin_threads(n: int) -> None:
    """Set every variable of :data:`THREAD_VARS` to ``n``.

    Only effective before numpy (and its BLAS) is imported: call it first.
    """
    for var in THREAD_VARS:
        os.environ[var] = str(n)


# ----------------------------------------------------------------------------------- timing
def best_of(prepare: Callable[[int], Callable[[], Any]], repeats: int,
            budget: float = float("inf"), min_runs: int = 1) -> tuple[float, int, Any]:
    """Best wall time of up to ``repeats`` timed calls.

    Parameters
    ----------
    prepare : callable
        ``prepare(i)`` sets up run ``i`` untimed (e.g. builds a fresh strategy object, seeds
        a generator) and returns the zero-argument call to time.
    repeats : int
        Most runs.
    budget : float
        No new run starts once this many seconds were spent in timed calls...
    min_runs : int
        ...unless fewer than ``min_runs`` ran.

    Returns
    -------
    best : float
        The shortest call, in seconds (``time.perf_counter``).
    runs : int
        How many calls ran.
    result : object
        What the last call returned.
    """
    best, spent, runs, result = float("inf"), 0.0, 0, None
    while runs < repeats and (runs < min_runs or spent < budget):
        call = prepare(runs)
        t0 = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - t0
        best, spent, runs = min(best, seconds), spent + seconds, runs + 1
    return best, runs, result


def peak_mib(call: Callable[[], Any]) -> float:
    """Peak of ``tracemalloc`` during ``call()``, in MiB.

    Python allocations and numpy's buffers (numpy reports them to tracemalloc); not memory
    that C/C++ libraries allocate on their own.
    """
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak / 2 ** 20


# ----------------------------------------------------------------------------- result files
def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the ``date`` of a result)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that ran ``script``, shell-quoted, paths relative to the working directory.

    ``argv`` defaults to ``sys.argv[1:]`` (pass it when ``main(argv)`` was called directly).
    E.g. ``.venv/bin/python benchmarks/bench_query.py --pool 20000``.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join([os.path.relpath(sys.executable), os.path.relpath(script), *args])


def machine(**extra: Any) -> dict:
    """CPU count, Python version and platform, then ``extra`` (library versions, load)."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), **extra}


def write_results(stem: str | os.PathLike, result: dict, markdown: str | None = None,
                  indent: int = 1) -> Path:
    """Write ``<stem>.json`` (and ``<stem>.md`` when ``markdown`` is given); return the JSON path.

    The folder is created. Values JSON does not know (numpy scalars, paths) are written as
    their ``str``.
    """
    json_path = Path(f"{stem}.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(result, indent=indent, default=str) + "\n")
    if markdown is not None:
        Path(f"{stem}.md").write_text(markdown)
    return json_path


def publish(stem: str | os.PathLike, result: dict, markdown: str, write: bool = True) -> None:
    """Print ``markdown`` after a blank line; with ``write``, also :func:`write_results` and
    say where."""
    print()
    print(markdown)
    if write:
        write_results(stem, result, markdown)
        print(f"wrote {stem}.md and {stem}.json")


def md_preamble(title: str, date: str, command: str) -> list[str]:
    """The first lines of a result's Markdown: title, date and command."""
    return [f"# {title}", "", f"- date: {date}", f"- command: `{command}`"]


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]],
             align: str | None = None) -> list[str]:
    """A Markdown table as lines: header, separator, one line per row (cells as ``str``).

    ``align`` has one letter per column, ``l`` or ``r`` (right-aligned: ``---:``); by
    default every column is left-aligned.
    """
    align = align or "l" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    sep = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return [_md_row(header), sep, *(_md_row(row) for row in rows)]


def _md_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def log(msg: str) -> None:
    """A progress line on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- synthetic query pools
class PrecomputedClassifier:
    """Stub classifier: its outputs are rows of fixed matrices, so a query strategy is timed,
    not a model.

    Parameters
    ----------
    x : array of shape (n_pool, dim)
        What ``embed`` returns for the whole pool.
    proba : array of shape (n_pool, num_classes)
        What ``predict_proba`` returns for the whole pool.
    row_ids : callable
        ``row_ids(dataset)`` is ``None`` for the whole pool (then the arrays themselves are
        returned, no copy) or the pool rows of a subset (a gather).
    num_classes : int
        Classes (or labels) of ``proba``.
    """

    def __init__(self, x, proba, row_ids: Callable[[Any], Any], num_classes: int):
        self.x = x
        self.proba = proba
        self.row_ids = row_ids
        self.num_classes = num_classes

    def predict_proba(self, dataset):
        rows = self.row_ids(dataset)
        return self.proba if rows is None else self.proba[rows]

    def predict(self, dataset, return_proba: bool = False):
        proba = self.predict_proba(dataset)
        return (proba.argmax(axis=1), proba) if return_proba else proba.argmax(axis=1)

    def embed(self, dataset, return_proba: bool = False, **kwargs):
        rows = self.row_ids(dataset)
        emb = self.x if rows is None else self.x[rows]
        return (emb, self.predict_proba(dataset)) if return_proba else emb


def softmax_rows(logits):
    """Row-wise softmax of a 2-d array (shifted by the row maximum)."""
    import numpy as np
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    return proba


def labeled_split(rng, pool: int, labeled: int):
    """``labeled`` sorted random rows of ``range(pool)`` drawn from ``rng``, and the others."""
    import numpy as np
    idx_labeled = np.sort(rng.choice(pool, size=labeled, replace=False))
    mask = np.ones(pool, dtype=bool)
    mask[idx_labeled] = False
    return idx_labeled, np.flatnonzero(mask)


def valid_selection(selected, n: int, idx_unlabeled) -> bool:
    """``selected`` is ``n`` distinct rows, all of them unlabeled."""
    import numpy as np
    return bool(selected.size == n and np.unique(selected).size == n
                and np.isin(selected, idx_unlabeled).all())


# ------------------------------------------------------------------------------ Label Studio
def add_label_studio_args(ap, tasks: int, out: str) -> None:
    """``--tasks`` (default ``tasks``), ``--db`` and ``--out`` (default ``results/<out>``)."""
    ap.add_argument("--tasks", type=int, default=tasks)
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite",
                    help="Label Studio's database: its default SQLite file, or a fresh database "
                         "on the local PostgreSQL server (createdb; dropped at the end)")
    ap.add_argument("--out", default=str(RESULTS / out))


def create_project(ls, title: str, labels: Sequence[str]) -> dict:
    """A Label Studio project with a Text + single Choices config over ``labels``."""
    from tests.e2e.flows import label_config
    return ls.req("POST", "/api/projects", json={"title": title,
                                                 "label_config": label_config(list(labels))})


def import_texts(ls, pid: int, records: Sequence[dict], chunk: int = IMPORT_CHUNK,
                 progress: Callable[[int, float], None] | None = None) -> list[float]:
    """Import ``records`` (``{"text": ...}``) as tasks, ``chunk`` per request.

    ``progress(done, seconds)`` is called after each request. Returns the seconds of each
    request; raises ``RuntimeError`` when Label Studio reports another task count.
    """
    seconds = []
    for i in range(0, len(records), chunk):
        part = records[i:i + chunk]
        t0 = time.perf_counter()
        res = ls.req("POST", f"/api/projects/{pid}/import", timeout=1800,
                     json=[{"text": r["text"]} for r in part])
        if res.get("task_count") != len(part):
            raise RuntimeError(f"import of chunk {i // chunk} answered {res}")
        seconds.append(round(time.perf_counter() - t0, 2))
        if progress is not None:
            progress(i + len(part), seconds[-1])
    return seconds
