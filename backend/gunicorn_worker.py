"""The gunicorn worker class of ``studio-al serve``: gthread, made safe against slow clients.

gunicorn's gthread worker gives a new connection to a request thread as soon as its first byte
arrives (a silent one after waiting up to 5 s *in* the thread), and the thread then reads the
request head from a blocking socket without any timeout: eight connections trickling their
headers (slowloris) hold the eight threads forever and the backend stops answering, webhooks
and ``/health`` included. Here the event loop (gunicorn's main thread) reads the request head,
and a small body, without blocking, and a connection reaches a request thread only once its
request is complete:

* a connection that has not sent a complete request head :data:`HEAD_TIMEOUT_S` seconds after
  it was accepted (or after its first byte following a kept-alive response) gets ``408`` and is
  closed; idle and slow connections never occupy a request thread;
* a body announced by ``Content-Length`` up to :data:`PREREAD_BODY_MAX` bytes is read the same
  way (within :data:`BODY_TIMEOUT_S`); a larger or chunked body (or ``Expect: 100-continue``)
  is read by the request thread, whose socket operations time out after :data:`IO_TIMEOUT_S`
  (so does writing a response to a client that does not read it);
* the graceful close after a ``Connection: close`` response, which gunicorn runs on the event
  loop and which waits up to 2 s for the client's FIN, waits in the poller instead.

TLS, the uWSGI protocol and HTTP/2 prior knowledge (none used by ``studio-al serve``) keep
gunicorn's own handling.
"""
from __future__ import annotations

import errno
import re
import selectors
import socket
import threading
import time
from functools import partial

from gunicorn import util
from gunicorn.http2 import negotiation
from gunicorn.workers import gthread

#: Seconds a connection may take to send its complete request head.
HEAD_TIMEOUT_S = 5.0
#: Seconds a pre-read body (Content-Length <= PREREAD_BODY_MAX) may take after the head.
BODY_TIMEOUT_S = 30.0
#: Per-operation socket timeout in the request threads (larger bodies, responses).
IO_TIMEOUT_S = 30.0
#: Bodies up to this size are read by the event loop before a thread is used.
PREREAD_BODY_MAX = 1 << 20
#: A head larger than this is given to the parser as is (it answers 400/431).
MAX_HEAD = 64 * 1024
#: Seconds a closed connection waits for the client's FIN (in the poller).
LINGER_S = 2.0

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,18})[ \t]*\r\n", re.I)
_THREAD_READS_BODY = re.compile(rb"\r\n(?:transfer-encoding|expect)[ \t]*:", re.I)
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain"
                b"\r\nContent-Length: 16\r\n\r\nrequest timeout\n")


class _TimeoutSocket(socket.socket):
    """A client socket whose "blocking" mode has a timeout: gunicorn's request threads call
    ``setblocking(True)`` before reading, which would otherwise remove any timeout."""

    __slots__ = ()

    def setblocking(self, flag: bool) -> None:
        if flag:
            self.settimeout(IO_TIMEOUT_S)
        else:
            super().setblocking(False)


class _Conn(gthread.TConn):
    def __init__(self, worker: "SlowClientSafeWorker", cfg, sock, client, server):
        super().__init__(cfg, sock, client, server)
        self.worker = worker
        self.buf = bytearray()
        self.deadline = 0.0
        self.head_end = -1
        self.body_len = 0

    def close(self, graceful: bool = False) -> None:
        if graceful and self.worker.on_loop():
            self.worker.linger(self.sock)
        else:
            super().close(graceful)


