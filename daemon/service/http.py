"""The HTTP endpoints: /metrics /healthz /readyz /cameras /snapshot/<camera>.jpg, and /events,
/events/<id>/snapshot.jpg, /events/<id>/clip.mp4.

Every handler asks an :class:`App` (the service) for its answer, so the server knows nothing
about cameras or engines and tests can serve any object with those methods. The serving side
(:mod:`daemon.service.http_server`) bounds everything a client can hold: a fixed worker pool, a
connection cap, idle and request deadlines, one request per connection. Authentication
(:mod:`daemon.service.auth`) guards every endpoint but ``/healthz``; answers never name cameras
to a client that has not authenticated (a 404 lists no camera).
"""

from __future__ import annotations

import json
import logging
import re
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from daemon.config import HttpConfig
from daemon.service.auth import Authenticator
from daemon.service.http_server import BoundedServer

log = logging.getLogger("duskwatch.http")

CAMERA_NAME = re.compile(r"^[a-z0-9_-]{1,48}$")
SNAPSHOT_PATH = re.compile(r"^/snapshot/([^/]+)\.jpg$")
EVENT_FILE_PATH = re.compile(r"^/events/([0-9a-f]{16})/(snapshot\.jpg|clip\.mp4)$")
EVENT_FILES = {"snapshot.jpg": ("snapshot", "image/jpeg"), "clip.mp4": ("clip", "video/mp4")}


class App(Protocol):
    def metrics_payload(self) -> tuple[bytes, str]: ...
    def health(self) -> tuple[bool, dict[str, Any]]: ...
    def readiness(self) -> tuple[bool, dict[str, Any]]: ...
    def cameras_status(self) -> dict[str, Any]: ...
    def camera_names(self) -> list[str]: ...
    def snapshot_jpeg(self, camera: str) -> bytes | None: ...


class SnapshotNotReady(Exception):
    """The camera exists but has no processed frame yet."""


ENDPOINTS = ["/metrics", "/healthz", "/readyz", "/cameras", "/snapshot/<camera>.jpg", "/events",
             "/events/<id>/snapshot.jpg", "/events/<id>/clip.mp4"]


def _handler_class(app: App, auth: Authenticator | None, metrics: Any) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "duskwatch"
        protocol_version = "HTTP/1.1"

        def version_string(self) -> str:
            return self.server_version  # no Python version for a scanner to read

        def handle(self) -> None:
            """One request per connection (the server closes it after the answer)."""
            self.close_connection = True
            self.handle_one_request()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            try:
                if auth is not None and auth.needs_auth(path) and \
                        not auth.allows(self.headers.get("Authorization")):
                    self._unauthorized()
                    return
                self._route(path)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                # The client went away (a scrape that timed out): nothing to answer, not an error.
                log.debug("GET %s: client disconnected before the answer was sent", path)
                self.close_connection = True
            except Exception as exc:  # noqa: BLE001 - one bad request never kills the server
                log.exception("GET %s failed", path)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": type(exc).__name__})

        def do_HEAD(self) -> None:  # noqa: N802
            self.do_GET()

        def _unauthorized(self) -> None:
            if metrics is not None:
                metrics.http_unauthorized.inc()
            headers = [("WWW-Authenticate", c) for c in auth.challenge()]
            self._json(HTTPStatus.UNAUTHORIZED, {"error": "authentication required"}, headers)

        def _route(self, path: str) -> None:
            if path == "/metrics":
                body, ctype = app.metrics_payload()
                self._send(HTTPStatus.OK, body, ctype)
            elif path == "/healthz":
                ok, info = app.health()
                self._json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, info)
            elif path == "/readyz":
                ok, info = app.readiness()
                self._json(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, info)
            elif path == "/cameras":
                self._json(HTTPStatus.OK, app.cameras_status())
            elif path == "/" or path == "":
                self._json(HTTPStatus.OK, {"endpoints": ENDPOINTS})
            elif (m := SNAPSHOT_PATH.match(path)) is not None:
                self._snapshot(m.group(1))
            elif path == "/events" and hasattr(app, "events_list"):
                self._events()
            elif (m := EVENT_FILE_PATH.match(path)) is not None and hasattr(app, "event_file"):
                self._event_file(m.group(1), m.group(2))
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not found", "endpoints": ENDPOINTS})

        def _snapshot(self, name: str) -> None:
            if not CAMERA_NAME.match(name) or name not in app.camera_names():
                self._json(HTTPStatus.NOT_FOUND, {"error": "unknown camera; GET /cameras lists "
                                                           "them"})
                return
            try:
                jpeg = app.snapshot_jpeg(name)
            except SnapshotNotReady as exc:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
                return
            if jpeg is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "unknown camera"})
                return
            self._send(HTTPStatus.OK, jpeg, "image/jpeg", [("Cache-Control", "no-store")])

        def _events(self) -> None:
            """/events?camera=NAME&type=TYPE&limit=N: recent events, newest first."""
            query = parse_qs(urlsplit(self.path).query)
            camera = query.get("camera", [None])[0]
            type_ = query.get("type", [None])[0]
            try:
                limit = max(1, min(10_000, int(query.get("limit", ["100"])[0])))
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"error": "limit must be a number"})
                return
            self._json(HTTPStatus.OK, {"events": app.events_list(camera, type_, limit)})

        def _event_file(self, event_id: str, name: str) -> None:
            kind, ctype = EVENT_FILES[name]
            path = app.event_file(event_id, kind)
            if path is None:
                self._json(HTTPStatus.NOT_FOUND, {
                    "error": f"no {kind} for event {event_id} (unknown event, no {kind} for its "
                             "type, deleted by retention, or a clip still recording)"})
                return
            self._send(HTTPStatus.OK, path.read_bytes(), ctype, [("Cache-Control", "no-store")])

        def _json(self, status: HTTPStatus, obj: Any, extra: list | None = None) -> None:
            body = (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()
            self._send(status, body, "application/json", extra)

        def _send(self, status: HTTPStatus, body: bytes, ctype: str,
                  extra: list | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for k, v in extra or []:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def log_error(self, fmt: str, *args: Any) -> None:
            if fmt.startswith("Request timed out") and metrics is not None:
                metrics.http_rejected.labels("slow").inc()
            log.debug("%s " + fmt, self.address_string(), *args)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("%s " + fmt, self.address_string(), *args)

    return Handler


class HttpServer:
    """Serves an :class:`App` on ``host:port`` (port 0 picks a free one) with the bounds of
    ``settings`` (:class:`~daemon.config.HttpConfig`: workers, connection cap, deadlines,
    backlog) and, when ``auth`` is given, authentication on every endpoint but /healthz."""

    def __init__(self, app: App, host: str, port: int, *, settings: HttpConfig | None = None,
                 auth: Authenticator | None = None, metrics: Any = None):
        settings = settings or HttpConfig()
        on_close = (lambda reason: metrics.http_rejected.labels(reason).inc()) if metrics else None
        self._server = BoundedServer(
            (host, port), _handler_class(app, auth, metrics), workers=settings.workers,
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
