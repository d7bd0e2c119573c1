"""A small fake Label Studio in its own process: the REST calls our client makes, plus
``/_test/*`` control routes that create tasks and annotations and inject faults.

Run: ``python -m tests.reliability.fake_ls --port 0 --token TOKEN`` (prints ``PORT <n>`` on
stdout when listening). Faults (``POST /_test/fault``): ``{"match": "<path substring>",
"method": "POST", "mode": "500"|"hang"|"close"|"hold", "times": n, "seconds": s}``:
``500`` answers HTTP 500, ``hang`` sleeps ``seconds`` before answering (a client timeout),
``close`` drops the connection without an answer, ``hold`` blocks the request until
``POST /_test/release``. Each fault is consumed by ``times`` matching requests.
"""
from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import requests

LOCK = threading.Lock()
RELEASE = threading.Event()
STATE: dict = {"projects": {}, "faults": [], "log": [], "token": None, "held": 0,
               "ml": {}, "webhooks": {}, "url": None}
ANN_IDS = itertools.count(1)


def project(pid: int) -> dict:
    return STATE["projects"].setdefault(pid, {"tasks": {}, "predictions": [],
                                              "fields": {"id": pid, "model_version": "",
                                                         "sampling": "Sequential sampling"}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"null") if n else None

    def _fault(self, method: str, path: str):
        with LOCK:
            for f in STATE["faults"]:
                if f["times"] > 0 and f["match"] in path and f.get("method", method) == method:
                    f["times"] -= 1
                    return dict(f)
        return None

    def _handle(self, method: str) -> None:
        url = urlparse(self.path)
        path, query = url.path, parse_qs(url.query)
        body = self._body() if method in ("POST", "PATCH", "DELETE") else None
        if path.startswith("/_test/"):
            return self._control(method, path, body, query)
        t = time.time()
        with LOCK:
            STATE["log"].append({"method": method, "path": path, "t": t,
                                 "auth": self.headers.get("Authorization") ==
                                 f"Token {STATE['token']}"})
        fault = self._fault(method, path)
        if fault:
            if fault["mode"] == "500":
                return self._send(500, {"detail": "injected server error"})
            if fault["mode"] == "close":
                self.close_connection = True
                self.connection.shutdown(2)
                return None
            if fault["mode"] == "hang":
                time.sleep(float(fault.get("seconds", 5)))
            if fault["mode"] == "hold":
                with LOCK:
                    STATE["held"] += 1
                RELEASE.wait(float(fault.get("seconds", 120)))
        if self.headers.get("Authorization") != f"Token {STATE['token']}":
            return self._send(401, {"detail": "Authentication credentials were not provided."})
        if path.startswith(("/api/ml", "/api/webhooks", "/api/current-user")):
            return self._connections(method, path.rstrip("/"), body, query)
        if method == "GET" and path.rstrip("/") == "/api/tasks":
            with LOCK:
                data = json.dumps(self._dm_list(query)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if method == "POST" and path.rstrip("/") == "/api/predictions":
            with LOCK:
                tid = int((body or {}).get("task", -1))
                owner = next((q for q in STATE["projects"].values() if tid in q["tasks"]), None)
                if owner is None:
                    return self._send(400, {"detail": f"task {tid} does not exist"})
                owner["predictions"].append(body)
                return self._send(201, {"id": len(owner["predictions"]), **body})
        m = re.fullmatch(r"/api/projects/(\d+)(/.*)?", path)
        if not m:
            return self._send(404, {"detail": "not found"})
        pid, rest = int(m.group(1)), (m.group(2) or "").rstrip("/")
        with LOCK:
            p = project(pid)
            if method == "GET" and rest == "":
                if p.get("deleted"):
                    return self._send(404, {"detail": "Not found."})
                return self._send(200, {**p["fields"], "task_number": len(p["tasks"])})
            if method == "PATCH" and rest == "":
                p["fields"].update(body or {})
                return self._send(200, p["fields"])
            if method == "GET" and rest == "/export":
                tasks = [{"id": tid, "data": t["data"], "annotations": t["annotations"],
                          "predictions": []} for tid, t in sorted(p["tasks"].items())]
                data = json.dumps(tasks).encode()
            elif method == "POST" and rest == "/import/predictions":
                p["predictions"].extend(body or [])
                return self._send(201, {"created": len(body or [])})
            elif method == "GET" and rest == "/model-versions":
                counts: dict = {}
                for pr in p["predictions"]:
                    counts[pr["model_version"]] = counts.get(pr["model_version"], 0) + 1
                return self._send(200, counts)
            elif method == "DELETE" and rest == "/model-versions":
                v = (body or {}).get("model_version")
                before = len(p["predictions"])
                p["predictions"] = [x for x in p["predictions"] if x["model_version"] != v]
                return self._send(200, {"deleted_predictions": before - len(p["predictions"])})
            else:
                return self._send(404, {"detail": f"no route {method} {path}"})
        # export body built under the lock, sent outside it
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return None

    # ------------------------------------------------------------------ ML backends, webhooks
    def _connections(self, method, path, body, query):
        """What Label Studio does around a connected ML backend: list/PATCH it (and call its
        ``/setup`` with its ``extra_params`` meanwhile), list/PATCH webhooks, whoami."""
        if path == "/api/current-user/whoami":
            return self._send(200, {"id": 1, "email": "admin@example.com"})
        if method == "GET" and path == "/api/ml":
            pid = int(query["project"][0])
            with LOCK:
                if project(pid).get("deleted"):
                    return self._send(404, {"detail": "Not found."})
                backends = [dict(b) for b in STATE["ml"].values() if b["project"] == pid]
            for b in backends:
                call_setup(b)
            return self._send(200, [public(b) for b in backends])
        m = re.fullmatch(r"/api/ml/(\d+)", path)
        if m and method == "PATCH":
            with LOCK:
                b = STATE["ml"].get(int(m.group(1)))
                if b is None:
                    return self._send(404, {"detail": "Not found."})
                b.update({k: v for k, v in (body or {}).items() if k in ("extra_params", "title")})
                b = dict(b)
            call_setup(b)
            return self._send(200, public(b))
        if method == "GET" and path == "/api/webhooks":
            pid = int(query["project"][0])
            with LOCK:
                hooks = [dict(h) for h in STATE["webhooks"].values() if h["project"] == pid]
            return self._send(200, hooks)
        m = re.fullmatch(r"/api/webhooks/(\d+)", path)
        if m and method == "PATCH":
            with LOCK:
                h = STATE["webhooks"].get(int(m.group(1)))
                if h is None:
                    return self._send(404, {"detail": "Not found."})
                if "headers" in (body or {}):
                    h["headers"] = dict(body["headers"] or {})
                return self._send(200, dict(h))
        return self._send(404, {"detail": f"no route {method} {path}"})

    @staticmethod
    def _dm_list(query) -> dict:
        """``GET /api/tasks`` of the data manager: the filters our client sends (task id
        greater than; total/cancelled annotations greater than), ordered by id, paged."""
        p = project(int(query["project"][0]))
        q = json.loads(query.get("query", ["{}"])[0])
        filters = (q.get("filters") or {}).get("items") or []
        conj = (q.get("filters") or {}).get("conjunction", "and")

        def keep(tid, t):
            checks = []
            for f in filters:
                name, value = f["filter"], f["value"]
                if name == "filter:tasks:id":
                    checks.append(tid == value if f.get("operator") == "equal" else tid > value)
                elif name == "filter:tasks:total_annotations":
                    checks.append(sum(not a["was_cancelled"] for a in t["annotations"]) > value)
                elif name == "filter:tasks:cancelled_annotations":
                    checks.append(sum(a["was_cancelled"] for a in t["annotations"]) > value)
            if not checks:
                return True
            return any(checks) if conj == "or" else all(checks)

        rows = [(tid, t) for tid, t in sorted(p["tasks"].items()) if keep(tid, t)]
        size, page = int(query.get("page_size", ["100"])[0]), int(query.get("page", ["1"])[0])
        chunk = rows[(page - 1) * size: page * size]
        return {"total": len(rows), "tasks": [
            {"id": tid, "data": t["data"], "annotations": t["annotations"]} for tid, t in chunk]}

    def _control(self, method, path, body, query):
        with LOCK:
            if path == "/_test/tasks" and method == "POST":
                p = project(int(body["project"]))
                start = int(body.get("start_id", 1))
                for i, text in enumerate(body["texts"]):
                    p["tasks"][start + i] = {"data": {body.get("field", "text"): text},
                                             "annotations": []}
                return self._send(200, {"tasks": len(p["tasks"])})
            if path == "/_test/annotate" and method == "POST":
                p = project(int(body["project"]))
                out = []
                for item in body["items"]:
                    ann_id = next(ANN_IDS)
                    p["tasks"][int(item["task"])]["annotations"].append({
                        "id": ann_id, "was_cancelled": False, "ground_truth": False,
                        "updated_at": f"2026-01-01T00:00:{ann_id % 60:02d}.{ann_id:06d}Z",
                        "completed_by": 1,
                        "result": [{"from_name": body.get("from_name", "sentiment"),
                                    "to_name": "text", "type": "choices",
                                    "value": {"choices": [item["choice"]]}}]})
                    out.append(ann_id)
                return self._send(200, {"ids": out})
            if path == "/_test/connect" and method == "POST":
                pid = int(body["project"])
                p = project(pid)
                p["fields"]["label_config"] = body["label_config"]
                p.pop("deleted", None)
                bid = 100 + len(STATE["ml"]) + 1
                b = STATE["ml"][bid] = {"id": bid, "project": pid, "url": body["url"].rstrip("/"),
                                        "extra_params": None, "auth": body.get("basic_auth")}
                hid = 500 + len(STATE["webhooks"]) + 1
                STATE["webhooks"][hid] = {"id": hid, "project": pid, "headers": {},
                                          "url": body["url"].rstrip("/") + "/webhook"}
                b = dict(b)
            if path == "/_test/webhook" and method == "POST":
                pid = int(body["project"])
                hooks = [dict(h) for h in STATE["webhooks"].values() if h["project"] == pid]
            if path == "/_test/delete_project" and method == "POST":
                p = project(int(body["project"]))
                p["deleted"] = True
                for bid in [k for k, b in STATE["ml"].items() if b["project"] == int(body["project"])]:
                    del STATE["ml"][bid]
                return self._send(200, {"deleted": True})
            if path == "/_test/fault" and method == "POST":
                STATE["faults"].append({"times": 1, **body})
                RELEASE.clear()
                return self._send(200, {"faults": len(STATE["faults"])})
            if path == "/_test/release" and method == "POST":
                RELEASE.set()
                STATE["faults"] = []
                return self._send(200, {"released": True})
            if path == "/_test/state" and method == "GET":
                pid = int(query["project"][0])
                p = project(pid)
                versions: dict = {}
                for pr in p["predictions"]:
                    versions[pr["model_version"]] = versions.get(pr["model_version"], 0) + 1
                return self._send(200, {"fields": p["fields"], "versions": versions,
                                        "held": STATE["held"], "log": STATE["log"][-500:],
                                        "webhooks": [h for h in STATE["webhooks"].values()
                                                     if h["project"] == pid],
                                        "ml": [public(b) for b in STATE["ml"].values()
                                               if b["project"] == pid]})
            if path not in ("/_test/connect", "/_test/webhook"):
                return self._send(404, {"detail": "unknown control route"})
        if path == "/_test/connect":  # outside the lock: the backend may call us back
            status, answer = call_setup(b)
            return self._send(200, {"ml_backend": b["id"], "status": status, "setup": answer})
        results = []
        for h in hooks:  # like Label Studio: POST the payload with the subscription's headers
            try:
                r = requests.post(h["url"], json=body["payload"], headers=h["headers"], timeout=5)
                results.append(r.status_code)
            except requests.RequestException as exc:
                results.append(str(exc)[:100])
        return self._send(200, {"statuses": results})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")


def public(b: dict) -> dict:
    return {k: v for k, v in b.items() if k != "auth"}


def call_setup(b: dict) -> tuple[int, object]:
    """Label Studio's ``update_state``: ``GET <url>/health`` then ``POST <url>/setup`` with the
    ML backend's ``extra_params`` (and its basic auth, when set)."""
    with LOCK:
        p = project(b["project"])
        body = {"project": f"{b['project']}.1700000000", "schema": p["fields"].get("label_config"),
                "hostname": STATE["url"], "access_token": STATE["token"],
                "extra_params": b.get("extra_params")}
    auth = tuple(b["auth"]) if b.get("auth") else None
    try:
        requests.get(b["url"] + "/health", timeout=5, auth=auth)
        r = requests.post(b["url"] + "/setup", json=body, timeout=5, auth=auth)
        return r.status_code, (r.json() if r.content else None)
    except (requests.RequestException, ValueError) as exc:
        return 0, str(exc)[:200]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", required=True)
    args = ap.parse_args(argv)
    STATE["token"] = args.token
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    STATE["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
