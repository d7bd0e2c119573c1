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
from functools import partial

from _common import (PrecomputedClassifier, best_of, command_line, labeled_split, machine,
                     md_preamble, md_table, peak_mib, pin_threads, publish, softmax_rows, utc_now,
                     valid_selection)


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
    pin_threads(ARGS.threads)

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from al_engine.data import Dataset  # noqa: E402
from al_engine.registry import available, make_query_strategy  # noqa: E402


def make_data(pool: int, dim: int, labeled: int, k: int, seed: int):
    """Features (column 0 holds the row id, exact in float32 below 2**24), probabilities,
    labeled and unlabeled rows, targets (-1 = unlabeled; every class labeled at least once)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pool, dim), dtype=np.float32)
    x[:, 0] = np.arange(pool, dtype=np.float32)
    proba = softmax_rows(rng.standard_normal((pool, k)) * 2.0)
    idx_labeled, idx_unlabeled = labeled_split(rng, pool, labeled)
    y_full = np.full(pool, -1, dtype=np.int64)
    y_full[idx_labeled] = rng.integers(0, k, size=labeled)
    y_full[idx_labeled[:k]] = np.arange(k)  # every class present
    return x, proba, idx_labeled, idx_unlabeled, y_full


def stub_classifier(x: np.ndarray, proba: np.ndarray) -> PrecomputedClassifier:
    """The full pool (``dataset.x is x``) gets ``proba`` itself at no cost; a subset
    (``dataset[idx]``, as subsampling builds) its own rows, by the row id in column 0."""
    def row_ids(dataset):
        return None if dataset.x is x else np.asarray(dataset.x[:, 0]).astype(np.int64)
    return PrecomputedClassifier(x, proba, row_ids, num_classes=proba.shape[1])


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
    best, runs, sel = best_of(lambda i: partial(make().query, *args, n=n), repeats, budget)
    return best, runs, np.asarray(sel)


def run(a) -> dict:
    import small_text
    from small_text.data import SklearnDataset

    all_cases, skipped = cases()
    rows = []
    load_before = os.getloadavg()
    for k in a.classes:
        x, proba, idx_l, idx_u, y_full = make_data(a.pool, a.dim, a.labeled, k, a.seed)
        clf = stub_classifier(x, proba)
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
                        m_ours = peak_mib(partial(ours_make().query, *ours_args, n=n))
                        m_ref = peak_mib(partial(ref_make().query, *ref_args, n=n))
                    else:
                        m_ours = m_ref = None
                valid = valid_selection(s_ours, n, idx_u)
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
        date=utc_now(),
        command=command_line(__file__),
        setup=dict(pool=a.pool, dim=a.dim, dtype="float32", labeled=a.labeled,
                   unlabeled=a.pool - a.labeled, classes=a.classes, n=a.n, repeats=a.repeats,
                   budget_s=a.budget, threads=a.threads, seed=a.seed,
                   timing="best of runs, time.perf_counter, fresh strategy object per run",
                   memory="tracemalloc peak during one query (Python + numpy allocations), "
                          "n=max(n) only"),
        machine=machine(numpy=np.__version__, scipy=scipy.__version__,
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
    s, m = res["setup"], res["machine"]
    lines = md_preamble(f"Query strategies: studio-al vs small-text {m['small_text']}",
                        res["date"], res["command"]) + [
        f"- pool: {s['pool']:,} x {s['dim']} dense {s['dtype']} features, "
        f"{s['labeled']} labeled, one query; classes {s['classes']}, n {s['n']}",
        f"- timing: {s['timing']}; up to {s['repeats']} runs, no new run after "
        f"{s['budget_s']:g} s in a cell (columns 'runs')",
        f"- memory: {s['memory']}",
        f"- threads: {s['threads']} (OMP/OPENBLAS/MKL env vars set before numpy import, "
        f"plus threadpoolctl), same for both sides",
        f"- machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, "
        f"numpy {m['numpy']}, scipy {m['scipy']}",
        f"- load average (1/5/15 min) before: {res['load_average_1_5_15min']['before']}, "
        f"after: {res['load_average_1_5_15min']['after']} (a shared machine: absolute times "
        "are noisy, both sides ran interleaved under the same load)",
        "- probabilities: the same precomputed matrix for both (stub classifier), so only the "
        "strategy is timed",
        "- same set: deterministic strategies must select the same set of indices as "
        "small-text; n/a for random draws (different generators), where validity is checked",
        "",
    ]
    rows = []
    for r in res["results"]:
        mem = ("–", "–") if r["ours_peak_mib"] is None else \
            (f"{r['ours_peak_mib']:.1f}", f"{r['ref_peak_mib']:.1f}")
        same = {True: "yes", False: "**NO**", None: "n/a"}[r["same_set_as_ref"]]
        rows.append([r["strategy"], r["classes"], r["n"], f"{r['ours_s'] * 1e3:.3f}",
                     f"{r['ref_s'] * 1e3:.3f}", f"{r['speedup']:.1f}×", mem[0], mem[1],
                     f"{r['ours_runs']}/{r['ref_runs']}", same,
                     "yes" if r["valid"] else "**NO**"])
    lines += md_table(["strategy", "classes", "n", "ours (ms)", "small-text (ms)", "speed-up",
                       "ours peak (MiB)", "small-text peak (MiB)", "runs (ours/st)", "same set",
                       "valid"], rows, align="lrrrrrrrrll")
    if res["skipped_strategies"]:
        lines += ["", "Registered but not covered by this benchmark (no small-text mapping "
                      "here): " + ", ".join(res["skipped_strategies"])]
    return "\n".join(lines) + "\n"


def main(a) -> int:
    res = run(a)
    publish(os.path.join(a.out, f"query_{a.pool // 1000}k"), res, to_markdown(res), write=not a.no_write)
    bad = [r for r in res["results"] if not r["valid"] or r["same_set_as_ref"] is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
