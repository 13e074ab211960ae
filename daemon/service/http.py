"""The daemon's HTTP side: the review page at ``/`` and /metrics /healthz /readyz /cameras
/snapshot/<camera>.jpg /events /events/<id>/snapshot.jpg /events/<id>/clip.mp4.

The app (:mod:`daemon.service.web.app`, Starlette) asks a :class:`Facade` (the service's
read-only view, :class:`daemon.service.view.ServiceView`) for every answer, so tests can serve
any object with all of its methods; the server
(:mod:`daemon.service.web.server`, uvicorn in a thread of the daemon) bounds what a client can
hold: a thread pool, a connection cap, idle and request deadlines, a head size limit.
Authentication (:mod:`daemon.service.auth`) guards every path but ``/healthz``; answers never
name cameras to a client that has not authenticated (a 404 lists no camera).
"""

from __future__ import annotations

from typing import Any

from daemon.config import HttpConfig
from daemon.service.auth import Authenticator
from daemon.service.web.app import ENDPOINTS, SnapshotNotReady, build_app
from daemon.service.web.facade import Facade
from daemon.service.web.server import ThreadedServer

__all__ = ["ENDPOINTS", "Facade", "HttpServer", "SnapshotNotReady"]


class HttpServer:
    """Serves a :class:`Facade` on ``host:port`` (port 0 picks a free one) with the bounds of
    ``settings`` (:class:`~daemon.config.HttpConfig`: workers, connection cap, deadlines,
    backlog) and, when ``auth`` is given, authentication on every path but /healthz."""

    def __init__(self, app: Facade, host: str, port: int, *, settings: HttpConfig | None = None,
                 auth: Authenticator | None = None, metrics: Any = None):
        settings = settings or HttpConfig()
        on_close = (lambda reason: metrics.http_rejected.labels(reason).inc()) if metrics else None
        self._server = ThreadedServer(
            build_app(app, auth, metrics), (host, port), workers=settings.workers,
            max_connections=settings.max_connections, backlog=settings.backlog,
            idle_timeout_s=settings.idle_timeout_s, request_timeout_s=settings.request_timeout_s,
            on_close=on_close)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    def start(self) -> None:
        self._server.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._server.stop(timeout)

