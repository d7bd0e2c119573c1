"""Only Label Studio steers the backend: each attack of issue 13 (findings 1, 2, 4, 5, 6, 11, 13,
14, 15, 17, 18) replayed against the real gunicorn backend (``studio-al serve``) and the fake
Label Studio process, which behaves like Label Studio around a connected ML backend (it calls
the backend's /setup with the ML backend's extra_params, keeps webhook subscriptions and sends
webhooks with their headers). Findings 3, 7, 8, 12, 16: test_queue_latency.py,
test_round_processes.py, test_slow_clients.py; 9 and 10: test_store_durability.py."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.reliability.harness import LABEL_CONFIG, Backend, base_env, texts, wait_for

pytestmark = pytest.mark.slow


class Collector:
    """An attacker's (or any internal) HTTP server: records every request it receives."""

    def __init__(self):
        self.requests: list[dict] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "auth": self.headers.get("Authorization"),
                                       "body": body[:200]})
                data = b'{"id": 1, "secret": "internal-data-xyz"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def _audit(store: Path, project: int) -> list[dict]:
    path = store / str(project) / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _log_of(fake, project: int) -> list[dict]:
    return fake.state(project)["log"]


def test_quick_start_setup_cannot_redirect_the_token(tmp_path, fake_ls, collector):
    """Finding 1 (critical): a forged /setup naming another host, in the README's quick start
    (no LABEL_STUDIO_URL/KEY): refused, and nothing - certainly not the token - goes there."""
    fake_ls.add_tasks(4, [t for t, _ in texts(20)])
    backend = Backend(base_env(MODEL_DIR=str(tmp_path / "store")), tmp_path / "web.log")
    try:
        backend.connect(fake_ls, 4)  # Label Studio connects first: its URL and token pinned
        forged = json.dumps({"project": 4, "schema": LABEL_CONFIG, "hostname": collector.url,
                             "access_token": "attacker"})
        # a web page's text/plain POST (no CORS preflight) is not even read
        r = requests.post(backend.url + "/setup", data=forged,
                          headers={"Content-Type": "text/plain"}, timeout=10)
        assert r.status_code == 415
        r = requests.post(backend.url + "/setup", data=forged,
                          headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 403 and "bound to another Label Studio" in r.json()["error"]
        r = requests.post(backend.url + "/webhook", json={"action": "START_TRAINING",
                                                          "project": 4}, timeout=10)
        assert r.status_code == 200
        n = len(_audit(tmp_path / "store", 4))
        wait_for(lambda: len(_audit(tmp_path / "store", 4)) > n and
                 backend.job(4)["state"] == "idle", 60, "the round START_TRAINING asked for")
        assert _audit(tmp_path / "store", 4)[-1]["status"] == "ok"
        assert collector.requests == []  # nothing was sent to the forged host
        assert all(e["auth"] for e in _log_of(fake_ls, 4))  # every call carried the real token
        status = backend.get("/status").text + backend.get("/status", project=4).text
        assert collector.url not in status and "internal-data-xyz" not in status
        assert fake_ls.token not in status
    finally:
        backend.proc.stop()


def test_first_setup_from_an_attacker_pins_only_its_own_host(tmp_path, fake_ls, collector):
    """Trust on first use: an attacker whose /setup arrives first can bind the backend to
    their own host, but the real Label Studio is then refused (the admin sees it) and its
    token never leaves for the attacker's host."""
    backend = Backend(base_env(MODEL_DIR=str(tmp_path / "store")), tmp_path / "web.log")
    try:
        r = backend.post("/setup", {"project": 9, "schema": LABEL_CONFIG,
                                    "hostname": collector.url, "access_token": "attacker-tok"})
        assert r.status_code == 200  # the collector answers whoami: it is pinned
        answer = fake_ls.connect(9, backend.url)
        assert answer["status"] == 403 and "bound to another" in json.dumps(answer["setup"])
        sent = {req["auth"] for req in collector.requests}
        assert f"Token {fake_ls.token}" not in sent and sent <= {"Token attacker-tok"}
    finally:
        backend.proc.stop()


def test_rounds_never_write_into_a_project_that_did_not_connect_this_backend(
        tmp_path, fake_ls, collector):
    """Finding 2: a forged /setup and START_TRAINING for project 5, which has no ML backend
    (or another one) in Label Studio: the backend proves nothing and writes nothing there."""
    fake_ls.add_tasks(5, [t for t, _ in texts(30)])
    fake_ls.add_tasks(6, [t for t, _ in texts(30)], start_id=100)
    fake_ls.connect(6, collector.url)  # project 6 uses ANOTHER ML backend
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    try:
        for pid in (5, 6):
            assert backend.post("/setup", {"project": pid, "schema": LABEL_CONFIG}).ok
            assert backend.post("/webhook", {"action": "START_TRAINING",
                                             "project": {"id": pid,
                                                         "label_config": LABEL_CONFIG}}).ok
        wait_for(lambda: all(_audit(tmp_path / "store", p) for p in (5, 6)) and
                 backend.job(5)["state"] != "running" and backend.job(6)["state"] != "running",
                 60, "the rounds of the forged projects")
        for pid in (5, 6):
            rec = _audit(tmp_path / "store", pid)[-1]
            assert rec["status"] == "failed" and rec["error"].startswith("NotConnected"), rec
            writes = [e for e in _log_of(fake_ls, pid) if e["method"] in ("POST", "PATCH",
                                                                           "DELETE")
                      and "/api/ml/" not in e["path"]]
            assert writes == [], writes
            fields = fake_ls.state(pid)["fields"]
            assert fields["sampling"] == "Sequential sampling" and fields["model_version"] == ""
        assert backend.get("/status", project=5).json()["connected"] is False
    finally:
        backend.proc.stop()


def test_basic_auth_and_label_studio_webhooks_work_together(tmp_path, fake_ls):
    """Finding 4: with BASIC_AUTH_USER/PASS, Label Studio's own subscription (no credentials)
    is authenticated by the signature the backend put on it: annotations train."""
    rows = texts(40)
    fake_ls.add_tasks(3, [t for t, _ in rows])
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token, BASIC_AUTH_USER="ls",
                   BASIC_AUTH_PASS="pw-basic-1")
    backend = Backend(env, tmp_path / "web.log")
    try:
        backend.connect(fake_ls, 3)
        ids = fake_ls.annotate(3, [{"task": t, "choice": rows[t - 1][1]} for t in (1, 2, 3)])
        statuses = fake_ls.send_webhook(3, {"action": "ANNOTATIONS_CREATED", "project": {"id": 3},
                                            "annotations": [{"id": a, "task": t}
                                                            for a, t in zip(ids, (1, 2, 3))]})
        assert statuses == [200]
        wait_for(lambda: (_audit(tmp_path / "store", 3)[-1].get("n_labeled") == 3
                          and backend.job(3)["state"] == "idle"), 60, "a round with the 3 labels")
        # without the signature (a forger), with neither signature nor basic auth: 401
        r = requests.post(backend.url + "/webhook", json={"action": "ANNOTATION_CREATED",
                                                          "project": 3}, timeout=10)
        assert r.status_code == 401
    finally:
        backend.proc.stop()


