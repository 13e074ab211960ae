"""uvicorn, in a thread of the daemon, with every resource a client can hold bounded.

uvicorn (h11) parses HTTP and runs the ASGI app; anyio's thread pool (``workers`` tokens) runs
the app's blocking calls. What uvicorn leaves open, :class:`ConnectionGuard` closes, from a
subclass of uvicorn's h11 protocol that only adds timers and book-keeping around its hooks:

- **connection cap** (``max_connections``): a newcomer past it closes the connection that has
  been waiting longest without a request in progress (never one mid-request); when every
  connection is mid-request the newcomer is closed. Idle sockets thus cannot lock scrapers out.
- **idle deadline** (``idle_timeout_s``): a connection that sends nothing is closed (uvicorn's
  ``timeout_keep_alive`` does the same between requests on a kept-alive connection).
- **request deadline** (``request_timeout_s``) from a request's first byte to its whole head:
  a client that trickles a byte every second is cut off however long it keeps sending.
- **write stall deadline**: an answer whose socket buffer stays full for ``request_timeout_s``
  (a client that stopped reading) is cut off; memory per connection is the transport's high
  water mark, and file answers are streamed in chunks.
- **head size** (:data:`MAX_HEAD`): a request line plus headers over it is answered 431.

Closes the server makes on its own are reported to ``on_close(reason)``: idle, slow, evicted.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
import time
from typing import Any, Callable

import anyio.to_thread
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("duskwatch.http")

MAX_HEAD = 16384  # request line + headers; a GET needs a few hundred bytes
KEEP_ALIVE_S = 5.0  # uvicorn's timeout_keep_alive: idle time allowed between two requests
_TOO_LARGE_BODY = b'{"error": "request head over %d bytes"}\n' % MAX_HEAD
TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
             b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(_TOO_LARGE_BODY)
             + _TOO_LARGE_BODY)


class ConnectionGuard:
    """The server's open connections (event-loop thread only), and the bounds on them."""

    def __init__(self, max_connections: int, idle_timeout_s: float, request_timeout_s: float,
                 on_close: Callable[[str], None]):
        self.max = max_connections
        self.idle_s = idle_timeout_s
        self.request_s = request_timeout_s
        self.on_close = on_close
        self.open: dict[Any, float] = {}  # protocol -> when it last became idle (no request)

    def admit(self, proto: Any) -> bool:
        """Room for ``proto``: True, possibly after evicting the longest-idle connection."""
        if len(self.open) >= self.max:
            idle = [(since, id(p), p) for p, since in self.open.items() if not p.busy]
            if not idle:
                self.on_close("evicted")
                return False
            _, _, oldest = min(idle)
            self.close(oldest, "evicted")
        self.open[proto] = time.monotonic()
        return True

    def close(self, proto: Any, reason: str) -> None:
        """Close at once: abort (``close`` would wait to flush to a client that stopped
        reading), and for a slow client with a reset (SO_LINGER 0), else the kernel would go on
        sending it what its socket buffer holds (megabytes) at the pace it reads."""
        if self.open.pop(proto, None) is not None:
            self.on_close(reason)
        sock = proto.transport.get_extra_info("socket")
        if reason == "slow" and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        proto.transport.abort()

    def forget(self, proto: Any) -> None:
        self.open.pop(proto, None)


