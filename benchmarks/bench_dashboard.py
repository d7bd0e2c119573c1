"""Dashboard render time for a 10,000-task project with 50 rounds of history.

Builds a model store the way the backend writes it (``audit.jsonl`` with 50 rounds whose
records carry the real fields: label annotation ids, queried tasks, timings, stopping verdict,
per-round metrics; the ranking (``ranking.npz``) of the serving version with one entry per
unlabeled task;
``project.json``), then measures ``GET /dashboard/<project>``, ``GET /dashboard`` and
``GET /status?project=`` :

* in process (Flask test client): **cold** (fresh app, store and caches: parse the audit log
  and the 10k-entry ranking, render), **after a round** (one audit record appended and a new
  serving version: both re-read) and **warm** (repeat views);
* over HTTP against ``studio-al serve`` (gunicorn, the production path): the first request
  after start and repeat requests (wall time measured by the client, keep-alive off).

Usage::

    .venv/bin/python benchmarks/bench_dashboard.py [--tasks 10000] [--rounds 50]
        [--per-round 40] [--repeats 30] [--no-http]

Writes ``benchmarks/results/dashboard.{json,md}``.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, RESULTS, command_line, machine, md_table, write_results

from backend.ranking import Ranking
from backend.store import RANKING_FILE

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
CONFIG = ('<View><Text name="text" value="$text"/><Choices name="label" toName="text" '
          'choice="single">' + "".join(f'<Choice value="{c}"/>' for c in LABELS) +
          "</Choices></View>")
PID = 1


def build_store(root: str, tasks: int, rounds: int, per_round: int, seed: int = 0) -> dict:
    """Write project.json, audit.jsonl (``rounds`` records) and the serving version."""
    from backend.labelconfig import parse_label_config
    from backend.store import Store
    rng = np.random.default_rng(seed)
    store = Store(root)
    store.save_project(PID, {"project": PID, "label_config": CONFIG,
                             "parsed": parse_label_config(CONFIG).to_dict(),
                             "hostname": "http://localhost:8080", "access_token": "x"})
    ids = np.arange(1000, 1000 + tasks)
    order = rng.permutation(ids)
    t0 = time.time() - rounds * 600
    version = None
    for r in range(1, rounds + 1):
        n_lab = min(tasks, r * per_round)
        labeled = order[:n_lab]
        unl = order[n_lab:]
        version = f"studio-al-{r:04d}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(t0 + 600 * r))}"
        acc = 0.9 - 0.6 * n_lab ** -0.4
        counts = rng.multinomial(n_lab, [0.4, 0.3, 0.25, 0.05])
        record = {
            "round": r, "version": version, "previous": None, "reason": "ANNOTATION_CREATED",
            "started_at": t0 + 600 * r, "events_upto": r * per_round, "strategy": "breaking_ties",
            "classifier": "linear_svc", "status": "ok", "error": None,
            "n_tasks": tasks, "n_skipped": 0,
            "labels": {"count": n_lab, "annotation_ids": (labeled + 50000).tolist()},
            "n_labeled": n_lab, "n_unlabeled": int(unl.size), "cold_start": False,
            "strategy_used": "breaking_ties",
            "stopping": {"criterion": "kappa_average", "stop": r > rounds - 3, "rounds": r,
                         "stopping_set": tasks},
            "queried": [{"task": int(t), "score": round(i / max(unl.size - 1, 1), 6),
                         "labels": ["World"], "confidence": 0.41} for i, t in enumerate(unl[:10])],
            "pushed": int(unl.size), "deleted_versions": [],
            "timings": {"fetch": 0.8, "train": 0.4, "score": 0.1, "push": 2.1, "patch": 0.05,
                        "delete": 0.6, "metrics": 0.9, "total": 4.95},
            "metrics": {
                "class_counts": dict(zip(LABELS, map(int, counts))),
                "cv": {"accuracy": round(acc, 5), "accuracy_std": 0.02,
                       "macro_f1": round(acc - 0.05, 5), "folds": 5, "n": min(n_lab, 2000),
                       "curve": {"sizes": [10, 30, 90, 270, 800], "mean": [.3, .5, .6, .7, .8],
                                 "std": [.1] * 5}, "subsampled": n_lab > 2000},
                "labels_needed": {"labeled": n_lab, "pool_size": tasks, "tolerance": 0.02,
                                  "labels_needed": 4200, "additional": max(0, 4200 - n_lab),
                                  "accuracy_now": round(acc, 5), "accuracy_at_pool": 0.89,
                                  "accuracy_limit": 0.9,
                                  "curve": {"a": 0.9, "b": 0.6, "c": 0.4, "rmse": 0.01},
                                  "points": [[10, .3, .1]] * 5,
                                  "method": "cross_validated_power_law", "reason": ""},
                "criteria": {"kappa_average": {"stop": r > 40, "value": 0.97},
                             "classification_change": {"stop": False, "value": 0.01},
                             "overall_uncertainty": {"stop": False, "value": 0.4}},
                "seconds": 0.9}}
        store.append_audit(PID, record)
    queue = rng.permutation(unl)
    ranking = Ranking.build(queue, np.round(np.arange(queue.size) / max(unl.size - 1, 1), 6),
                            [["World"]] * queue.size, np.full(queue.size, 0.5), LABELS, False)
    store.write_version(PID, version, None, ranking)
    store.set_current(PID, version)
    sizes = {name: os.path.getsize(os.path.join(root, str(PID), *name.split("/")))
             for name in ("audit.jsonl", f"versions/{version}/{RANKING_FILE}")}
    return {"version": version, "unlabeled": int(unl.size), "bytes": sizes}


def make_app(root: str):
    from backend import dashboard, project_status
    from backend.app import create_app
    from backend.jobs import JobRunner
    from backend.settings import Settings

    class Idle(JobRunner):
        def submit(self, project_id, reason):
            return "idle"

        def status(self, project_id):
            return {"state": "idle", "runs": 0}

        def shutdown(self, timeout=None):
            pass

    for cache in (project_status._audit_cache, project_status._queue_cache,
                  dashboard._plot_cache):
        cache.clear()
    settings = Settings.from_env({"MODEL_DIR": root, "LOG_LEVEL": "WARNING"},
                                 validate_components=False)
    return create_app(settings, runner=Idle())


def wait_warmup(timeout: float = 30.0) -> None:
    """Join the dashboard's start-up template compile (it runs while a server waits for
    its first request)."""
    import threading
    for t in threading.enumerate():
        if t.name == "studio-al-templates":
            t.join(timeout)


def template_compile_ms() -> float:
    """Compiling the dashboard templates from source (no bytecode cache): paid once per
    MODEL_DIR, in the start-up thread."""
    import jinja2
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO / "backend" / "templates")))
    env.filters.update(ts=str, secs=str, num=str)
    t = time.perf_counter()
    for name in ("dashboard_project.html", "dashboard_index.html", "dashboard_error.html"):
        env.get_template(name)
    return round(1000 * (time.perf_counter() - t), 2)


def timed(client, path: str) -> tuple[float, int]:
    t = time.perf_counter()
    r = client.get(path)
    body = r.get_data()
    dt = time.perf_counter() - t
    assert r.status_code == 200, (path, r.status_code, body[:300])
    return dt, len(body)


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"median_ms": round(1000 * statistics.median(xs), 2),
            "p95_ms": round(1000 * xs[min(len(xs) - 1, int(0.95 * len(xs)))], 2),
            "max_ms": round(1000 * xs[-1], 2), "runs": len(xs)}


def in_process(root: str, repeats: int) -> dict:
    out = {}
    paths = {"project_page": f"/dashboard/{PID}", "index": "/dashboard",
             "status": f"/status?project={PID}"}
    for name, path in paths.items():
        colds = []
        for _ in range(3):  # cold = fresh app + store + caches, 3 times
            c = make_app(root).test_client()
            wait_warmup()
            dt, size = timed(c, path)
            colds.append(dt)
        warm = [timed(c, path)[0] for _ in range(repeats)]
        out[name] = {"path": path, "bytes": size, "cold": summary(colds), "warm": summary(warm)}
    # after a round: one more audit record + a new serving version (both files re-read)
    from backend.store import Store
    c = make_app(root).test_client()
    wait_warmup()
    timed(c, f"/dashboard/{PID}")
    store = Store(root)
    last = store.audit(PID)[-1]
    new = dict(last, round=last["round"] + 1, version=last["version"][:-2] + "99")
    store.append_audit(PID, new)
    ranking = store.load_ranking(PID, last["version"])
    store.write_version(PID, new["version"], None, ranking)
    store.set_current(PID, new["version"])
    dt, _ = timed(c, f"/dashboard/{PID}")
    out["project_page"]["after_round_ms"] = round(1000 * dt, 2)
    out["template_compile_ms"] = template_compile_ms()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def over_http(root: str, repeats: int) -> dict:
    import requests
    port = free_port()
    exe = Path(sys.executable).parent / "studio-al"
    env = {**os.environ, "MODEL_DIR": root, "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([str(exe), "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise RuntimeError("studio-al serve did not become healthy in 60 s")
        time.sleep(1.0)  # an admin opens the page after start-up, not in the same second
        out = {}
        for name, path in (("project_page", f"/dashboard/{PID}"), ("index", "/dashboard"),
                           ("status", f"/status?project={PID}")):
            times = []
            for _ in range(repeats + 1):
                t = time.perf_counter()
                r = requests.get(url + path, headers={"Connection": "close"}, timeout=30)
                times.append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.status_code)
            out[name] = {"path": path, "first_ms": round(1000 * times[0], 2),
                         "repeat": summary(times[1:])}
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--per-round", type=int, default=40, help="labels added per round")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--no-http", action="store_true", help="skip the gunicorn measurement")
    ap.add_argument("--out", default=str(RESULTS / "dashboard"))
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="bench-dashboard-")
    built = build_store(root, args.tasks, args.rounds, args.per_round)
    result = {"command": command_line(__file__, argv),
              "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "machine": machine(load_1min=round(os.getloadavg()[0], 2)),
              "project": {"tasks": args.tasks, "rounds": args.rounds,
                          "labeled": min(args.tasks, args.rounds * args.per_round), **built},
              "in_process": in_process(root, args.repeats)}
    if not args.no_http:
        result["http_gunicorn"] = over_http(root, args.repeats)
    budget = 300.0
    pages = {k: v for k, v in result["in_process"].items() if isinstance(v, dict)}
    worst = max(v["cold"]["max_ms"] for v in pages.values())
    worst = max(worst, result["in_process"]["project_page"]["after_round_ms"])
    if "http_gunicorn" in result:
        worst = max(worst, *(v["first_ms"] for v in result["http_gunicorn"].values()),
                    *(v["repeat"]["max_ms"] for v in result["http_gunicorn"].values()))
    result["budget_ms"] = budget
    result["worst_ms"] = worst
    result["within_budget"] = worst <= budget
    md = [f"# Dashboard render time ({result['date']})", "",
          f"`{result['command']}` — {args.tasks} tasks, {args.rounds} rounds, "
          f"{result['project']['labeled']} labeled, {built['unlabeled']} in the queue; "
          f"audit.jsonl {built['bytes']['audit.jsonl'] / 1e6:.2f} MB, {RANKING_FILE} "
          f"{list(built['bytes'].values())[1] / 1e6:.2f} MB; {os.cpu_count()} CPUs, "
          f"load {result['machine']['load_1min']}.", ""]
    md += md_table(["route", "in-process cold (max of 3)", "in-process warm median / p95",
                    "gunicorn first request", "gunicorn repeat median / p95", "HTML/JSON bytes"],
                   [_md_row(v, result.get("http_gunicorn", {}).get(name))
                    for name, v in pages.items()])
    md += ["", f"After a new round (audit log and ranking re-read): "
               f"{result['in_process']['project_page']['after_round_ms']} ms.",
           f"Compiling the templates from source (once per MODEL_DIR, in a start-up thread; "
           f"then a bytecode cache): {result['in_process']['template_compile_ms']} ms.",
           "Cold = a fresh app, store and caches (audit log and ranking parsed), templates "
           "compiled; gunicorn first request = 1 s after /health answers.",
           f"Worst of all: **{worst:.1f} ms** (budget {budget:.0f} ms: "
           f"{'met' if result['within_budget'] else 'MISSED'})."]
    write_results(args.out, result, "\n".join(md) + "\n", indent=2)
    print("\n".join(md))
    return 0 if result["within_budget"] else 1


def _md_row(v: dict, h: dict | None) -> list[str]:
    """One route: in-process figures ``v``, gunicorn figures ``h`` (None: not measured)."""
    return [f"`{v['path']}`", f"{v['cold']['max_ms']} ms",
            f"{v['warm']['median_ms']} / {v['warm']['p95_ms']} ms",
            f"{h['first_ms'] if h else '–'} ms",
            f"{h['repeat']['median_ms'] if h else '–'} / {h['repeat']['p95_ms'] if h else '–'} ms",
            v["bytes"]]


if __name__ == "__main__":
    raise SystemExit(main())
