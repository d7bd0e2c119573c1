"""Slow clients against a real ``studio-al serve`` (gunicorn, 8 request threads): connections
that trickle their request head (slowloris), connections that send nothing, and clients that
never close after a ``Connection: close`` answer — twice as many as there are threads — do not
slow down ``/health`` nor a webhook, and the slow connections are dropped after ~5 s.

With gunicorn's own gthread worker, 8 trickling connections held the 8 threads forever (every
other request waited), and each client that did not close stalled the event loop for 2 s."""
from __future__ import annotations

import selectors
import socket
import threading
import time

import pytest
import requests

from tests.reliability.harness import Backend, base_env, wait_for

pytestmark = pytest.mark.slow
PROJECT, THREADS = 3, 8
HEAD_TIMEOUT_S = 5.0


class SlowClients:
    """``n_trickle`` connections sending one byte of an endless request head every 0.25 s,
    ``n_silent`` sending nothing, ``n_lingering`` sending a whole ``Connection: close``
    request and then neither reading nor closing. Records when the server closed each one."""

    def __init__(self, port: int, n_trickle: int, n_silent: int, n_lingering: int):
        self.opened = time.monotonic()
        self.kinds: dict[socket.socket, str] = {}
        self.closed: dict[socket.socket, float] = {}
        self.answers: dict[socket.socket, bytes] = {}
        for kind, n in (("trickle", n_trickle), ("silent", n_silent), ("linger", n_lingering)):
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                if kind == "trickle":
                    s.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
                elif kind == "linger":
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                s.setblocking(False)
                self.kinds[s] = kind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s, kind in self.kinds.items():
            if kind != "linger":  # these never read what the server says
                sel.register(s, selectors.EVENT_READ)
        next_byte = time.monotonic()
        while not self._stop.is_set():
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answers[s] = self.answers.get(s, b"") + data
                else:
                    self.closed[s] = time.monotonic()
                    sel.unregister(s)
            if time.monotonic() >= next_byte:
                next_byte += 0.25
                for s, kind in self.kinds.items():
                    if kind == "trickle" and s not in self.closed:
                        try:
                            s.send(b"X")  # a header name that never ends
                        except OSError:
                            pass
        sel.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self.kinds:
            s.close()


def test_slow_clients_cannot_freeze_the_backend(tmp_path, fake_ls, report):
    env = base_env(MODEL_DIR=str(tmp_path / "store"), LABEL_STUDIO_URL=fake_ls.url,
                   LABEL_STUDIO_API_KEY=fake_ls.token)
    backend = Backend(env, tmp_path / "web.log", threads=THREADS)
    slow = None
    try:
        backend.setup(PROJECT)
        slow = SlowClients(backend.port, n_trickle=THREADS, n_silent=THREADS, n_lingering=4)
        times = {"health": [], "webhook": []}
        t_end = slow.opened + HEAD_TIMEOUT_S - 1.0
        while time.monotonic() < t_end:  # while every slow connection is still open
            t = time.perf_counter()
            r = requests.get(backend.url + "/health", timeout=10)  # a new connection each
            times["health"].append(time.perf_counter() - t)
            assert r.status_code == 200 and r.json()["status"] == "UP"
            t = time.perf_counter()
            r = requests.post(backend.url + "/webhook", timeout=10,
                              json={"action": "START_TRAINING", "project": PROJECT})
            times["webhook"].append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        assert not any(slow.closed.get(s) for s, k in slow.kinds.items() if k != "linger"), \
            "a slow connection was closed before its time: the measure above is void"
        worst = {k: max(v) for k, v in times.items()}
        assert worst["health"] < 1.0 and worst["webhook"] < 1.0, worst

        # The server drops the slow connections once they had HEAD_TIMEOUT_S for their head
        # (408 for those that sent something), and nothing else waits on them.
        watched = [s for s, k in slow.kinds.items() if k != "linger"]
        wait_for(lambda: all(s in slow.closed for s in watched), HEAD_TIMEOUT_S + 10,
                 "the slow connections to be dropped", interval=0.1)
        after = sorted(slow.closed[s] - slow.opened for s in watched)
        assert HEAD_TIMEOUT_S - 0.5 <= after[0] and after[-1] <= HEAD_TIMEOUT_S + 3, after
        trickled = [s for s in watched if slow.kinds[s] == "trickle"]
        assert all(slow.answers.get(s, b"").startswith(b"HTTP/1.1 408") for s in trickled)
        r = requests.get(backend.url + "/health", timeout=10)
        assert r.status_code == 200
        assert backend.proc.proc.poll() is None
        report("slow_clients", threads=THREADS, trickling=THREADS, silent=THREADS,
               not_closing=4, health_ms_max=round(worst["health"] * 1000, 1),
               webhook_ms_max=round(worst["webhook"] * 1000, 1),
               dropped_after_s=[round(after[0], 2), round(after[-1], 2)],
               requests_served_meanwhile=len(times["health"]) + len(times["webhook"]))
    finally:
        if slow is not None:
            slow.stop()
        backend.proc.stop()