@pytest.fixture
def connected(tmp_path, fake_ls):
    rows = texts(60)
    fake_ls.add_tasks(7, [t for t, _ in rows])
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    backend.connect(fake_ls, 7)
    backend.env = env
    yield backend, rows
    backend.proc.stop()


def _train(backend, fake_ls, rows, tasks, store, extra_events=()):
    ids = fake_ls.annotate(7, [{"task": t, "choice": rows[t - 1][1]} for t in tasks])
    for ev in extra_events:
        assert backend.post("/webhook", ev).status_code == 200
    r = backend.post("/webhook", {"action": "ANNOTATIONS_CREATED", "project": 7,
                                  "annotations": [{"id": a, "task": t}
                                                  for a, t in zip(ids, tasks)]})
    assert r.status_code == 200
    return ids


def _labeled(store, n):
    audit = _audit(store, 7)
    return audit and audit[-1].get("status") == "ok" and audit[-1].get("n_labeled") == n


def test_forged_events_neither_break_nor_slow_the_rounds(tmp_path, fake_ls, connected):
    """Findings 5 and 6: an ANNOTATIONS_DELETED with list ids, and ~115 forged annotation ids
    on real and unknown tasks: every later round still succeeds, re-reads a bounded number of
    tasks, and forged hints are dropped after a few rounds."""
    backend, rows = connected
    store = tmp_path / "store"
    bad = [{"action": "ANNOTATIONS_DELETED", "project": 7, "annotations": [{"id": [1]}]},
           {"action": "ANNOTATIONS_DELETED", "project": 7, "annotations": [{"id": {"x": 1}}]},
           *[{"action": "ANNOTATION_CREATED", "project": 7,
              "annotation": {"id": 10_000 + i, "task": 1 + i % 60 if i % 2 else 99_000 + i}}
             for i in range(115)]]
    _train(backend, fake_ls, rows, [1, 2, 3, 4], store, bad)
    wait_for(lambda: _labeled(store, 4), 60, "a round with the 4 labels")
    for n, task in enumerate((5, 6, 7, 8), start=5):
        _train(backend, fake_ls, rows, [task], store)
        wait_for(lambda: _labeled(store, n) and backend.job(7)["state"] == "idle",  # noqa: B023
                 60, f"round with {n} labels")  # (the lambda is polled in this iteration)
    audit = _audit(store, 7)
    assert all(r["status"] == "ok" for r in audit)
    assert max(r["sync"].get("reread", 0) for r in audit) <= 200
    assert max(r["timings"]["total"] for r in audit) < 10
    assert audit[-1]["sync"].get("reread", 0) <= 5  # forged hints dropped by then


