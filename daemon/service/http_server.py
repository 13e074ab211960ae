"""A small HTTP server whose every resource a client can hold is bounded.

- **A fixed worker pool** (``workers`` threads) answers requests; no thread per connection.
- **Connections wait in a selector, not in a thread**, until their whole request head has
  arrived (read without blocking, at most :data:`MAX_HEAD` bytes); one that sends nothing for
  ``idle_timeout_s`` is closed. 500 idle sockets cost 500 file descriptors and no thread, and a
  slowloris client never occupies a worker.
- **A connection cap** (``max_connections``): a new connection past it evicts the longest-idle
  one, so idle sockets can never lock scrapers out, and the process stays far below its file
  limit (cameras keep their descriptors).
- **A request deadline** (``request_timeout_s``) from the first byte covers receiving the
  request head and writing the answer: a client that trickles one byte every few seconds is
  cut off at the deadline, not at a per-``recv`` timeout it can renew forever.
- **One request per connection** (``Connection: close``): a worker is free again as soon as its
  answer is written.
- **A real listen backlog** (``backlog``) for bursts of scrapers.

``handler_class`` is a :class:`http.server.BaseHTTPRequestHandler` subclass; it is run once
per connection on a worker thread.
"""

from __future__ import annotations

import io
import logging
import queue
import selectors
import socket
import threading
import time
from typing import Callable

log = logging.getLogger("duskwatch.http")

ACCEPTS_PER_WAKE = 64  # accepted per listener wake-up, so a flood cannot starve expiry
MAX_HEAD = 16384  # request line + headers; a GET needs a few hundred bytes


class _Pending:
    """A connection waiting for its request head: bytes so far and its deadline."""

    __slots__ = ("head", "deadline", "started", "since")

    def __init__(self, deadline: float, since: float):
        self.head = bytearray()
        self.deadline = deadline
        self.started = False
        self.since = since


class _DeadlineIO(io.RawIOBase):
    """A socket as a raw stream whose every read and write must finish by ``deadline``."""

    def __init__(self, sock: socket.socket, deadline: float, head: bytes = b""):
        self._sock = sock
        self._deadline = deadline
        self._head = memoryview(head)

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self._sock.settimeout(left)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if len(self._head):
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        self._arm()
        return self._sock.recv_into(buf)

    def write(self, data) -> int:
        self._arm()
        return self._sock.send(data)


