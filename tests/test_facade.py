"""The HTTP side calls one typed facade and nothing else (issue 21): the web app touches only
:class:`~daemon.service.web.facade.Facade` methods and probes nothing (no hasattr), the service's
view implements all of them, and any complete fake serves the app, "no event store" included."""

from __future__ import annotations

import ast
import inspect
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon.service.http import HttpServer
from daemon.service.view import ServiceView
from daemon.service.web import app as web_app
from daemon.service.web.facade import METHODS, Facade, missing_methods
from tests.daemon_fakes import EmptyFacade

APP_SOURCE = Path(web_app.__file__)


def _app_tree() -> ast.AST:
    return ast.parse(APP_SOURCE.read_text(), filename=str(APP_SOURCE))


def test_the_web_app_probes_nothing():
    calls = {n.func.id for n in ast.walk(_app_tree())
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"hasattr", "getattr", "setattr", "vars", "dir"}


def test_the_web_app_calls_only_facade_methods():
    used = {n.attr for n in ast.walk(_app_tree())
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "app"}
    assert used, "the app reads the facade through a name other than 'app': update this test"
    assert used <= set(METHODS), used - set(METHODS)
    assert {"events_list", "events_page", "event_file", "snapshot_jpeg"} <= used


def test_the_service_view_implements_every_method_with_the_facades_parameters():
    assert not missing_methods(ServiceView)
    for name in METHODS:
        want = list(inspect.signature(getattr(Facade, name)).parameters)
        got = list(inspect.signature(getattr(ServiceView, name)).parameters)
        assert got == want, name


def test_a_fake_missing_a_method_is_refused_by_name():
    class Partial:
        def metrics_payload(self):
            return b"", "text/plain"

    with pytest.raises(TypeError, match="Partial cannot be served over HTTP: it lacks "
                                        "camera_names, cameras_status, event_file"):
        HttpServer(Partial(), "127.0.0.1", 0)


def _get(base: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_fake_facade_serves_the_app_and_no_event_store_is_an_answer():
    fake = EmptyFacade()
    assert isinstance(fake, Facade)
    server = HttpServer(fake, "127.0.0.1", 0)
    server.start()
    base = "http://%s:%d" % server.address
    try:
        assert _get(base, "/healthz")[0] == 200
        assert _get(base, "/readyz")[0] == 200
        status, body = _get(base, "/cameras")
        assert status == 200 and json.loads(body) == {"cameras": {}}
        status, body = _get(base, "/events")
        assert status == 200 and json.loads(body) == {"events": []}
        status, body = _get(base, "/events?class=person&offset=0")
        assert status == 200 and json.loads(body) == {"events": [], "offset": 0, "total": 0}
        status, body = _get(base, "/events/0123456789abcdef/clip.mp4")
        assert status == 404 and b"no clip for event" in body
        assert _get(base, "/snapshot/a.jpg")[0] == 404
    finally:
        server.stop()
