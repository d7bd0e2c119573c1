"""Embedding/geometry query strategies: ours vs small-text 1.4.1, in the same run.

For each pool size (``--sizes``, default 20k and 100k rows x ``--dim`` 384) and query size
(``--ns``, default 10 and 100), one ``query`` of every strategy, ours and small-text's,
each in its OWN subprocess, so that the peak resident memory (``ru_maxrss``, which also
counts hnswlib's C++ allocations) belongs to that one query. Both sides get the same
synthetic clustered float32 embeddings (``--labeled`` 500 labeled rows) and the same
probabilities from the same stub classifier (``embed`` returns the rows of the dataset,
``predict_proba`` a fixed softmax of them), so the strategies are timed, not a model.

Fairness: every worker is pinned to ONE cpu (``os.sched_setaffinity``) with
``OMP_NUM_THREADS`` & co. = 1 set before numpy is imported, for both libraries (hnswlib's
own threads then share that cpu). Ours: median of ``--repeats`` queries (default 3) in the
worker; small-text: one query (its runs take minutes). Pairs run back to back, alternating.

Selections are compared where small-text is deterministic: GreedyCoreset (same sequence),
ContrastiveActiveLearning with ``neighbourhood="pool"`` and an exact index (same set);
elsewhere the overlap |ours & theirs| / n is reported for information (small-text's
KMeans/Lightweight/Anchor are unseeded; its SEALS/Anchor kNN is approximate (HNSW)).
ProbCover is not in small-text 1.4.1: ours only.

    .venv/bin/python benchmarks/bench_query_embedding.py                 # ~25 min
    .venv/bin/python benchmarks/bench_query_embedding.py --sizes 20000 --ns 10

Writes ``benchmarks/results/<--name>.{json,md}`` after every row (``--out`` to change the
folder). A small-text worker that exceeds ``--st-timeout`` is reported as a lower bound.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from _common import REPO, RESULTS, command_line, md_table, pin_threads, write_results

#: (name, ours factory kwargs, small-text constructor, compare mode)
#: compare: "sequence" / "set" = must be equal; "overlap" = report only.
CASES = [
    ("greedy_coreset", "greedy_coreset", {}, "greedy_coreset", "sequence"),
    ("lightweight_coreset", "lightweight_coreset", {"seed": 0}, "lightweight_coreset", "overlap"),
    ("embedding_kmeans", "embedding_kmeans", {"seed": 0}, "embedding_kmeans", "overlap"),
    ("contrastive_active_learning", "contrastive_active_learning", {}, "cal", "overlap"),
    ("contrastive_active_learning[pool]", "contrastive_active_learning",
     {"neighbourhood": "pool"}, "cal", "set"),
    ("contrastive_active_learning[pool,exact]", "contrastive_active_learning",
     {"neighbourhood": "pool", "vector_index": "exact"}, "cal", "set"),
    ("seals", "seals", {"base_query_strategy": "least_confidence"}, "seals", "overlap"),
    ("anchor_subsampling", "anchor_subsampling",
     {"base_query_strategy": "least_confidence", "seed": 0}, "anchor_subsampling", "overlap"),
    ("prob_cover", "prob_cover", {}, None, None),
]


# ---------------------------------------------------------------------------- worker side
def _pin():
    pin_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[CPU] if -len(cpus) <= CPU < len(cpus) else cpus[-1]})


def _make_st(kind: str):
    from small_text.query_strategies import (SEALS, AnchorSubsampling,
                                             ContrastiveActiveLearning, EmbeddingKMeans,
                                             GreedyCoreset, LeastConfidence,
                                             LightweightCoreset)
    return {
        "greedy_coreset": lambda: GreedyCoreset(distance_metric="euclidean", normalize=True),
        "lightweight_coreset": lambda: LightweightCoreset(normalize=True),
        "embedding_kmeans": lambda: EmbeddingKMeans(normalize=True),
        "cal": lambda: ContrastiveActiveLearning(k=10, pbar=None),
        "seals": lambda: SEALS(LeastConfidence(), k=100),
        "anchor_subsampling": lambda: AnchorSubsampling(LeastConfidence()),
    }[kind]()


CPU = -1


def worker(spec: dict) -> dict:
    global CPU
    CPU = spec.get("cpu", -1)
    _pin()
    import resource
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    data = np.load(spec["data"])
    x, w, labeled = data["x"], data["w"], data["labeled"]

    class Stub:
        num_classes = w.shape[1]
        multi_label = False

        def predict_proba(self, dataset):
            z = np.asarray(dataset.x, dtype=np.float32) @ w
            z = np.exp(z - z.max(axis=1, keepdims=True))
            return (z / z.sum(axis=1, keepdims=True)).astype(np.float64)

        def predict(self, dataset, return_proba=False):
            p = self.predict_proba(dataset)
            return (p.argmax(1), p) if return_proba else p.argmax(1)

        def embed(self, dataset, return_proba=False, pbar=None, **kwargs):
            e = np.asarray(dataset.x)
            return (e, self.predict_proba(dataset)) if return_proba else e

        def fit(self, *a, **k):
            return self

    clf = Stub()
    y_all = clf.predict_proba(type("D", (), {"x": x})()).argmax(1)
    mask = np.ones(x.shape[0], dtype=bool)
    mask[labeled] = False
    unl = np.flatnonzero(mask)
    y = y_all[labeled]
    if spec["impl"] == "ours":
        from al_engine.data import Dataset
        from al_engine.registry import make_query_strategy
        yy = np.full(x.shape[0], -1)
        yy[labeled] = y
        ds = Dataset(x=x, y=yy)
        make = lambda: make_query_strategy(spec["strategy"], **spec["params"])  # noqa: E731
        repeats = spec["repeats"]
    else:
        from small_text.data import SklearnDataset
        ds = SklearnDataset(x, y_all, target_labels=np.arange(w.shape[1]))
        make = lambda: _make_st(spec["st"])  # noqa: E731
        repeats = 1
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(spec["stamp"], "w") as f:   # the parent's clock for a timed-out query
        f.write(repr(time.time()))
    times, result = [], None
    for _ in range(repeats):
        strategy = make()   # a fresh object per query (small-text's SEALS caches its index)
        t0 = time.perf_counter()
        result = strategy.query(clf, ds, unl, labeled, y, n=spec["n"])
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": float(np.median(times)), "times": times, "peak_rss_mib": peak,
            "base_rss_mib": base_rss, "selection": np.asarray(result).tolist()}


# ---------------------------------------------------------------------------- parent side
def make_data(path: str, size: int, dim: int, labeled: int, seed: int) -> None:
    import numpy as np
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(50, dim)).astype(np.float32)
    comp = rng.integers(0, 50, size=size)
    x = centers[comp] + rng.normal(scale=1.5, size=(size, dim)).astype(np.float32)
    w = (rng.normal(size=(dim, 4)) / np.sqrt(dim) * 3).astype(np.float32)
    lab = np.sort(rng.choice(size, size=labeled, replace=False))
    np.savez(path, x=x.astype(np.float32), w=w, labeled=lab)


def run_worker(spec: dict, timeout: float) -> dict:
    stamp = tempfile.NamedTemporaryFile(suffix=".stamp", delete=False).name
    os.unlink(stamp)
    spec = {**spec, "stamp": stamp}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        res = {"error": f"timeout after {timeout:.0f} s"}
        if os.path.exists(stamp):   # seconds the query itself ran before it was stopped
            with open(stamp) as f:
                res["lower_bound_s"] = time.time() - float(f.read())
            os.unlink(stamp)
        return res
    if os.path.exists(stamp):
        os.unlink(stamp)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else
                f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(ours, theirs, mode):
    if not ours or not theirs or "selection" not in ours or "selection" not in theirs:
        return None
    a, b = ours["selection"], theirs["selection"]
    overlap = len(set(a) & set(b)) / len(a)
    if mode == "sequence":
        return {"mode": mode, "equal": a == b, "overlap": overlap}
    if mode == "set":
        return {"mode": mode, "equal": sorted(a) == sorted(b), "overlap": overlap}
    return {"mode": mode, "overlap": overlap}


def to_markdown(res: dict) -> str:
    m = res["meta"]
    lines = [f"# Embedding/geometry query strategies vs small-text {m['small_text']}", "",
             f"- {m['when']}, {m['platform']}, python {m['python']}, numpy {m['numpy']}",
             f"- {m['dim']}-d float32 embeddings, {m['labeled']} labeled, one query per cell, "
             "each in its own process pinned to ONE cpu with OMP/OPENBLAS threads = 1 (both sides)",
             f"- ours: median of {m['repeats']} queries; small-text: one query",
             "- peak = ru_maxrss of the worker process (includes the embeddings it loaded, "
             "base column)", "- command: `" + m["command"] + "`", ""]
    rows = []
    for r in res["rows"]:
        o, t, c = r["ours"], r.get("small_text"), r.get("compare")
        os_ = f"{o['seconds']:.3f}" if "seconds" in o else o.get("error", "?")
        ts = "—" if t is None else (f"{t['seconds']:.2f}" if "seconds" in t else
                                    (f"> {t['lower_bound_s']:.0f} (timeout)"
                                     if "lower_bound_s" in t else t["error"]))
        ratio = "—"
        if t and "seconds" in o:
            if "seconds" in t:
                ratio = f"{t['seconds'] / o['seconds']:.1f}×"
            elif "lower_bound_s" in t:
                ratio = f"> {t['lower_bound_s'] / o['seconds']:.0f}×"
        same = "—"
        if c:
            same = ("yes" if c.get("equal") else "NO") if "equal" in c else \
                f"overlap {c['overlap']:.2f}"
        rows.append([r["name"], r["size"], r["n"], os_, ts, ratio,
                     f"{o.get('peak_rss_mib', 0):.0f}", f"{(t or {}).get('peak_rss_mib', 0):.0f}",
                     f"{o.get('base_rss_mib', 0):.0f}", same])
    lines += md_table(["strategy", "pool", "n", "ours s", "small-text s", "ratio",
                       "ours peak MiB", "small-text peak MiB", "base MiB", "same selection"], rows)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--ns", type=int, nargs="+", default=[10, 100])
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--labeled", type=int, default=500)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    p.add_argument("--no-small-text", action="store_true")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker (ours)")
    p.add_argument("--st-timeout", type=float, default=600,
                   help="seconds per small-text worker; a timeout is reported as a lower "
                        "bound (ratio >= timeout / ours)")
    p.add_argument("--name", default="query_embedding", help="stem of the result files")
    p.add_argument("--cpu", type=int, default=-1, help="index of the cpu workers are pinned to")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return 0

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            path = os.path.join(tmp, f"pool_{size}.npz")
            make_data(path, size, a.dim, a.labeled, a.seed)
            for name, reg, params, st, mode in CASES:
                if a.only and name not in a.only:
                    continue
                for n in a.ns:
                    spec = {"data": path, "n": n, "strategy": reg, "params": params,
                            "st": st, "repeats": a.repeats, "cpu": a.cpu}
                    ours = run_worker({**spec, "impl": "ours"}, a.timeout)
                    theirs = None
                    if st and not a.no_small_text:
                        theirs = run_worker({**spec, "impl": "small_text"}, a.st_timeout)
                    row = {"name": name, "size": size, "n": n, "ours": ours,
                           "small_text": theirs, "compare": compare(ours, theirs, mode)}
                    rows.append(row)
                    ratio = (theirs["seconds"] / ours["seconds"]
                             if theirs and "seconds" in theirs and "seconds" in ours else None)
                    print(f"{name:36s} {size:>7d} n={n:<4d} ours={ours.get('seconds', ours.get('error'))} "
                          f"st={None if theirs is None else theirs.get('seconds', theirs.get('error'))} "
                          f"ratio={ratio and round(ratio, 1)} peak={ours.get('peak_rss_mib')} "
                          f"cmp={row['compare']}", flush=True)
                    _write(a, argv, rows)   # after every row: partial results survive
    print(to_markdown(_write(a, argv, rows)))
    return 0


def _write(a, argv, rows) -> dict:
    from importlib.metadata import version

    import numpy as np
    for r in rows:   # keep the files small: selections only as far as compared
        for side in ("ours", "small_text"):
            if r.get(side) and "selection" in r[side]:
                r[side]["selection"] = r[side]["selection"][:20]
    res = {"meta": {"when": time.strftime("%Y-%m-%d %H:%M"), "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "small_text": version("small-text"), "dim": a.dim, "labeled": a.labeled, "repeats": a.repeats,
                    "command": command_line(__file__, argv)},
           "rows": rows}
    write_results(os.path.join(a.out, a.name), res, to_markdown(res))
    return res


if __name__ == "__main__":
    sys.exit(main())