def guarded_protocol(guard: ConnectionGuard) -> type:
    """uvicorn's h11 protocol with ``guard``'s bounds (see the module docstring)."""

    class GuardedH11Protocol(H11Protocol):
        in_request = False  # a request head is arriving (set on its first byte)

        @property
        def busy(self) -> bool:
            """Receiving a request, or answering one (pipelined ones included)."""
            return self.in_request or (self.cycle is not None and not self.cycle.response_complete)

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head = 0
            self._timer: asyncio.TimerHandle | None = None
            if guard.admit(self):
                self._arm(guard.idle_s, "idle")
            else:
                transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            guard.forget(self)
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:  # a request head arriving
                if not self.in_request:
                    self.in_request = True
                    self._arm(guard.request_s, "slow")
                self._head += len(data)
                if self._head > MAX_HEAD:
                    self._disarm()
                    self.transport.write(TOO_LARGE)
                    self.transport.close()
                    return
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # the head is whole: the app answers, flow control bounds it
                self._head = 0

        def on_response_complete(self) -> None:
            self.in_request = False
            self._head = 0
            if self in guard.open:
                guard.open[self] = time.monotonic()
            super().on_response_complete()  # arms uvicorn's keep-alive timer

        def pause_writing(self) -> None:
            super().pause_writing()
            self._arm(guard.request_s, "slow")  # a client that stopped reading

        def resume_writing(self) -> None:
            super().resume_writing()
            self._disarm()

        def _arm(self, seconds: float, reason: str) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, guard.close, self, reason)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    return GuardedH11Protocol


class ThreadedServer:
    """An ASGI app served by uvicorn on its own event loop thread.

    The listening socket is bound in the constructor (a busy port fails there, and port 0 has
    its number at once); :meth:`start` returns once uvicorn accepts; :meth:`stop` lets answers
    in flight finish for up to ``timeout`` seconds, then cancels them."""

    def __init__(self, app: Any, address: tuple[str, int], *, workers: int = 8,
                 max_connections: int = 64, backlog: int = 128, idle_timeout_s: float = 5.0,
                 request_timeout_s: float = 10.0,
                 on_close: Callable[[str], None] | None = None):
        host, port = address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=backlog)
        self._workers = workers
        self.guard = ConnectionGuard(max_connections, idle_timeout_s, request_timeout_s,
                                     on_close or (lambda reason: None))
        # uvicorn logs each malformed request at WARNING: a remote client could flood the
        # journal. Its errors (an app failure, a forced shutdown) still get through.
        uv_log = logging.getLogger("uvicorn.error")
        if uv_log.level == logging.NOTSET:
            uv_log.setLevel(logging.ERROR)
        config = uvicorn.Config(
            app, http=guarded_protocol(self.guard), ws="none", lifespan="off",
            access_log=False,
            log_config=None, server_header=False, headers=[("server", "duskwatch")],
            backlog=backlog, timeout_keep_alive=min(KEEP_ALIVE_S, idle_timeout_s),
            # The guard caps connections (evicting idle ones); uvicorn's own limit answers 503
            # instead, so it is only a backstop here: evicted connections are counted by uvicorn
            # until their close completes, and a flood of idle sockets churns many of them.
            limit_concurrency=2 * max_connections + 64,
            h11_max_incomplete_event_size=MAX_HEAD + 1024, timeout_graceful_shutdown=1.0,
            loop="auto")  # uvloop where installed (a quarter more requests/s here), else asyncio
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def open_connections(self) -> int:
        return len(self.guard.open)

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="duskwatch-http", daemon=True)
        self._thread.start()
        end = time.monotonic() + timeout
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > end:
                raise RuntimeError(f"the HTTP server did not start within {timeout:g} s")
            time.sleep(0.01)
        if not self._server.started:
            raise RuntimeError(f"the HTTP server failed to start: {self._failed!r}")

    def _run(self) -> None:
        try:
            _run_loop(self._serve(), self._server.config.get_loop_factory())
        except BaseException as exc:  # noqa: BLE001 - reported by start() or logged
            self._failed = exc
            log.exception("HTTP server stopped on an error")

    async def _serve(self) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = self._workers
        await self._server.serve(sockets=[self._sock])

    def stop(self, timeout: float = 2.0) -> None:
        self._server.should_exit = True
        if self._thread is None:
            self._sock.close()
            return
        self._thread.join(max(0.1, timeout - 0.5))
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(0.5)
        self._sock.close()


def _run_loop(main: Any, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
    """``asyncio.run(main)`` on a loop from ``loop_factory`` (uvloop's where uvicorn picks it)."""
    if loop_factory is None:
        asyncio.run(main)
        return
    loop = loop_factory()
    try:
        loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
