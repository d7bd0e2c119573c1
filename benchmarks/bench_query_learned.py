"""Learned / multi-label / balancing query strategies: ours vs small-text, in the same run.

Strategies: DiscriminativeActiveLearning and CategoryVectorInconsistencyAndRanking against
small-text 1.4.1 (installed); LabelCardinalityInconsistency, AdaptiveActiveLearning and
ClassBalancer do not exist in 1.4.1 -- they are compared with small-text 2.0.0.dev4 when
``--st2 DIR`` points at a copy of it (``pip install --no-deps --target DIR
small-text==2.0.0.dev4``), loaded into the same process under its own module objects, and
reported without a reference otherwise.

One ``query`` per (pool, strategy, n) on a synthetic pool of ``--pool`` rows x ``--dim`` dense
float32 features with ``--labeled`` labeled rows. Both sides get the SAME probabilities /
embeddings from one stub classifier that returns precomputed matrices (row ids ride in a
separate array so that subsets get their own rows). Multi-label: ``--labels`` per-label
sigmoid probabilities, labeled rows with Bernoulli(0.2) label sets (at least one label).
Single-label (ClassBalancer): ``--classes`` classes, softmax probabilities.

Time: best of ``--repeats`` runs with a fresh strategy object (the reference stops after
``--budget`` s, at least 2 runs). Memory: ``tracemalloc`` peak of one separate query at
``n = max(--n)``. Threads pinned to ``--threads`` for both sides (env vars before numpy,
plus threadpoolctl). Same set: where the reference is deterministic on these inputs, both
must select the same set (``ties`` when the sets differ only among instances tied at the
n-th score).

    .venv/bin/python benchmarks/bench_query_learned.py --st2 /tmp/st2          # 20k and 100k

Writes ``benchmarks/results/query_learned.md`` and ``.json`` (``--out`` to change).
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
    p.add_argument("--pool", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--labeled", type=int, default=500)
    p.add_argument("--labels", type=int, default=10, help="labels of the multi-label pool")
    p.add_argument("--classes", type=int, default=4, help="classes of the single-label pool")
    p.add_argument("--n", type=int, nargs="+", default=[10, 100])
    p.add_argument("--num-iterations", type=int, default=10, help="DAL sub-batches")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget", type=float, default=20.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--st2", default=None, help="directory holding small-text 2.0.0.dev4")
    p.add_argument("--only", nargs="+", default=None, help="strategy labels to run")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results"))
    p.add_argument("--no-write", action="store_true")
    return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # pin threads BEFORE numpy is imported
    pin_threads(ARGS.threads)

import importlib  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import sklearn  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from al_engine.data import Dataset  # noqa: E402
from al_engine.registry import make_query_strategy  # noqa: E402


# ------------------------------------------------------------------ data and stubs
class RowsDataset:
    """A dataset for small-text's side: features plus the row ids (indexing keeps both)."""

    def __init__(self, x, rows, y=None, multi_label=False):
        self.x, self.rows, self.y, self.is_multi_label = x, rows, y, multi_label

    def __len__(self):
        return self.rows.size

    def __getitem__(self, idx):
        return RowsDataset(self.x[idx], self.rows[idx],
                           None if self.y is None else self.y[idx], self.is_multi_label)


def stub_classifier(x, proba, num_classes) -> PrecomputedClassifier:
    """Precomputed proba/embeddings; the full pool gets the arrays themselves, a subset a
    gather by its row ids (small-text's side: ``RowsDataset.rows``; ours: ``Dataset`` subsets
    carry them as ``texts``)."""
    def row_ids(dataset):
        rows = getattr(dataset, "rows", None)
        if rows is None:
            rows = dataset.texts
        return None if len(rows) == x.shape[0] else np.asarray(rows, dtype=np.int64)
    return PrecomputedClassifier(x, proba, row_ids, num_classes)