class BoundedServer:
    """Accepts on ``address`` and runs ``handler_class`` for each connection on a worker."""

    def __init__(self, address: tuple[str, int], handler_class: type, *, workers: int = 8,
                 max_connections: int = 64, backlog: int = 128, idle_timeout_s: float = 5.0,
                 request_timeout_s: float = 10.0,
                 on_close: Callable[[str], None] | None = None):
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=backlog)
        self._listener.setblocking(False)
        self._handler_class = _bind(handler_class)
        self._workers = workers
        self._max = max_connections
        self._idle_s = idle_timeout_s
        self._request_s = request_timeout_s
        self._on_close = on_close or (lambda reason: None)
        self._selector = selectors.DefaultSelector()
        self._idle: dict[socket.socket, _Pending] = {}  # waiting for a whole request head
        self._busy = 0  # handed to a worker
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._idle) + self._busy

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._threads = [threading.Thread(target=self._dispatch, name="duskwatch-http",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._work, name=f"duskwatch-http-{i}",
                                           daemon=True) for i in range(self._workers)]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        for _ in range(self._workers):
            self._jobs.put(None)
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._lock:
            for conn in list(self._idle):
                _close(conn)
            self._idle.clear()
        try:
            self._selector.close()
        except Exception:  # noqa: BLE001
            pass
        self._listener.close()

    # -- the dispatcher thread: accepts, waits for requests, expires idle connections ------------
    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._selector.select(timeout=self._next_wait())
            except OSError:
                if self._stop.is_set():
                    return
                raise
            accept = False
            for key, _ in events:  # requests already sent first, then newcomers
                if key.fileobj is self._listener:
                    accept = True
                else:
                    self._ready(key.fileobj)
            if accept:
                self._accept()
            self._expire()

    def _next_wait(self) -> float:
        with self._lock:
            first = min((p.deadline for p in self._idle.values()), default=None)
        if first is None:
            return 0.5
        return min(0.5, max(0.0, first - time.monotonic()))

    def _accept(self) -> None:
        for _ in range(ACCEPTS_PER_WAKE):
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, let the backlog hold the rest
                log.warning("HTTP accept failed: %s", exc)
                return
            if not self._make_room():
                _close(conn)
                self._on_close("evicted")
                continue
            conn.setblocking(False)
            now = time.monotonic()
            with self._lock:
                self._idle[conn] = _Pending(now + self._idle_s, now)
            self._selector.register(conn, selectors.EVENT_READ)

    def _make_room(self) -> bool:
        """Under the cap: True. At the cap, close the connection that has been silent longest
        (no byte received) and say True; when every connection is busy or has started its
        request, say False: the newcomer is refused. A flood of idle sockets thus evicts its
        own oldest members, while a client that sends its request at once leaves the silent
        set within a round trip and is never the one evicted."""
        with self._lock:
            if len(self._idle) + self._busy < self._max:
                return True
            quiet = [c for c, p in self._idle.items() if not p.started]
            if not quiet:
                return False
            oldest = min(quiet, key=lambda c: self._idle[c].since)
            del self._idle[oldest]
        self._unregister(oldest)
        _close(oldest)
        self._on_close("evicted")
        return True

    def _ready(self, conn: socket.socket) -> None:
        """Read what arrived; hand the connection to a worker once its request head is whole."""
        with self._lock:
            pending = self._idle.get(conn)
        if pending is None:
            return
        try:
            chunk = conn.recv(MAX_HEAD + 1 - len(pending.head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk or len(pending.head) + len(chunk) > MAX_HEAD:
            self._drop(conn, None if not chunk else "slow")
            return
        if not pending.started:  # the request deadline runs from its first byte
            pending.started = True
            pending.deadline = time.monotonic() + self._request_s
        pending.head += chunk
        if b"\r\n\r\n" not in pending.head and b"\n\n" not in pending.head:
            return
        with self._lock:
            if self._idle.pop(conn, None) is None:
                return
            self._busy += 1
        self._unregister(conn)
        self._jobs.put((conn, bytes(pending.head), pending.deadline))

    def _drop(self, conn: socket.socket, reason: str | None) -> None:
        with self._lock:
            self._idle.pop(conn, None)
        self._unregister(conn)
        _close(conn)
        if reason:
            self._on_close(reason)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            gone = [(c, p.started) for c, p in self._idle.items() if p.deadline <= now]
            for conn, _ in gone:
                del self._idle[conn]
        for conn, started in gone:
            self._unregister(conn)
            _close(conn)
            self._on_close("slow" if started else "idle")

    def _unregister(self, conn: socket.socket) -> None:
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError, OSError):
            pass

    # -- workers -------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            conn = job[0]
            try:
                self._serve_one(*job)
            finally:
                _close(conn)
                with self._lock:
                    self._busy -= 1

    def _serve_one(self, conn: socket.socket, head: bytes, deadline: float) -> None:
        try:
            peer = conn.getpeername()
        except OSError:
            return
        conn.setblocking(True)
        stream = _DeadlineIO(conn, deadline, head)
        try:
            self._handler_class((conn, stream), peer, self)
        except (TimeoutError, OSError) as exc:
            log.debug("HTTP connection from %s: %s", peer[0], exc)
        except Exception:  # noqa: BLE001 - a handler bug never kills a worker
            log.exception("HTTP handler failed")


def _bind(handler_class: type) -> type:
    """``handler_class`` reading and writing through the ``_DeadlineIO`` that comes with its
    request (``request`` is ``(socket, stream)``)."""

    class Bound(handler_class):
        def setup(self) -> None:
            self.connection, stream = self.request
            self.rfile = io.BufferedReader(stream, 8192)
            self.wfile = io.BufferedWriter(stream, 65536)

        def finish(self) -> None:
            try:
                self.wfile.flush()
            except (OSError, ValueError):
                pass

    Bound.__name__ = handler_class.__name__
    return Bound


def _close(conn: socket.socket) -> None:
    try:
        conn.close()
    except OSError:
        pass
