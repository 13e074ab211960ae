"""The shared fixtures themselves: the real RTSP server serves what it says, Prometheus scrapes."""

from __future__ import annotations

import pytest

cv2 = pytest.importorskip("cv2")

OPEN = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 3000]


def read_some(url: str, n: int = 5):
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, OPEN)
    try:
        if not cap.isOpened():
            return []
        frames = []
        for _ in range(n):
            ok, img = cap.read()
            if ok:
                frames.append(img)
        return frames
    finally:
        cap.release()


@pytest.mark.rtsp
def test_server_serves_every_clip(rtsp_server):
    srv = rtsp_server({"a": "h264", "b": "h265", "ir": "mono", "odd": "odd"})
    shapes = {name: {f.shape for f in read_some(srv.url(name))} for name in ("a", "b", "ir", "odd")}
    assert shapes == {
        "a": {(360, 640, 3)},
        "b": {(360, 640, 3)},
        "ir": {(360, 640, 3)},
        "odd": {(241, 321, 3)},
    }


@pytest.mark.rtsp
def test_server_auth_and_restart_on_same_port(rtsp_server):
    srv = rtsp_server({"cam": "h264"}, user="viewer", password="pa55word")
    assert read_some(srv.url("cam", user="viewer", password="wrong"), 1) == []
    assert len(read_some(srv.auth_url("cam"), 2)) == 2
    port = srv.port
    srv.kill()
    assert read_some(srv.auth_url("cam"), 1) == []
    srv.restart()
    assert srv.port == port
    assert len(read_some(srv.auth_url("cam"), 2)) == 2


@pytest.mark.prometheus
def test_prometheus_scrapes_a_target(prometheus):
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from tests.conftest import free_port

    registry = CollectorRegistry()
    counter = Counter("fixture_probe_total", "probe", registry=registry)
    counter.inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        prom = prometheus([f"127.0.0.1:{port}"], job="probe")
        assert prom.wait_for("fixture_probe_total", lambda v: v == 3.0, timeout=30) == 3.0
        assert prom.targets()[0]["health"] == "up"
    finally:
        server.shutdown()
        thread.join(timeout=5)