def test_huge_webhook_bodies_are_refused_or_reduced(tmp_path, fake_ls, connected):
    """Finding 11: a body over MAX_REQUEST_MB (16 by default; the finding sent 90 MB) is refused (413); a 10 MB annotation result
    is not stored: the event keeps ids only."""
    backend, rows = connected
    big = b"{\"action\": \"ANNOTATION_CREATED\", \"project\": 7, \"pad\": \"" + b"x" * (17 << 20) + b"\"}"
    r = requests.post(backend.url + "/webhook", data=big, timeout=60,
                      headers={"Content-Type": "application/json", **backend.signed[7]})
    assert r.status_code == 413 and r.json()["error"]
    result = [{"from_name": "sentiment", "to_name": "text", "type": "choices",
               "value": {"choices": ["positive"]}, "meta": "y" * (10 << 20)}]
    r = backend.post("/webhook", {"action": "ANNOTATION_CREATED", "project": 7,
                                  "annotation": {"id": 77, "task": 3, "result": result},
                                  "task": {"id": 3, "data": {"text": "z" * (1 << 20)}}})
    assert r.status_code == 200
    assert (tmp_path / "store" / "7" / "events.jsonl").stat().st_size < 2000


@pytest.mark.parametrize("query", ["%C2%B2", "1" * 1000, "%EF%BC%91", "1" * 5000])
def test_odd_project_ids_and_bodies_are_400(connected, query):
    """Finding 14 (a 5,000-digit query line is refused by gunicorn itself: 414)."""
    backend, _ = connected
    r = requests.get(f"{backend.url}/status?project={query}", timeout=10)
    assert r.status_code == (414 if len(query) > 4000 else 400)
    if r.status_code == 400:
        assert "project" in r.json()["error"]
    r = requests.post(backend.url + "/webhook", data="[" * 100_000, timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]


def test_links_and_status_show_no_foreign_scheme_or_credentials(tmp_path, fake_ls):
    """Finding 15: /setup cannot plant a javascript: link; LABEL_STUDIO_URL's user:password is
    not shown."""
    fake_ls.add_tasks(2, [t for t, _ in texts(10)])
    url = fake_ls.url.replace("http://", "http://admin:pw-in-url@")
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    try:
        backend.post("/setup", {"project": 2, "schema": LABEL_CONFIG,
                                "hostname": "javascript:alert(document.cookie)//"})
        pages = backend.get("/status").text + backend.get("/status", project=2).text + \
            backend.get("/dashboard").text + backend.get("/dashboard/2").text
        assert "javascript:" not in pages and "pw-in-url" not in pages
    finally:
        backend.proc.stop()


