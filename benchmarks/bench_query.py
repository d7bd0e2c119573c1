"""Query-strategy speed and memory: ours vs small-text 1.4.1, in the same run.

One ``query`` per (strategy, number of classes, n) on a synthetic pool of ``--pool`` rows x
``--dim`` dense float32 features with ``--labeled`` labeled rows. Both libraries get the SAME
probabilities from the same stub classifier, which returns a precomputed matrix (the whole
pool: the array itself, no copy; a subset: a row gather), so the strategy is timed, not a
model. Deterministic strategies must select the same SET of indices as small-text (checked
here; small-text uses argpartition, so the order inside the top n may differ).

Time: best of up to ``--repeats`` runs (``time.perf_counter``); the reference's repeats stop
early once ``--budget`` seconds were spent on one cell (at least one run; small-text's
entropy takes 10-100 s per query at 100k depending on the machine's load). Memory: peak of
``tracemalloc`` (Python and numpy allocations, which numpy reports to tracemalloc) during one
separate query, for ``n=max(--n)`` only (the peak does not depend on n for these strategies).
Threads: ``OMP_NUM_THREADS`` & co. are set to ``--threads`` before numpy is imported and
``threadpoolctl.threadpool_limits`` is applied around both sides.

    .venv/bin/python benchmarks/bench_query.py                       # 100k x 384, ~4 min
    .venv/bin/python benchmarks/bench_query.py --pool 20000 --repeats 3

Writes ``benchmarks/results/query_<pool/1000>k.md`` and ``.json`` (``--out`` to change).
"""
from __future__ import annotations

import argparse
import os
import sys


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pool", type=int, default=100_000, help="rows in the pool (default 100000)")
    p.add_argument("--dim", type=int, default=384, help="feature dimension (default 384)")
    p.add_argument("--labeled", type=int, default=500, help="labeled rows (default 500)")
    p.add_argument("--classes", type=int, nargs="+", default=[2, 4])
    p.add_argument("--n", type=int, nargs="+", default=[10, 100], help="query sizes")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per cell (best is kept)")
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds after which a cell stops repeating (at least one run)")
    p.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads for both sides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # pin threads BEFORE numpy is imported
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import datetime as _dt  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from al_engine.data import Dataset  # noqa: E402
from al_engine.registry import available, make_query_strategy  # noqa: E402


class PrecomputedProba:
    """Stub classifier: ``predict_proba`` returns rows of a fixed matrix.

    Column 0 of the features holds the row id (exact in float32 below 2**24), so a subset
    (``dataset[idx]``, as subsampling builds) gets its own rows; the full pool gets the
    precomputed array itself at no cost.
    """

    def __init__(self, x_full: np.ndarray, proba_full: np.ndarray):
        self.x_full = x_full
        self.proba_full = proba_full

    def predict_proba(self, dataset):
        x = dataset.x
        if x is self.x_full:
            return self.proba_full
        return self.proba_full[np.asarray(x[:, 0]).astype(np.int64)]


def make_data(pool: int, dim: int, labeled: int, k: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pool, dim), dtype=np.float32)
    x[:, 0] = np.arange(pool, dtype=np.float32)
    logits = rng.standard_normal((pool, k)) * 2.0
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    idx_labeled = np.sort(rng.choice(pool, size=labeled, replace=False))
    mask = np.ones(pool, dtype=bool)
    mask[idx_labeled] = False
    idx_unlabeled = np.flatnonzero(mask)
    y_full = np.full(pool, -1, dtype=np.int64)
    y_full[idx_labeled] = rng.integers(0, k, size=labeled)
    y_full[idx_labeled[:k]] = np.arange(k)  # every class present
    return x, proba, idx_labeled, idx_unlabeled, y_full