class SlowClientSafeWorker(gthread.ThreadWorker):
    """``gthread`` whose request threads only ever get complete requests (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: dict[_Conn, None] = {}  # connections whose request is being read
        self.lingering: dict[socket.socket, float] = {}  # closing sockets -> deadline
        self._loop_ident: int | None = None

    def run(self):
        self._loop_ident = threading.get_ident()
        try:
            super().run()
        finally:
            for conn in list(self.reading):
                self._forget(conn)
                util.close(conn.sock)
            for sock in list(self.lingering):
                self._end_linger(sock)

    def on_loop(self) -> bool:
        return self._loop_ident == threading.get_ident()

    def _preread(self, conn) -> bool:
        """Does this worker read the request of ``conn`` on the event loop?"""
        cfg = self.cfg
        return isinstance(conn, _Conn) and not cfg.is_ssl \
            and getattr(cfg, "protocol", "http") == "http" \
            and not negotiation.prior_knowledge_allowed(cfg, conn.client)

    # ------------------------------------------------------------------ accepting
    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = _TimeoutSocket(client_sock.family, client_sock.type, client_sock.proto,
                              fileno=client_sock.detach())
        self.enqueue_req(_Conn(self, self.cfg, sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn):
        """Every path that would give a connection to a thread (new, kept alive, pipelined)
        reads its request on the event loop first."""
        if not self._preread(conn):
            super().enqueue_req(conn)
            return
        conn.buf = bytearray()
        if conn.parser is not None:  # bytes a kept-alive connection's parser read ahead
            conn.buf += conn.parser.unreader.take_buffered()
        conn.head_end, conn.body_len = -1, 0
        conn.deadline = time.monotonic() + HEAD_TIMEOUT_S
        if self._complete(conn):
            self._hand_over(conn)
            return
        try:
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))
        except (OSError, ValueError, KeyError):
            self.nr_conns -= 1
            util.close(conn.sock)
            return
        self.reading[conn] = None

    def _readable(self, conn: _Conn, _fileobj) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(conn, answer=False)
            return
        conn.buf += data
        if self._complete(conn):
            self._hand_over(conn)

    def _complete(self, conn: _Conn) -> bool:
        """Has ``conn`` sent what its request thread will need without waiting?"""
        buf = conn.buf
        if conn.head_end < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return len(buf) > MAX_HEAD
            conn.head_end = end + 4
            head = bytes(buf[:conn.head_end])
            if _THREAD_READS_BODY.search(head):
                return True
            m = _CONTENT_LENGTH.search(head)
            conn.body_len = int(m.group(1)) if m else 0
            if conn.body_len > PREREAD_BODY_MAX:
                return True
            if conn.body_len:
                conn.deadline = time.monotonic() + BODY_TIMEOUT_S
        return len(buf) - conn.head_end >= conn.body_len

    def _forget(self, conn: _Conn) -> None:
        if self.reading.pop(conn, 0) is None:
            try:
                self.poller.unregister(conn.sock)
            except (KeyError, ValueError, OSError):
                pass

    def _hand_over(self, conn: _Conn) -> None:
        self._forget(conn)
        data, conn.buf = bytes(conn.buf), bytearray()
        try:
            conn.init()  # the HTTP/1 parser (plain TCP: nothing blocks here)
        except Exception:  # noqa: BLE001 - as gunicorn does for a failing connection
            self.nr_conns -= 1
            util.close(conn.sock)
            return
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        super().enqueue_req(conn)

    def _drop(self, conn: _Conn, answer: bool) -> None:
        self._forget(conn)
        self.nr_conns -= 1
        if answer:
            try:
                conn.sock.send(_TIMEOUT_408)
            except OSError:
                pass
            self.log.info("Slow client %s: no complete request within %.0f s; closed",
                          conn.client, HEAD_TIMEOUT_S if conn.head_end < 0 else BODY_TIMEOUT_S)
            self.linger(conn.sock)
        else:
            util.close(conn.sock)

    # ------------------------------------------------------------------ closing
    def linger(self, sock: socket.socket) -> None:
        """Close ``sock`` gracefully (RFC 9112 §9.6: FIN, then drain until the client's FIN)
        without blocking the event loop."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._linger_readable, sock))
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        self.lingering[sock] = time.monotonic() + LINGER_S

    def _linger_readable(self, sock: socket.socket, _fileobj) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        if self.lingering.pop(sock, None) is not None:
            try:
                self.poller.unregister(sock)
            except (KeyError, ValueError, OSError):
                pass
        util.close(sock)

    def murder_pending(self):
        """(Each turn of the event loop, also while stopping.) Close the connections that
        did not send their request in time, and end expired lingering closes."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading if c.deadline <= now]:
            self._drop(conn, answer=bool(conn.buf))
        for sock in [s for s, t in self.lingering.items() if t <= now]:
            self._end_linger(sock)
