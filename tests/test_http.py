"""HTTP endpoints of a service built with fakes at its seams, over a real socket."""

import json
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import EmptyFacade, FakeDetector, FakeEnhancer, FakeSource, make_config


def get(base, path):
    try:
        with urllib.request.urlopen(base + path, timeout=5) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


@pytest.fixture
def served():
    sources = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(make_config(), source_factory=factory,
                  detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}))
    svc.start()
    host, port = svc.http.address
    yield svc, sources, f"http://{host}:{port}"
    svc.stop()


def wait_processed(svc, cam, n=1):
    end = time.monotonic() + 5
    while time.monotonic() < end:
        v = svc.metrics.registry.get_sample_value("duskwatch_frames_total",
                                                  {"camera": cam, "outcome": "processed"})
        if v and v >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"camera {cam}: no frame processed")


def test_metrics_endpoint(served):
    svc, sources, base = served
    status, ctype, body = get(base, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    text = body.decode()
    assert 'duskwatch_frames_total{camera="a",outcome="dropped"} 0.0' in text
    assert 'duskwatch_detections_total{camera="b",class="dog"} 0.0' in text
    assert "pw-a-secret" not in text and "rtsp://" not in text


def test_healthz_and_readyz(served):
    svc, sources, base = served
    status, _, body = get(base, "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    status, _, body = get(base, "/healthz")
    assert status == 200 and json.loads(body)["healthy"] is True
    sources["a"].frozen_heartbeat = time.monotonic() - 3600
    status, _, body = get(base, "/healthz")
    info = json.loads(body)
    assert status == 503 and info["stale_cameras"] == ["a"]
    assert any("camera a" in r for r in info["reasons"])


def test_cameras_endpoint(served):
    svc, sources, base = served
    sources["a"].push(value=10)
    wait_processed(svc, "a")
    status, ctype, body = get(base, "/cameras")
    assert status == 200 and ctype == "application/json"
    cams = json.loads(body)["cameras"]
    assert set(cams) == {"a", "b"}
    assert cams["a"]["lowlight"] is True and cams["a"]["state"] == "streaming"
    assert cams["a"]["last_result"]["enhanced"] is True
    assert cams["b"]["url"] == "rtsp://user:***@127.0.0.1:8554/b"
    assert b"secret" not in body


def test_snapshot(served):
    svc, sources, base = served
    status, _, body = get(base, "/snapshot/b.jpg")
    assert status == 503 and "no processed frame" in json.loads(body)["error"]
    img = np.full((120, 160, 3), 200, np.uint8)
    sources["b"].push(image=img)
    wait_processed(svc, "b")
    status, ctype, body = get(base, "/snapshot/b.jpg")
    assert status == 200 and ctype == "image/jpeg"
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (120, 160, 3)
    # the fake detector's box (1,2)-(80,60) is drawn: pixels on its edge differ from the frame
    assert np.abs(decoded[50, 80].astype(int) - 200).max() > 30  # right edge
    assert np.abs(decoded[50, 120].astype(int) - 200).max() < 15  # outside the box


def test_snapshot_unknown_or_invalid_camera(served):
    svc, sources, base = served
    for path in ("/snapshot/nope.jpg", "/snapshot/..%2Fetc.jpg", "/snapshot/A.jpg"):
        status, _, body = get(base, path)
        assert status == 404, path
        assert b'"a"' not in body and b'"b"' not in body  # a 404 never lists the cameras
    status, _, body = get(base, "/nothing")
    assert status == 404 and b'"a"' not in body and "snapshot/a.jpg" not in body.decode()


class _VanishingClientApp(EmptyFacade):
    """An app whose /metrics answer finds the client gone, as after a timed-out scrape."""

    def metrics_payload(self):
        raise BrokenPipeError(32, "Broken pipe")

    def cameras_status(self):
        return {"ok": True}


def test_client_disconnect_is_not_logged_as_an_error(caplog):
    from daemon.service.http import HttpServer

    server = HttpServer(_VanishingClientApp(), "127.0.0.1", 0)
    server.start()
    base = "http://%s:%d" % server.address
    try:
        with caplog.at_level("DEBUG", logger="duskwatch.http"):
            with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
                urllib.request.urlopen(base + "/metrics", timeout=5).read()
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]
        assert any("client disconnected" in r.getMessage() for r in caplog.records)
        # the server still answers the next request
        assert get(base, "/cameras")[0] == 200
    finally:
        server.stop()
