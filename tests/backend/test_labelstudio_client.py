"""Unit tests of backend.labelstudio.LabelStudioClient against a local fake HTTP server.

The real behaviour against Label Studio 1.23.2 is covered by tests/e2e/.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from backend.labelstudio import LabelStudioClient, LabelStudioError


class FakeLS:
    """Scripted server: ``responses[(method, path)]`` is a list of (status, body) used in turn
    (the last one repeats); every request is recorded."""

    def __init__(self):
        self.responses: dict[tuple[str, str], list] = {}
        self.calls: list[dict] = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                u = urlparse(self.path)
                fake.calls.append({"method": self.command, "path": u.path,
                                   "query": {k: v[0] for k, v in parse_qs(u.query).items()},
                                   "auth": self.headers.get("Authorization"),
                                   "body": json.loads(raw) if raw else None})
                key = (self.command, u.path)
                script = fake.responses.get(key)
                if not script:
                    status, body = 404, {"detail": "not found"}
                else:
                    status, body = script.pop(0) if len(script) > 1 else script[0]
                    if callable(body):
                        body = body(fake.calls[-1])
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def on(self, method, path, *responses):
        self.responses[(method, path)] = list(responses)

    def count(self, method, path):
        return sum(1 for c in self.calls if c["method"] == method and c["path"] == path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    f = FakeLS()
    yield f
    f.close()


def client(fake, **kw):
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", 5.0)
    return LabelStudioClient(fake.url + "/", "tok123", **kw)


def test_auth_header_and_get_project(fake):
    fake.on("GET", "/api/projects/7", (200, {"id": 7, "title": "abc"}))
    c = client(fake)
    assert c.get_project(7) == {"id": 7, "title": "abc"}
    assert fake.calls[0]["auth"] == "Token tok123"
    assert c.request_count == 1 and c.request_seconds > 0


def test_redirects_are_never_followed(fake):
    fake.on("GET", "/api/projects/7", (302, {"detail": "moved"}))
    fake.on("GET", "/elsewhere", (200, {"secret": 1}))
    with pytest.raises(LabelStudioError, match="redirect") as ei:
        client(fake).get_project(7)
    assert ei.value.status == 302 and fake.count("GET", "/elsewhere") == 0


def test_4xx_raises_at_once_without_retry(fake):
    fake.on("PATCH", "/api/projects/3", (400, {"sampling": ["bad"]}))
    with pytest.raises(LabelStudioError) as ei:
        client(fake, retries=3).update_project(3, sampling="nope")
    assert ei.value.status == 400
    assert "bad" in ei.value.body
    assert fake.count("PATCH", "/api/projects/3") == 1
    assert fake.calls[0]["body"] == {"sampling": "nope"} and fake.calls[0]["query"] == {}
    fake.on("PATCH", "/api/projects/4", (200, {"id": 4}))
    assert client(fake).update_project(4, answer_fields="id", model_version="v") == {"id": 4}
    assert fake.calls[-1]["query"] == {"include": "id"} and fake.calls[-1]["body"] == {"model_version": "v"}


def test_5xx_is_retried_then_succeeds(fake):
    fake.on("GET", "/api/projects/3/model-versions", (502, "<html>bad gateway</html>"), (503, "x"),
            (200, {"v2": 5, "v1": 3}))
    assert client(fake, retries=3).model_versions(3) == {"v2": 5, "v1": 3}
    assert fake.count("GET", "/api/projects/3/model-versions") == 3


def test_5xx_exhausts_retries_and_raises_with_status(fake):
    fake.on("GET", "/api/projects/3", (500, "<html>boom</html>"))
    with pytest.raises(LabelStudioError) as ei:
        client(fake, retries=2).get_project(3)
    assert ei.value.status == 500
    assert fake.count("GET", "/api/projects/3") == 3  # 1 + 2 retries


def test_connection_error_is_retried_then_raises_without_status():
    c = LabelStudioClient("http://127.0.0.1:9", "tok", retries=1, backoff=0.0, timeout=1.0)
    with pytest.raises(LabelStudioError) as ei:
        c.get_project(1)
    assert ei.value.status is None
    assert "2 attempts" in str(ei.value)


def test_constructor_rejects_bad_values():
    with pytest.raises(ValueError, match="url"):
        LabelStudioClient("", "tok")
    with pytest.raises(ValueError, match="api_key"):
        LabelStudioClient("http://x", "")
    with pytest.raises(ValueError, match="retries"):
        LabelStudioClient("http://x", "t", retries=-1)
    assert "tok-secret" not in repr(LabelStudioClient("http://x", "tok-secret"))


def test_import_predictions_chunks_and_sums_created(fake):
    fake.on("POST", "/api/projects/5/import/predictions",
            (201, lambda call: {"created": len(call["body"])}))
    preds = [{"task": i, "result": [], "score": i / 10, "model_version": "v1"} for i in range(25)]
    assert client(fake).import_predictions(5, preds, chunk_size=10) == 25
    bodies = [c["body"] for c in fake.calls]
    assert [len(b) for b in bodies] == [10, 10, 5]
    assert [p["task"] for b in bodies for p in b] == list(range(25))
    with pytest.raises(ValueError, match="chunk_size"):
        client(fake).import_predictions(5, preds, chunk_size=0)


def test_create_prediction_posts_one_prediction_and_returns_its_id(fake):
    fake.on("POST", "/api/predictions", (201, lambda call: {"id": 77, **call["body"]}))
    pred = {"task": 3, "result": [], "score": 0.25, "model_version": "v2"}
    assert client(fake).create_prediction(pred) == 77
    assert [(c["method"], c["path"], c["body"]) for c in fake.calls] == [("POST", "/api/predictions", pred)]


def test_delete_model_version_sends_body_and_returns_count(fake):
    fake.on("DELETE", "/api/projects/4/model-versions/", (200, {"deleted_predictions": 12}))
    assert client(fake).delete_model_version(4, "old-v") == 12
    assert fake.calls[0]["body"] == {"model_version": "old-v"}


def _dm_handler(tasks):
    """Emulate the data manager listing: filters on id / annotation counts, paging, ordering."""
    def handler(call):
        q = call["query"]
        query = json.loads(q["query"])
        items = query["filters"]["items"]
        conj = query["filters"]["conjunction"]

        def match(t, f):
            field = f["filter"].split(":")[-1]
            value = t["id"] if field == "id" else t[field]
            return value == f["value"] if f["operator"] == "equal" else value > f["value"]

        sel = [t for t in tasks if not items or (any if conj == "or" else all)(match(t, f) for f in items)]
        sel.sort(key=lambda t: t["id"])
        size, page = int(q["page_size"]), int(q["page"])
        chunk = sel[(page - 1) * size: page * size]
        out = []
        for t in chunk:
            d = {"id": t["id"], "data": t["data"]}
            if q.get("fields") == "all":
                d["annotations"] = t["annotations"]
            out.append(d)
        return {"total": len(sel), "tasks": out}
    return handler


def _task(i, anns=()):
    anns = list(anns)
    return {"id": i, "data": {"text": f"t{i}"}, "annotations": anns,
            "total_annotations": sum(not a["was_cancelled"] for a in anns),
            "cancelled_annotations": sum(a["was_cancelled"] for a in anns)}


def _ann(i, label, cancelled=False):
    return {"id": i, "result": [{"value": {"choices": [label]}}], "was_cancelled": cancelled,
            "ground_truth": False, "updated_at": "2026-01-01T00:00:00Z", "completed_by": {"id": 1},
            "lead_time": 3.0}


def test_keyset_listings_and_rereads(fake):
    tasks = [_task(i) for i in range(1, 8)]
    tasks[1] = _task(2, [_ann(11, "spam")])
    tasks[4] = _task(5, [_ann(12, "ham", cancelled=True)])
    fake.on("GET", "/api/tasks", (200, _dm_handler(tasks)))
    c = client(fake)
    assert c.list_tasks(9, after_id=0, limit=3) == [
        {"id": i, "data": {"text": f"t{i}"}} for i in (1, 2, 3)]
    assert [t["id"] for t in c.list_tasks(9, after_id=3, limit=3)] == [4, 5, 6]
    assert c.list_tasks(9, after_id=7, limit=3) == []
    query = json.loads(fake.calls[1]["query"]["query"])
    assert query["filters"]["items"] == [{"filter": "filter:tasks:id", "operator": "greater",
                                          "type": "Number", "value": 3}]
    assert fake.calls[1]["query"]["page"] == "1" and "fields" not in fake.calls[1]["query"]
    annotated = c.list_annotated_tasks(9, after_id=0, limit=10)
    assert [t["id"] for t in annotated] == [2]  # total_annotations > 0 (cancelled ones are not)
    assert annotated[0]["annotations"] == [{"id": 11, "result": [{"value": {"choices": ["spam"]}}],
                                            "was_cancelled": False, "ground_truth": False,
                                            "updated_at": "2026-01-01T00:00:00Z",
                                            "completed_by": 1}]
    fake.calls.clear()
    c.ids_per_request = 2
    got = c.fetch_tasks_by_id(9, [5, 2, 99, 2, 7])
    assert sorted(t["id"] for t in got) == [2, 5, 7]
    assert len(fake.calls) == 2  # ids 2, 5 | 7, 99 (99 does not exist: absent)
    assert all(call["query"]["fields"] == "all" for call in fake.calls)
    assert next(t for t in got if t["id"] == 5)["annotations"][0]["was_cancelled"] is True


class _SlowServer:
    """Answers after ``delay`` seconds (to provoke read timeouts)."""

    def __init__(self, delay):
        import time as _t
        self.hits = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                outer.hits.append(self.command)
                _t.sleep(delay)
                data = b'{"deleted_predictions": 1, "id": 1}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            do_GET = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


def test_read_timeout_retries_get_but_not_delete():
    srv = _SlowServer(delay=0.6)
    try:
        c = LabelStudioClient(srv.url, "tok", timeout=0.2, retries=2, backoff=0.0)
        with pytest.raises(LabelStudioError) as ei:
            c.get_project(1)
        assert ei.value.status is None and srv.hits.count("GET") == 3
        c_del = LabelStudioClient(srv.url, "tok", timeout=0.2, retries=2, backoff=0.0)
        # delete uses max(timeout, 600 s); force a short one through _request to test the rule
        with pytest.raises(LabelStudioError, match="not retried"):
            c_del._request("DELETE", "/api/projects/1/model-versions/", json={"model_version": "v"},
                           timeout=0.2)
        assert srv.hits.count("DELETE") == 1
    finally:
        srv.server.shutdown()


@pytest.fixture
def studio_al_log():
    """The configured ``studio_al`` handler writing into a buffer; level and stream restored."""
    import io
    import logging

    from backend.logs import ROOT, configure_logging
    root = logging.getLogger(ROOT)
    level = root.level
    configure_logging("WARNING")
    handler = next(h for h in root.handlers if getattr(h, "_studio_al", False))
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    yield buffer
    handler.setStream(stream)
    root.setLevel(level)


def test_retries_are_logged_through_the_studio_al_handler(fake, studio_al_log):
    fake.on("GET", "/api/projects/7", (502, {"detail": "bad gateway"}), (200, {"id": 7}))
    assert client(fake, retries=1).get_project(7) == {"id": 7}
    line = studio_al_log.getvalue().strip()
    assert line.startswith("ts=") and "\n" not in line
    assert line.endswith("level=WARNING logger=studio_al.labelstudio labelstudio request failed "
                         "method=GET path=/api/projects/7 attempt=1 status=502")


def test_log_level_applies_to_the_client(fake, studio_al_log):
    import logging

    from backend.logs import ROOT
    logging.getLogger(ROOT).setLevel("ERROR")
    fake.on("GET", "/api/projects/7", (503, {}), (200, {"id": 7}))
    assert client(fake, retries=1).get_project(7) == {"id": 7}
    assert studio_al_log.getvalue() == ""
