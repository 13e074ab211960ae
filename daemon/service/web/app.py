"""The Starlette app: the review page at ``/``, its assets, and the JSON and file endpoints.

Every answer comes from a :class:`~daemon.service.web.facade.Facade` (the service's read-only
view) and only from its methods, so this module knows nothing of cameras or engines.
:class:`AuthGate` runs before routing: a protected path answers 401 before anything else
(before 404 or 405), and a 404 never names a camera.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daemon.service.auth import Authenticator
from daemon.service.web.facade import Facade, missing_methods

log = logging.getLogger("duskwatch.http")

STATIC = Path(__file__).parent / "static"
CAMERA_NAME = re.compile(r"^[a-z0-9_-]{1,48}$")
EVENT_ID = re.compile(r"^[0-9a-f]{16}$")
ENDPOINTS = ["/", "/metrics", "/healthz", "/readyz", "/cameras", "/snapshot/<camera>.jpg",
             "/events", "/events/<id>/snapshot.jpg", "/events/<id>/clip.mp4"]
PICTURES = {"enhanced": "snapshot", "raw": "snapshot_raw"}  # ?picture= -> the record's field
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, TimeoutError)


class SnapshotNotReady(Exception):
    """The camera exists but has no processed frame yet."""


class BadQuery(ValueError):
    """A query parameter the client got wrong (answered 400 with this message)."""


LOGIN_HOW = ("send the configured credentials: a browser asks for the basic-auth user and "
             "password; scripts send 'Authorization: Bearer TOKEN' or basic auth")


LOGIN_PAGE = ("<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-"
              "width'><title>duskwatch: log in</title><body style='font-family:sans-serif'>"
              "<h1>duskwatch: authentication required</h1><p>" + LOGIN_HOW + ". With a "
              "bearer token only, a browser cannot log in: ask for a basic-auth user "
              "(<code>http.auth.basic_user</code>).</p></body>").encode()


def json_body(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json_body(obj), status, headers, media_type="application/json")


class EvidenceFileResponse(FileResponse):
    """A file streamed in 64 KiB chunks, with ranges (206) for seeking; at most 4 per request."""

    max_ranges = 4


class AuthGate:
    """ASGI middleware: credentials first, for every path ``auth`` protects."""

    def __init__(self, app: Any, auth: Authenticator | None, on_refused: Callable[[], None]):
        self.app = app
        self.auth = auth
        self.on_refused = on_refused

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or self.auth is None or not self.auth.needs_auth(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if header is not None and self.auth.allows(header.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        self.on_refused()
        accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
        if b"text/html" in accept:  # a browser: a page that says how to log in
            body, ctype = LOGIN_PAGE, b"text/html; charset=utf-8"
        else:
            body = json_body({"error": "authentication required", "how": LOGIN_HOW})
            ctype = b"application/json"
        headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
        # one WWW-Authenticate per scheme, spelled as RFC 9110 does (clients may read it so)
        headers += [(b"WWW-Authenticate", c.encode()) for c in self.auth.challenge()]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def build_app(app: Facade, auth: Authenticator | None, metrics: Any = None) -> Any:
    """The ASGI application serving ``app``: every method of :class:`Facade` is required."""
    missing = missing_methods(app)
    if missing:
        raise TypeError(f"{type(app).__name__} cannot be served over HTTP: it lacks "
                        f"{', '.join(missing)} (daemon.service.web.facade.Facade lists them)")

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:  # runs in anyio's worker threads
            try:
                return handler(request)
            except BadQuery as exc:
                return json_response(400, {"error": str(exc)})
            except CLIENT_GONE:
                log.debug("%s %s: client disconnected before the answer was sent",
                          request.method, request.url.path)
                return json_response(503, {"error": "connection lost while answering"})
            except Exception as exc:  # noqa: BLE001 - one bad request never kills the server
                log.exception("%s %s failed", request.method, request.url.path)
                return json_response(500, {"error": type(exc).__name__})
        return endpoint

    def metrics_(request: Request) -> Response:
        body, ctype = app.metrics_payload()
        return Response(body, 200, media_type=ctype)

    def health(request: Request) -> Response:
        ok, info = app.health()
        return json_response(200 if ok else 503, info)

    def ready(request: Request) -> Response:
        ok, info = app.readiness()
        return json_response(200 if ok else 503, info)

    def cameras(request: Request) -> Response:
        return json_response(200, app.cameras_status())

    def snapshot(request: Request) -> Response:
        name = request.path_params["name"]
        if not CAMERA_NAME.match(name) or name not in app.camera_names():
            return json_response(404, {"error": "unknown camera; GET /cameras lists them"})
        picture = request.query_params.get("picture", "enhanced")
        if picture not in PICTURES:
            raise BadQuery(f"picture must be one of {sorted(PICTURES)}, not {picture!r}")
        try:
            jpeg = app.snapshot_jpeg(name, "raw" if picture == "raw" else "shown")
        except SnapshotNotReady as exc:
            return json_response(503, {"error": str(exc)})
        if jpeg is None:
            return json_response(404, {"error": "unknown camera"})
        return Response(jpeg, 200, {"cache-control": "no-store"}, media_type="image/jpeg")

    def events(request: Request) -> Response:
        return json_response(200, events_answer(app, request.query_params))

    def event_snapshot(request: Request) -> Response:
        picture = request.query_params.get("picture", "enhanced")
        if picture not in PICTURES:
            raise BadQuery(f"picture must be one of {sorted(PICTURES)}, not {picture!r}")
        return event_file(request.path_params["id"], PICTURES[picture], "image/jpeg")

    def event_clip(request: Request) -> Response:
        return event_file(request.path_params["id"], "clip", "video/mp4")

    def event_file(event_id: str, kind: str, ctype: str) -> Response:
        path = app.event_file(event_id, kind) if EVENT_ID.match(event_id) else None
        if path is None:
            what = "raw snapshot" if kind == "snapshot_raw" else kind
            return json_response(404, {
                "error": f"no {what} for event {event_id} (unknown event, no {what} for its "
                         "type, deleted by retention, or a clip still recording)"})
        return EvidenceFileResponse(path, media_type=ctype, headers={"cache-control": "no-store"})

    def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    def not_found(*_: Any) -> Response:
        return json_response(404, {"error": "not found", "endpoints": ENDPOINTS})

    def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return not_found()
        return json_response(exc.status_code, {"error": exc.detail}, exc.headers)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/metrics", guarded(metrics_), methods=["GET"]),
        Route("/healthz", guarded(health), methods=["GET"]),
        Route("/readyz", guarded(ready), methods=["GET"]),
        Route("/cameras", guarded(cameras), methods=["GET"]),
        Route("/snapshot/{name}.jpg", guarded(snapshot), methods=["GET"]),
        Route("/events", guarded(events), methods=["GET"]),
        Route("/events/{id}/snapshot.jpg", guarded(event_snapshot), methods=["GET"]),
        Route("/events/{id}/clip.mp4", guarded(event_clip), methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC, follow_symlink=False), name="static"),
    ]
    web = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    on_refused = metrics.http_unauthorized.inc if metrics is not None else (lambda: None)
    return AuthGate(web, auth, on_refused)


FILTERS = ("class", "since", "until", "offset")


def events_answer(app: Facade, query: Any) -> dict[str, Any]:
    """/events?camera=&type=&limit=N (newest first, as before), plus class=, since=, until=
    (Unix seconds) and offset= for paging; with any of those the answer adds ``total`` (the
    number of matching events) and ``offset``."""
    camera = query.get("camera") or None
    type_ = query.get("type") or None
    limit = _number(query, "limit", int, 100, 1, 10_000)
    if not any(k in query for k in FILTERS):
        return {"events": app.events_list(camera, type_, limit)}
    offset = _number(query, "offset", int, 0, 0, 1_000_000)
    since = _number(query, "since", float, None, 0, 1e11)
    until = _number(query, "until", float, None, 0, 1e11)
    events, total = app.events_page(camera=camera, type_=type_, cls=query.get("class") or None,
                                    since=since, until=until, offset=offset, limit=limit)
    return {"events": events, "total": total, "offset": offset}


def _number(query: Any, key: str, kind: type, default: Any, low: float, high: float) -> Any:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadQuery(f"{key} must be a number") from None
    if kind is float and value != value:  # NaN
        raise BadQuery(f"{key} must be a number")
    return max(low, min(high, value)) if kind is int else min(max(value, low), high)
