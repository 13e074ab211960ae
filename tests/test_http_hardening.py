"""The HTTP side as a hostile network would use it (issue 12, item 3): idle and slow sockets,
connection floods, missing credentials, many snapshot viewers. Real sockets, fakes only at the
service's engine and camera seams."""

from __future__ import annotations

import base64
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, make_config
from tests.wait import wait_for

TOKEN = "t0ken-0123456789abcdef"
BASIC_PW = "basic-pw-42"


def get(base, path, headers=None, timeout=5):
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture
def serve(monkeypatch):
    made = []

    def make(**http):
        monkeypatch.setenv("DW_TEST_TOKEN", TOKEN)
        monkeypatch.setenv("DW_TEST_BASIC", BASIC_PW)
        sources = {}

        def factory(cam, events):
            sources[cam.name] = FakeSource(cam, events)
            return sources[cam.name]

        cfg = make_config(http={"listen": "127.0.0.1:0", **http})
        svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                      enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}))
        svc.start()
        made.append(svc)
        return svc, sources, "http://%s:%d" % svc.http.address

    yield make
    for svc in made:
        svc.stop()


def test_every_endpoint_but_healthz_needs_credentials(serve):
    svc, _, base = serve(auth={"bearer_token_env": "DW_TEST_TOKEN", "basic_user": "prom",
                               "basic_password_env": "DW_TEST_BASIC"})
    for path in ("/metrics", "/readyz", "/cameras", "/snapshot/a.jpg", "/", "/nothing"):
        status, headers, body = get(base, path)
        assert status == 401, path
        assert 'Bearer realm="duskwatch"' in headers["WWW-Authenticate"] or \
            "Basic" in headers["WWW-Authenticate"]
        assert b'"a"' not in body and b"camera" not in body
        assert get(base, path, {"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
    assert get(base, "/healthz")[0] == 200
    assert get(base, "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    good = base64.b64encode(f"prom:{BASIC_PW}".encode()).decode()
    bad = base64.b64encode(b"prom:nope").decode()
    assert get(base, "/cameras", {"Authorization": f"Basic {good}"})[0] == 200
    assert get(base, "/cameras", {"Authorization": f"Basic {bad}"})[0] == 401
    text = svc.metrics.render().decode()
    assert "duskwatch_http_unauthorized_total" in text and TOKEN not in text


def test_metrics_open_leaves_only_metrics_open(serve):
    _, _, base = serve(auth={"bearer_token_env": "DW_TEST_TOKEN", "metrics_open": True})
    assert get(base, "/metrics")[0] == 200
    assert get(base, "/cameras")[0] == 401


def test_idle_and_slow_sockets_cannot_starve_scrapes(serve):
    """200 idle sockets and 20 slowloris clients (one byte at a time) with 4 workers and a cap
    of 64 connections: scrapes still answer; idle ones are evicted or expire, slow ones are cut
    at the request deadline, not held."""
    svc, _, base = serve(workers=4, max_connections=64, idle_timeout_s=2.0,
                         request_timeout_s=1.0)
    addr = svc.http.address
    idle = [socket.create_connection(addr) for _ in range(200)]
    slow = [socket.create_connection(addr) for _ in range(20)]
    for s in slow:
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
    time.sleep(0.5)  # the flood is held open (past the server's eviction grace)
    try:
        for _ in range(10):
            status, _, body = get(base, "/metrics", timeout=5)
            assert status == 200 and b"duskwatch_frames_total" in body
            for s in slow:  # keep trickling
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
        assert svc.http._server.open_connections <= 64 + 4
        r = svc.metrics.registry
        assert r.get_sample_value("duskwatch_http_connections_closed_total", {"reason": "evicted"}) > 0
        # the slow clients are cut at the request deadline though they keep sending
        assert wait_for(lambda: all(_closed_by_peer(s) for s in slow), 10)
    finally:
        for s in idle + slow:
            s.close()
    assert wait_for(lambda: svc.http._server.open_connections == 0, 10)


def _closed_by_peer(s: socket.socket) -> bool:
    s.settimeout(0.05)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except socket.timeout:
        return False
    except OSError:
        return True


def test_snapshot_viewers_share_one_encode(serve):
    svc, sources, base = serve(snapshot_interval_s=30)
    sources["b"].push(value=200)
    assert wait_for(lambda: svc.metrics.registry.get_sample_value(
        "duskwatch_frames_total", {"camera": "b", "outcome": "processed"}) == 1)
    results = []

    def view():
        results.append(get(base, "/snapshot/b.jpg")[0])

    threads = [threading.Thread(target=view) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results.count(200) == 30
    assert svc.snapshots.encodes == 1


def test_listen_backlog_is_the_configured_one(serve):
    """The kernel's accept queue is the configured backlog (socketserver's default was 5);
    ``ss -ltn`` shows it as the listener's Send-Q."""
    import shutil
    import subprocess

    svc, _, _ = serve(backlog=300)
    port = svc.http.address[1]
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2)")
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                         timeout=10).stdout.split()
    assert out[2] == "300", out  # LISTEN Recv-Q Send-Q(backlog) ...


def test_real_prometheus_scrapes_with_the_token_and_is_refused_without(serve, prometheus):
    svc, _, _ = serve(auth={"bearer_token_env": "DW_TEST_TOKEN"})
    target = "%s:%d" % svc.http.address
    with_token = prometheus([target], bearer_token=TOKEN)
    with_token.wait_for('up{job="duskwatch"}', lambda v: v == 1)
    with_token.wait_for('sum(duskwatch_camera_up{job="duskwatch"})', lambda v: v == 2)
    without = prometheus([target], job="anonymous")
    without.wait_for('up{job="anonymous"}', lambda v: v == 0)
    errors = [t["lastError"] for t in without.targets()]
    assert any("401" in e for e in errors), errors


def test_parallel_scrapes_share_one_render():
    from daemon.service.snapshot_cache import SingleFlight

    calls = []
    gate = threading.Event()

    def render():
        calls.append(1)
        gate.wait(5)
        return b"x", "text/plain"

    flight = SingleFlight(render)
    got = []
    threads = [threading.Thread(target=lambda: got.append(flight.get())) for _ in range(20)]
    for t in threads:
        t.start()
    assert wait_for(lambda: len(calls) == 1, 5)
    time.sleep(0.2)  # the other 19 are waiting on the first render, not rendering
    gate.set()
    for t in threads:
        t.join(10)
    assert len(got) == 20 and len(calls) <= 2