def cases():
    """(label, registry name, ours factory, reference factory or None, deterministic)."""
    import small_text as st

    table = {
        "random": [("random", lambda: make_query_strategy("random", seed=0),
                    st.RandomSampling, False)],
        "least_confidence": [("least_confidence", lambda: make_query_strategy("least_confidence"),
                              st.LeastConfidence, True)],
        "prediction_entropy": [("prediction_entropy",
                                lambda: make_query_strategy("prediction_entropy"),
                                st.PredictionEntropy, True)],
        "breaking_ties": [("breaking_ties", lambda: make_query_strategy("breaking_ties"),
                           st.BreakingTies, True)],
        "subsampling": [
            ("subsampling(breaking_ties)",
             lambda: make_query_strategy("subsampling", base_query_strategy="breaking_ties",
                                         seed=0),
             lambda: st.SubsamplingQueryStrategy(st.BreakingTies()), False),
            ("subsampling(prediction_entropy)",
             lambda: make_query_strategy("subsampling", base_query_strategy="prediction_entropy",
                                         seed=0),
             lambda: st.SubsamplingQueryStrategy(st.PredictionEntropy()), False),
        ],
    }
    out, skipped = [], []
    for name in available("query_strategy"):
        if name in table:
            out.extend((label, name, ours, ref, det) for label, ours, ref, det in table[name])
        else:
            skipped.append(name)
    return out, skipped


def timed(make, args, n, repeats, budget):
    """Best wall time of up to ``repeats`` fresh-object queries (no new run once ``budget``
    seconds were spent; at least one run); the last selection."""
    best, spent, runs, sel = float("inf"), 0.0, 0, None
    while runs < repeats and (runs == 0 or spent < budget):
        strategy = make()
        t0 = time.perf_counter()
        sel = strategy.query(*args, n=n)
        dt = time.perf_counter() - t0
        best, spent, runs = min(best, dt), spent + dt, runs + 1
    return best, runs, np.asarray(sel)


