"""Real processes for the reliability tests: Redis (the machine's, or a private
``redis-server``), the fake Label Studio, ``studio-al serve`` (gunicorn) and ``studio-al
worker`` (RQ). Every wait polls with a bound; nothing sleeps a fixed time to wait."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from tests.conftest import CLASSIC

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("STUDIO_AL_DATA", ROOT.parent / "shared" / "data"))
MAIN_REDIS = "redis://127.0.0.1:6379/0"

LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="positive"/><Choice value="negative"/>
  </Choices>
</View>"""


def wait_for(cond, timeout: float, what: str, interval: float = 0.02):
    """Poll ``cond()`` until truthy (returned) or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = cond()
        except Exception as exc:  # noqa: BLE001 - keep polling through transient errors
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def texts(n: int, offset: int = 0) -> list[tuple[str, str]]:
    """``n`` (text, label) pairs of SST-2 (positive/negative)."""
    out = []
    with open(DATA / "sst2.train.jsonl") as fh:
        for i, line in enumerate(fh):
            if i < offset:
                continue
            row = json.loads(line)
            out.append((row["text"], row["label"]))
            if len(out) == n:
                break
    return out


def require_redis(url: str = MAIN_REDIS):
    import redis
    conn = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise AssertionError(f"these tests need the real Redis at {url} ({exc}); start it with "
                             "`redis-server` (apt-get install redis-server)") from None
    return conn


def cleanup_prefix(conn, prefix: str) -> None:
    """Delete every key of a test run: ours (``prefix:*``) and RQ's for the queue ``prefix``."""
    for pattern in (f"{prefix}:*", f"rq:*{prefix}*"):
        keys = list(conn.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            conn.delete(*keys[i:i + 500])
    conn.srem("rq:queues", f"rq:queue:{prefix}")
    for w in conn.smembers("rq:workers"):
        if prefix.encode() in w:
            conn.srem("rq:workers", w)


class PrivateRedis:
    """A ``redis-server`` on a free port (no persistence), restartable on the same port."""

    def __init__(self, workdir: Path, password: str | None = None):
        if not shutil.which("redis-server"):
            raise AssertionError("redis-server is not installed (apt-get install redis-server)")
        self.port, self.workdir, self.password = free_port(), workdir, password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            argv += ["--requirepass", self.password]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        conn = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        wait_for(lambda: conn.ping(), 10, "private redis-server to answer")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class FakeLS:
    """The fake Label Studio process (``tests/reliability/fake_ls.py``)."""

    def __init__(self, token: str, port: int = 0):
        self.token = token
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.fake_ls",
                                      "--port", str(port), "--token", token], cwd=ROOT,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise AssertionError(f"fake Label Studio did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.s = requests.Session()

    def _post(self, route: str, body: dict) -> dict:
        r = self.s.post(self.url + route, json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def add_tasks(self, project: int, rows: list[str], start_id: int = 1) -> None:
        self._post("/_test/tasks", {"project": project, "texts": rows, "start_id": start_id})

    def annotate(self, project: int, items: list[dict]) -> list[int]:
        return self._post("/_test/annotate", {"project": project, "items": items})["ids"]

    def connect(self, project: int, backend_url: str, label_config: str = LABEL_CONFIG,
                basic_auth: tuple | None = None) -> dict:
        """Connect an ML backend to ``project`` as Label Studio does (it then calls the
        backend's /health and /setup); returns ``{"ml_backend", "status", "setup"}``."""
        return self._post("/_test/connect", {"project": project, "url": backend_url,
                                             "label_config": label_config,
                                             "basic_auth": list(basic_auth) if basic_auth else None})

    def webhook_headers(self, project: int) -> dict:
        """The headers of the project's webhook subscription (signed by the backend)."""
        hooks = self.state(project)["webhooks"]
        return dict(hooks[0]["headers"]) if hooks else {}

    def send_webhook(self, project: int, payload: dict) -> list:
        """Label Studio sends ``payload`` to the project's subscriptions (with their headers)."""
        return self._post("/_test/webhook", {"project": project, "payload": payload})["statuses"]

    def delete_project(self, project: int) -> None:
        self._post("/_test/delete_project", {"project": project})

    def fault(self, **fault) -> None:
        self._post("/_test/fault", fault)

    def release(self) -> None:
        self._post("/_test/release", {})

    def state(self, project: int) -> dict:
        r = self.s.get(self.url + "/_test/state", params={"project": project}, timeout=30)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def base_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AL_", "BASIC_AUTH", "REDIS", "LABEL_STUDIO", "MAX_REQUEST"))}
    env.update({"LOG_LEVEL": "INFO", "AL_LOCK_TTL": "3", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    env.update(CLASSIC)  # the pipeline these tests assert (tests/conftest.py)
    env.update(extra)
    return env


class Proc:
    """A child process in its own session (so ``kill -9`` can take its whole group), its
    stderr kept in a file for the log assertions.

    ``preexec_fn`` runs in the child before the exec (e.g. ``resource.setrlimit``); the child
    then writes its output to a pipe that a ``cat`` (without those limits) appends to the log,
    so a limit such as ``RLIMIT_FSIZE`` does not apply to the log file."""

    def __init__(self, argv: list[str], env: dict, log: Path, preexec_fn=None):
        self.log_path = log
        self._fh = open(log, "ab")
        self._tee = None
        out = self._fh
        if preexec_fn is not None:
            self._tee = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=self._fh)
            out = self._tee.stdin
        self.proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=out,
                                     start_new_session=True, preexec_fn=preexec_fn)
        if self._tee is not None:
            self._tee.stdin.close()  # the child holds the only write end now

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL the process and every process of its group (the RQ work horse too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()
        if self._tee is not None:
            try:
                self._tee.wait(10)  # EOF once every process holding the pipe is gone
            except subprocess.TimeoutExpired:
                self._tee.kill()
                self._tee.wait(10)
        self._fh.close()

    def log(self) -> str:
        self._fh.flush()
        return self.log_path.read_text(errors="replace")


class Backend:
    """``studio-al serve`` (gunicorn) on a free port."""

    def __init__(self, env: dict, log: Path, workers: int = 1, threads: int = 8,
                 preexec_fn=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc([sys.executable, "-m", "backend.cli", "serve", "--bind",
                          f"127.0.0.1:{self.port}", "--threads", str(threads),
                          "--workers", str(workers)], env, log, preexec_fn=preexec_fn)
        self.s = requests.Session()
        self.signed: dict[int, dict] = {}  # project -> signed webhook headers (connect())
        self.auth = None
        if env.get("BASIC_AUTH_USER"):
            self.auth = (env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASS"])
            self.s.auth = self.auth
        wait_for(lambda: self.proc.proc.poll() is None and
                 requests.get(self.url + "/health", timeout=1).ok, 60,
                 f"backend on {self.url} (log: {log})")

    def get(self, route: str, **params):
        return self.s.get(self.url + route, params=params, timeout=30)

    def post(self, route: str, body):
        """POST JSON; a webhook for a project connected with :meth:`connect` carries the
        signature Label Studio's subscription carries."""
        headers = None
        if route == "/webhook" and isinstance(body, dict):
            pid = body.get("project")
            pid = pid.get("id") if isinstance(pid, dict) else pid
            headers = self.signed.get(pid)
        return self.s.post(self.url + route, json=body, timeout=30, headers=headers)

    def setup(self, project: int, hostname: str | None = None, token: str | None = None):
        body = {"project": f"{project}.1700000000", "schema": LABEL_CONFIG}
        if hostname:
            body.update(hostname=hostname, access_token=token)
        r = self.post("/setup", body)
        assert r.status_code == 200, r.text
        return r.json()

    def job(self, project: int) -> dict:
        return self.get("/status", project=project).json()["job"]

    def connect(self, fake: "FakeLS", project: int, timeout: float = 60) -> dict:
        """Connect this backend to ``project`` of the fake Label Studio (which calls /setup);
        wait (bounded) until the backend proved the connection and signed the project's
        webhook subscription; return the signed headers."""
        answer = fake.connect(project, self.url, basic_auth=self.auth)
        assert answer["status"] == 200, answer
        self.signed[project] = wait_for(
            lambda: self.get("/status", project=project).json().get("connected")
            and fake.webhook_headers(project), timeout,
            f"project {project} connected and its webhook signed", interval=0.05)
        return self.signed[project]


def worker(env: dict, log: Path, nice: int = 10) -> Proc:
    """``studio-al worker --nice 10``: training yields the CPU to the web process, as a
    worker co-located with ``studio-al serve`` should."""
    return Proc([sys.executable, "-m", "backend.cli", "worker", "--nice", str(nice)], env, log)


def unique_prefix(tag: str) -> str:
    return f"studio-al-test-{tag}-{uuid.uuid4().hex[:8]}"


def wait_workers(redis_url: str, prefix: str, n: int = 1, timeout: float = 60) -> None:
    """Wait until ``n`` RQ workers listen on queue ``prefix``."""
    import redis
    conn = redis.Redis.from_url(redis_url, socket_connect_timeout=1)
    wait_for(lambda: conn.scard(f"rq:workers:{prefix}") >= n, timeout,
             f"{n} RQ worker(s) on queue {prefix}", interval=0.1)


class HangingTCP:
    """A TCP server on a free port (threads of the test process) that accepts connections and
    never answers (``mode = "hang"``: a Redis or Label Studio that hangs), or forwards them to
    ``upstream`` (``mode = "forward"``). Switching to ``forward`` closes the hung
    connections, as a server that comes back would."""

    def __init__(self, upstream: tuple[str, int] | None = None):
        import threading
        self.upstream = upstream
        self.mode = "hang"
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        import threading
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with self._lock:
                self.accepted += 1
                if self.mode == "hang":
                    self._held.append(conn)
                    continue
            threading.Thread(target=self._forward, args=(conn,), daemon=True).start()

    def _forward(self, conn: socket.socket) -> None:
        import threading
        try:
            up = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            conn.close()
            return
        up.settimeout(None)
        conn.settimeout(None)

        def pump(a: socket.socket, b: socket.socket) -> None:
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        t = threading.Thread(target=pump, args=(up, conn), daemon=True)
        t.start()
        pump(conn, up)
        t.join(5)
        conn.close()
        up.close()

    def forward(self) -> None:
        """From now on forward new connections to ``upstream``; drop the hung ones."""
        with self._lock:
            self.mode = "forward"
            held, self._held = self._held, []
        for c in held:
            with contextlib.suppress(OSError):
                c.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self._lock:
            held, self._held = self._held, []
        for c in held:
            with contextlib.suppress(OSError):
                c.close()
        self.sock.close()


class TrickleProxy:
    """An HTTP proxy (threads of the test process) in front of ``upstream`` (the fake Label
    Studio). Requests whose path matches ``pattern`` (a regex; None: none) get an answer that
    trickles out one byte per second and never ends - a Label Studio no per-read client
    timeout ever gives up on. ``trickling`` counts those being served now."""

    def __init__(self, upstream: str):
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.upstream = upstream.rstrip("/")
        self.pattern: str | None = None
        self.trickling = self.trickled = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                pattern = proxy.pattern
                if pattern is not None and re.search(pattern, self.path):
                    return proxy._trickle(self)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length", "connection")}
                r = requests.request(self.command, proxy.upstream + self.path, data=body,
                                     headers=headers, timeout=60, allow_redirects=False)
                data = r.content
                self.send_response(r.status_code)
                if r.headers.get("Content-Type"):
                    self.send_header("Content-Type", r.headers["Content-Type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _trickle(self, handler) -> None:
        with self._lock:
            self.trickling += 1
            self.trickled += 1
        handler.close_connection = True
        answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000\r\n\r\n[" + b" " * 999999)
        try:
            for i in range(len(answer)):
                handler.wfile.write(answer[i:i + 1])
                if self._stop.wait(1.0):
                    break
        except OSError:
            pass  # the client went away
        finally:
            with self._lock:
                self.trickling -= 1

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