def make_pool(pool, dim, labeled, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((pool, dim), dtype=np.float32)
    idx_l, idx_u = labeled_split(rng, pool, labeled)
    return rng, x, idx_l, idx_u


def single_label(rng, pool, idx_l, k):
    proba = softmax_rows(rng.standard_normal((pool, k)) * 2.0)
    y = np.full(pool, -1, dtype=np.int64)
    # a skewed labeled distribution, so that balancing has something to do
    y[idx_l] = rng.choice(k, size=idx_l.size, p=np.arange(k, 0, -1) / (k * (k + 1) / 2))
    y[idx_l[:k]] = np.arange(k)
    return proba, y


def multi_label(rng, pool, idx_l, q):
    proba = 1.0 / (1.0 + np.exp(-(rng.standard_normal((pool, q)) * 2.0 - 1.0)))
    ind = (rng.random((pool, q)) < 0.2).astype(np.int8)
    ind[np.arange(pool), rng.integers(0, q, pool)] = 1
    unl = np.ones(pool, dtype=bool)
    unl[idx_l] = False
    ind[unl] = 0
    return proba, sp.csr_matrix(ind)


# ------------------------------------------------------------------ references
def load_small_text_2(path):
    """Import small-text 2.0 from ``path`` without disturbing 1.4.1 (same process)."""
    saved = {k: v for k, v in sys.modules.items() if k == "small_text" or k.startswith("small_text.")}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            st2 = importlib.import_module("small_text")
            qs = importlib.import_module("small_text.query_strategies")
        return st2.__version__, qs
    finally:
        sys.path.remove(path)
        for k in [k for k in sys.modules if k == "small_text" or k.startswith("small_text.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def cases(a):
    """(label, mode, ours factory, reference factory or None, reference version,
    deterministic reference?)."""
    import small_text as st
    from sklearn.linear_model import LogisticRegression

    def st_dal():
        factory = st.SklearnClassifierFactory(LogisticRegression(max_iter=1000), 2)
        return st.DiscriminativeActiveLearning(factory, a.num_iterations, pbar=None)

    v1 = st.__version__
    out = [
        ("discriminative_active_learning", "dal",
         lambda: make_query_strategy("discriminative_active_learning",
                                     num_iterations=a.num_iterations, seed=0), st_dal, v1, False),
        ("category_vector_inconsistency_and_ranking", "multi",
         lambda: make_query_strategy("category_vector_inconsistency_and_ranking"),
         lambda: st.CategoryVectorInconsistencyAndRanking(pbar=None), v1, False),
        ("cvirs (small_text_compat=True)", "multi",
         lambda: make_query_strategy("category_vector_inconsistency_and_ranking",
                                     small_text_compat=True),
         lambda: st.CategoryVectorInconsistencyAndRanking(pbar=None), v1, True),
    ]
    v2, qs2 = load_small_text_2(a.st2) if a.st2 else (None, None)
    ref = (lambda f: f) if qs2 is not None else (lambda f: None)
    out += [
        ("label_cardinality_inconsistency", "multi",
         lambda: make_query_strategy("label_cardinality_inconsistency"),
         ref(lambda: qs2.LabelCardinalityInconsistency()), v2, True),
        ("adaptive_active_learning", "multi",
         lambda: make_query_strategy("adaptive_active_learning"),
         ref(lambda: qs2.AdaptiveActiveLearning()), v2, True),
        ("class_balancer(breaking_ties)", "single",
         lambda: make_query_strategy("class_balancer", base_query_strategy="breaking_ties",
                                     seed=0),
         ref(lambda: qs2.ClassBalancer(qs2.BreakingTies())), v2, False),
    ]
    if a.only:
        out = [c for c in out if c[0] in a.only]
    return out


# ------------------------------------------------------------------ measuring
def timed(make, args, n, repeats, budget):
    """Best wall time of up to ``repeats`` fresh-object queries after one untimed warm-up
    query (first-call costs: imports, page faults); the last selection."""
    np.random.seed(12345)
    make().query(*args, n=n)

    def prepare(run):
        strategy = make()
        np.random.seed(run)                         # small-text draws from np.random
        return partial(strategy.query, *args, n=n)
    best, runs, sel = best_of(prepare, repeats, budget, min_runs=2)
    return best, runs, np.asarray(sel, dtype=np.int64)


def compare(ours, theirs, scores, idx_u):
    """'same', 'ties' (differ only among instances tied at the n-th score) or 'DIFF'."""
    a, b = set(ours.tolist()), set(theirs.tolist())
    if a == b:
        return "same"
    if scores is not None:
        s = scores[idx_u]
        kth = np.sort(s)[::-1][len(ours) - 1]
        strict = set(idx_u[s > kth].tolist())
        if strict <= a and strict <= b and all(scores[list(a ^ b)] == kth):
            return "ties"
    return "DIFF"


def run(a) -> dict:
    import small_text

    rows = []
    all_cases = cases(a)
    for pool in a.pool:
        rng, x, idx_l, idx_u = make_pool(pool, a.dim, a.labeled, a.seed)
        ids = np.arange(pool)
        proba_s, y_s = single_label(rng, pool, idx_l, a.classes)
        proba_m, y_m = multi_label(rng, pool, idx_l, a.labels)
        data = {
            "dal": (stub_classifier(x, proba_s, a.classes), Dataset(x=x, y=y_s, texts=ids), None,
                    y_s[idx_l]),
            "single": (stub_classifier(x, proba_s, a.classes), Dataset(x=x, y=y_s, texts=ids),
                       RowsDataset(x, ids), y_s[idx_l]),
            "multi": (stub_classifier(x, proba_m, a.labels),
                      Dataset(x=x, y=y_m, texts=ids, multi_label=True),
                      RowsDataset(x, ids, multi_label=True), y_m[idx_l]),
        }
        if any(c[1] == "dal" for c in all_cases):
            # small-text's DAL clones and relabels its dataset: give it a real SklearnDataset
            from small_text.data import SklearnDataset
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st_ds = SklearnDataset(x, np.zeros(pool, dtype=np.int64), target_labels=np.arange(2))
            data["dal"] = data["dal"][:2] + (st_ds, data["dal"][3])
        for label, mode, ours_make, ref_make, ref_version, det in all_cases:
            clf, ours_ds, ref_ds, y = data[mode]
            for n in a.n:
                ours_args = (clf, ours_ds, idx_u, idx_l, y)
                ref_args = (clf, ref_ds, idx_u, idx_l, y)
                with threadpool_limits(a.threads), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    t_ours, r_ours, s_ours = timed(ours_make, ours_args, n, a.repeats, a.budget)
                    m_ours = (peak_mib(partial(ours_make().query, *ours_args, n=n))
                              if n == max(a.n) else None)
                    if ref_make is not None:
                        t_ref, r_ref, s_ref = timed(ref_make, ref_args, n, a.repeats, a.budget)
                        m_ref = (peak_mib(partial(ref_make().query, *ref_args, n=n))
                                 if n == max(a.n) else None)
                    else:
                        t_ref = r_ref = s_ref = m_ref = None
                valid = valid_selection(s_ours, n, idx_u)
                ref_valid = None if s_ref is None else valid_selection(s_ref, n, idx_u)
                if s_ref is None:
                    same = None
                elif det:
                    strategy = ours_make()
                    strategy.query(*ours_args, n=n)
                    same = compare(s_ours, s_ref, getattr(strategy, "scores_", None), idx_u)
                else:
                    same = f"overlap {len(set(s_ours.tolist()) & set(s_ref.tolist())) / n:.2f}"
                row = dict(strategy=label, pool=pool, n=n, ours_s=t_ours, ref_s=t_ref,
                           speedup=None if t_ref is None else t_ref / t_ours,
                           ours_runs=r_ours, ref_runs=r_ref, ours_peak_mib=m_ours,
                           ref_peak_mib=m_ref, reference=f"small-text {ref_version}"
                           if ref_make is not None else None,
                           valid=valid, ref_valid=ref_valid, same_set_as_ref=same)
                rows.append(row)
                print(_fmt_row(row), flush=True)
    return dict(
        benchmark="learned / multi-label / balancing query strategies, one query",
        date=utc_now(),
        command=command_line(__file__),
        setup=dict(pool=a.pool, dim=a.dim, dtype="float32", labeled=a.labeled, labels=a.labels,
                   classes=a.classes, n=a.n, dal_num_iterations=a.num_iterations,
                   repeats=a.repeats, budget_s=a.budget, threads=a.threads, seed=a.seed),
        machine=machine(numpy=np.__version__, scipy=scipy.__version__,
                        sklearn=sklearn.__version__, small_text=small_text.__version__,
                        small_text_2=a.st2 and load_small_text_2(a.st2)[0]),
        results=rows)


def _fmt(v, scale=1.0, fmt="{:.1f}"):
    return "–" if v is None else fmt.format(v * scale)


def _fmt_row(r) -> str:
    return (f"{r['strategy']:44s} pool={r['pool']:<7d} n={r['n']:<4d} "
            f"ours {_fmt(r['ours_s'], 1e3):>9s} ms  ref {_fmt(r['ref_s'], 1e3):>9s} ms  "
            f"x{_fmt(r['speedup'], fmt='{:.2f}'):>7s}  mem {_fmt(r['ours_peak_mib'])}/"
            f"{_fmt(r['ref_peak_mib'])} MiB  {r['same_set_as_ref'] or 'n/a'}"
            f"{'' if r['valid'] else '  INVALID'}"
            f"{'  (reference invalid)' if r['ref_valid'] is False else ''}")


def to_markdown(res: dict) -> str:
    s, m = res["setup"], res["machine"]
    lines = md_preamble("Learned / multi-label / balancing query strategies: studio-al vs "
                        "small-text", res["date"], res["command"]) + [
        f"- pools: {', '.join(f'{p:,}' for p in s['pool'])} x {s['dim']} float32, "
        f"{s['labeled']} labeled, one query; n {s['n']}; multi-label: {s['labels']} labels; "
        f"single-label: {s['classes']} classes (skewed labeled distribution); DAL "
        f"num_iterations={s['dal_num_iterations']}, unlabeled_factor=10, both with "
        f"LogisticRegression(max_iter=1000)",
        f"- references: small-text {m['small_text']} (DAL, CVIRS); small-text "
        f"{m['small_text_2'] or '2.0 (not loaded)'} for LCI, AAL, ClassBalancer (absent from 1.4.1)",
        f"- timing: one untimed warm-up query, then best of up to {s['repeats']} runs, fresh object each; memory: tracemalloc "
        f"peak of one query at n=max; threads: {s['threads']} for both sides",
        f"- machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}, numpy "
        f"{m['numpy']}, scipy {m['scipy']}, scikit-learn {m['sklearn']}",
        "- same set: `same`/`ties` (differs only among instances tied at the n-th score) where "
        "the reference is deterministic and has the same semantics; `overlap` (fraction) where "
        "it draws randomness (DAL subsample, ClassBalancer ties) or the semantics differ "
        "on purpose (CVIRS default = the paper's formula, see its docstring)",
        "",
    ]
    rows = [[r["strategy"], f"{r['pool']:,}", r["n"], _fmt(r["ours_s"], 1e3),
             _fmt(r["ref_s"], 1e3), _fmt(r["speedup"], fmt="{:.2f}×"),
             _fmt(r["ours_peak_mib"]), _fmt(r["ref_peak_mib"]),
             f"{r['same_set_as_ref'] or 'n/a'}{'' if r['valid'] else ' **INVALID**'}",
             f"{r['reference'] or '–'}"
             f"{' (its result invalid)' if r['ref_valid'] is False else ''}"]
            for r in res["results"]]
    lines += md_table(["strategy", "pool", "n", "ours (ms)", "reference (ms)", "speed-up",
                       "ours peak (MiB)", "reference peak (MiB)", "same set", "reference"],
                      rows, align="lrrrrrrrll")
    return "\n".join(lines) + "\n"


def main(a) -> int:
    res = run(a)
    publish(os.path.join(a.out, "query_learned"), res, to_markdown(res), write=not a.no_write)
    bad = [r for r in res["results"] if not r["valid"] or r["same_set_as_ref"] == "DIFF"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