def peak_mib(make, args, n):
    strategy = make()
    tracemalloc.start()
    tracemalloc.reset_peak()
    strategy.query(*args, n=n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def run(a) -> dict:
    import small_text
    from small_text.data import SklearnDataset

    all_cases, skipped = cases()
    rows = []
    load_before = os.getloadavg()
    for k in a.classes:
        x, proba, idx_l, idx_u, y_full = make_data(a.pool, a.dim, a.labeled, k, a.seed)
        clf = PrecomputedProba(x, proba)
        ours_ds = Dataset(x=x, y=y_full)
        assert ours_ds.x is x
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_ds = SklearnDataset(x, y_full, target_labels=np.arange(k))
        y = y_full[idx_l]
        for label, name, ours_make, ref_make, det in all_cases:
            for n in a.n:
                ours_args = (clf, ours_ds, idx_u, idx_l, y)
                ref_args = (clf, ref_ds, idx_u, idx_l, y)
                with threadpool_limits(a.threads):
                    t_ours, r_ours, s_ours = timed(ours_make, ours_args, n, a.repeats, a.budget)
                    t_ref, r_ref, s_ref = timed(ref_make, ref_args, n, a.repeats, a.budget)
                    if n == max(a.n):
                        m_ours = peak_mib(ours_make, ours_args, n)
                        m_ref = peak_mib(ref_make, ref_args, n)
                    else:
                        m_ours = m_ref = None
                valid = (s_ours.size == n and np.unique(s_ours).size == n
                         and bool(np.isin(s_ours, idx_u).all()))
                same = (set(s_ours.tolist()) == set(s_ref.tolist())) if det else None
                row = dict(strategy=label, registry_name=name, classes=k, n=n,
                           ours_s=t_ours, ref_s=t_ref, speedup=t_ref / t_ours,
                           ours_runs=r_ours, ref_runs=r_ref,
                           ours_peak_mib=m_ours, ref_peak_mib=m_ref,
                           valid=valid, same_set_as_ref=same)
                rows.append(row)
                print(_fmt_row(row), flush=True)
    return dict(
        benchmark="query strategies, one query",
        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([os.path.relpath(sys.executable)] + sys.argv),
        setup=dict(pool=a.pool, dim=a.dim, dtype="float32", labeled=a.labeled,
                   unlabeled=a.pool - a.labeled, classes=a.classes, n=a.n, repeats=a.repeats,
                   budget_s=a.budget, threads=a.threads, seed=a.seed,
                   timing="best of runs, time.perf_counter, fresh strategy object per run",
                   memory="tracemalloc peak during one query (Python + numpy allocations), "
                          "n=max(n) only"),
        machine=dict(python=platform.python_version(), platform=platform.platform(),
                     cpus=os.cpu_count(), numpy=np.__version__, scipy=scipy.__version__,
                     small_text=getattr(small_text, "__version__", "?")),
        load_average_1_5_15min=dict(before=[round(v, 2) for v in load_before],
                                    after=[round(v, 2) for v in os.getloadavg()]),
        skipped_strategies=skipped,
        results=rows,
    )


def _fmt_row(r) -> str:
    mem = "" if r["ours_peak_mib"] is None else \
        f"{r['ours_peak_mib']:8.1f} {r['ref_peak_mib']:8.1f}"
    same = {True: "same", False: "DIFF", None: "n/a"}[r["same_set_as_ref"]]
    return (f"{r['strategy']:32s} k={r['classes']:<2d} n={r['n']:<4d} "
            f"ours {r['ours_s'] * 1e3:10.3f} ms  small-text {r['ref_s'] * 1e3:11.3f} ms  "
            f"x{r['speedup']:9.1f}  {mem}  {same}{'' if r['valid'] else '  INVALID'}")


def to_markdown(res: dict) -> str:
    s = res["setup"]
    lines = [
        f"# Query strategies: studio-al vs small-text {res['machine']['small_text']}",
        "",
        f"- date: {res['date']}",
        f"- command: `{res['command']}`",
        f"- pool: {s['pool']:,} x {s['dim']} dense {s['dtype']} features, "
        f"{s['labeled']} labeled, one query; classes {s['classes']}, n {s['n']}",
        f"- timing: {s['timing']}; up to {s['repeats']} runs, no new run after "
        f"{s['budget_s']:g} s in a cell (columns 'runs')",
        f"- memory: {s['memory']}",
        f"- threads: {s['threads']} (OMP/OPENBLAS/MKL env vars set before numpy import, "
        f"plus threadpoolctl), same for both sides",
        f"- machine: {res['machine']['cpus']} CPUs, {res['machine']['platform']}, "
        f"Python {res['machine']['python']}, numpy {res['machine']['numpy']}, "
        f"scipy {res['machine']['scipy']}",
        f"- load average (1/5/15 min) before: {res['load_average_1_5_15min']['before']}, "
        f"after: {res['load_average_1_5_15min']['after']} (a shared machine: absolute times "
        "are noisy, both sides ran interleaved under the same load)",
        "- probabilities: the same precomputed matrix for both (stub classifier), so only the "
        "strategy is timed",
        "- same set: deterministic strategies must select the same set of indices as "
        "small-text; n/a for random draws (different generators), where validity is checked",
        "",
        "| strategy | classes | n | ours (ms) | small-text (ms) | speed-up | ours peak (MiB) "
        "| small-text peak (MiB) | runs (ours/st) | same set | valid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in res["results"]:
        mem = ("–", "–") if r["ours_peak_mib"] is None else \
            (f"{r['ours_peak_mib']:.1f}", f"{r['ref_peak_mib']:.1f}")
        same = {True: "yes", False: "**NO**", None: "n/a"}[r["same_set_as_ref"]]
        lines.append(
            f"| {r['strategy']} | {r['classes']} | {r['n']} | {r['ours_s'] * 1e3:.3f} | "
            f"{r['ref_s'] * 1e3:.3f} | {r['speedup']:.1f}× | {mem[0]} | {mem[1]} | "
            f"{r['ours_runs']}/{r['ref_runs']} | {same} | "
            f"{'yes' if r['valid'] else '**NO**'} |")
    if res["skipped_strategies"]:
        lines += ["", "Registered but not covered by this benchmark (no small-text mapping "
                      "here): " + ", ".join(res["skipped_strategies"])]
    return "\n".join(lines) + "\n"


def main(a) -> int:
    res = run(a)
    md = to_markdown(res)
    print()
    print(md)
    if not a.no_write:
        os.makedirs(a.out, exist_ok=True)
        stem = os.path.join(a.out, f"query_{a.pool // 1000}k")
        with open(stem + ".json", "w") as f:
            json.dump(res, f, indent=1)
        with open(stem + ".md", "w") as f:
            f.write(md)
        print(f"wrote {stem}.md and {stem}.json")
    bad = [r for r in res["results"] if not r["valid"] or r["same_set_as_ref"] is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