def test_project_with_only_empty_texts_still_gets_a_queue(tmp_path, fake_ls):
    """Finding 17: every text empty -> no features; the round still pushes a cold-start
    order and says why there is no model."""
    fake_ls.add_tasks(8, [""] * 12)
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log")
    try:
        backend.connect(fake_ls, 8)
        ids = fake_ls.annotate(8, [{"task": 1, "choice": "positive"},
                                   {"task": 2, "choice": "negative"}])
        backend.post("/webhook", {"action": "ANNOTATIONS_CREATED", "project": 8,
                                  "annotations": [{"id": ids[0], "task": 1},
                                                  {"id": ids[1], "task": 2}]})
        wait_for(lambda: _audit(tmp_path / "store", 8)[-1].get("n_labeled") == 2, 60,
                 "a round with the 2 labels")
        rec = _audit(tmp_path / "store", 8)[-1]
        assert rec["status"] == "ok" and rec["cold_start"] and "no features" in rec["warning"]
        state = fake_ls.state(8)
        assert state["fields"]["model_version"] == rec["version"]
        assert state["versions"][rec["version"]] == rec["k"] >= 6  # the head (AL_PUSH_HEAD)
    finally:
        backend.proc.stop()


def test_deleted_project_is_forgotten(tmp_path, fake_ls, connected):
    """Finding 18: PROJECT_DELETED (checked with Label Studio) removes the project from the
    backend; a forged one for a live project changes nothing."""
    backend, rows = connected
    store = tmp_path / "store"
    assert backend.post("/webhook", {"action": "PROJECT_DELETED", "project": {"id": 7}}).ok
    wait_for(lambda: backend.job(7)["state"] == "idle", 60, "the check round")
    assert backend.get("/status", project=7).status_code == 200  # still in Label Studio
    fake_ls.delete_project(7)
    assert backend.post("/webhook", {"action": "PROJECT_DELETED", "project": {"id": 7}}).ok
    wait_for(lambda: backend.get("/status", project=7).status_code == 404, 60,
             "the project to be forgotten")
    assert not (store / "7").exists()
    assert "7" not in backend.get("/status").json()["projects"]


def test_damaged_current_version_falls_back_to_the_previous_one(tmp_path, fake_ls, connected):
    """Finding 13 (versions): a truncated ranking or model of the serving version gives no
    500: /predict answers from the previous complete version, the damaged one is quarantined."""
    backend, rows = connected
    store = tmp_path / "store"
    _train(backend, fake_ls, rows, [1, 2, 3, 4], store)
    wait_for(lambda: _labeled(store, 4) and backend.job(7)["state"] == "idle", 60, "round 1")
    _train(backend, fake_ls, rows, [5], store)
    wait_for(lambda: _labeled(store, 5) and backend.job(7)["state"] == "idle", 60, "round 2")
    audit = _audit(store, 7)
    current, previous = audit[-1]["version"], audit[-1]["previous"]
    backend.proc.stop()  # e.g. the machine crashed while the disk was failing
    for name in ("ranking.npz", "model.pkl"):
        path = store / "7" / "versions" / current / name
        path.write_bytes(path.read_bytes()[:100])
    backend = Backend(backend.env, tmp_path / "web2.log")
    tasks = [{"id": t, "data": {"text": rows[t - 1][0]}} for t in (10, 11, 12)]
    r = backend.post("/predict", {"project": 7, "tasks": tasks})
    assert r.status_code == 200, r.text
    assert {x["model_version"] for x in r.json()["results"]} == {previous}
    assert backend.get("/status", project=7).json()["model_version"] == previous
    assert not (store / "7" / "versions" / current).exists()  # quarantined beside it
    assert any(p.name.startswith(".corrupt-") for p in (store / "7" / "versions").iterdir())
    backend.proc.stop()
