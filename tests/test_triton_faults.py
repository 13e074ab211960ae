"""Faults of a shared Triton server cost frames, never the daemon.

A real service (scheduler, pipeline, metrics, readiness) with a real Triton detector; only the
cameras are fakes at their seam, pushed at ~20 frames/s by a thread. The server (its own,
module-scoped: these tests break it) answers errors (model unloaded), is slow (SIGSTOP: every
call hits its deadline), is killed and restarted on the same ports. Each time: frames are
counted failed with the reason in the log, cameras stay up, /readyz's readiness says inference
is unavailable, the engine retries with capped backoff (not once per frame), and detection
resumes by itself within seconds of the server's return.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from engines import triton_backend
from tests.daemon_fakes import FakeSource, make_config
from tests.triton_server import TritonServer
from tests.wait import wait_for

pytestmark = [pytest.mark.triton, pytest.mark.timeout(240)]
RESUME_S = 15.0  # backoff cap (4 s) + reconnect + the server's own start-up, with room for load


@pytest.fixture(scope="module")
def own_triton(triton_repo, tmp_path_factory):
    srv = TritonServer(triton_repo, tmp_path_factory.mktemp("triton-faults")).start()
    yield srv
    srv.stop()


@pytest.fixture
def daemon(own_triton):
    from daemon.service.service import Service
    from daemon.service.systemd import Notifier

    cfg = make_config(cameras=("a", "b"),
                      engines={"detector": own_triton.url("yolo", timeout="3"), "conf": 0.05})
    sources: dict[str, FakeSource] = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(cfg, source_factory=factory, enhancer_factory=lambda e: None,
                  notifier=Notifier(environ={}), serve_http=True)
    svc.start()
    stop = threading.Event()

    def push() -> None:
        while not stop.is_set():
            for src in list(sources.values()):
                src.push(value=140)
            stop.wait(0.05)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    yield svc, own_triton
    stop.set()
    pusher.join(2)
    svc.stop()


def frames(svc, outcome: str) -> float:
    r = svc.metrics.registry
    return sum(r.get_sample_value("duskwatch_frames_total", {"camera": c, "outcome": outcome}) or 0
               for c in ("a", "b"))


def processing(svc, timeout: float = RESUME_S) -> bool:
    start = frames(svc, "processed")
    return bool(wait_for(lambda: frames(svc, "processed") >= start + 4, timeout=timeout))


def check_outage(svc, caplog, words: str, ready_words: tuple[str, ...] = ()) -> None:
    """During an outage: frames failed, cameras up, not ready with the reason (``words``, or
    one of ``ready_words`` for the latest try), the log naming it."""
    failed0 = frames(svc, "failed")
    assert wait_for(lambda: frames(svc, "failed") >= failed0 + 10, timeout=20), "no failed frames"
    ok, info = svc.view.readiness()
    assert ok is False and info["inference"]["detector"].startswith("unavailable"), info
    status, body = readyz(svc)
    assert status == 503 and body["inference"]["detector"].startswith("unavailable"), body
    assert any(w in info["inference"]["detector"] for w in ready_words or (words,)), info
    r = svc.metrics.registry
    assert all(r.get_sample_value("duskwatch_camera_up", {"camera": c}) == 1 for c in ("a", "b"))
    assert svc.view.health()[0], svc.view.health()[1]  # the daemon itself stays healthy
    assert any("Triton" in rec.getMessage() and words in rec.getMessage()
               for rec in caplog.records), "the log names the reason"


def readyz(svc) -> tuple[int, dict]:
    """GET /readyz from the service's own HTTP server."""
    import json
    import urllib.error
    import urllib.request

    host, port = svc.http.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def check_backoff(svc) -> None:
    """Over two seconds of outage at ~20 frames/s the engine tries the server a few times."""
    engine = svc.detector.engine
    before, failed0 = engine.wire["failed_calls"], frames(svc, "failed")
    time.sleep(2.0)
    tries = engine.wire["failed_calls"] - before
    assert frames(svc, "failed") - failed0 >= 10 and tries <= 4, tries


def test_server_answering_errors(daemon, caplog):
    svc, srv = daemon
    caplog.set_level(logging.INFO)
    assert processing(svc) and svc.view.readiness()[0] is True
    srv.unload("yolo")
    try:
        check_outage(svc, caplog, "yolo")
        check_backoff(svc)
    finally:
        srv.load("yolo")
    assert processing(svc), "detection did not resume after the model came back"
    assert svc.view.readiness()[0] is True and readyz(svc)[0] == 200


def test_slow_server_hits_the_deadline(daemon, caplog):
    svc, srv = daemon
    caplog.set_level(logging.INFO)
    assert processing(svc)
    srv.freeze()
    try:
        # the first call runs out of time; a later try on a fresh connection may instead fail
        # to finish gRPC's handshake with the stopped process (UNAVAILABLE)
        check_outage(svc, caplog, "DEADLINE_EXCEEDED", ("DEADLINE_EXCEEDED", "UNAVAILABLE"))
    finally:
        srv.thaw()
    assert processing(svc), "detection did not resume after the server thawed"
    assert svc.view.readiness()[0] is True


def test_server_killed_then_restarted(daemon, caplog):
    svc, srv = daemon
    caplog.set_level(logging.INFO)
    assert processing(svc)
    srv.kill()
    check_outage(svc, caplog, "UNAVAILABLE")
    check_backoff(svc)
    srv.start()
    back = time.monotonic()
    assert processing(svc), "detection did not resume after the restart"
    resumed_s = time.monotonic() - back
    assert resumed_s <= triton_backend.BACKOFF_MAX_S + 6, resumed_s
    assert svc.view.readiness()[0] is True


def test_a_box_started_while_the_server_is_down_exits_1_for_systemd_to_retry(tmp_path, closed_port):
    """Not a config error (exit 2, which the unit's RestartPreventExitStatus= never restarts):
    the server may come up later, so the start fails with 1 and systemd tries again."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.conftest import free_port

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    cfg = {"cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:1/x"}],
           "engines": {"detector": f"triton://127.0.0.1:{closed_port}/yolo?timeout=1"},
           "http": {"listen": f"127.0.0.1:{free_port()}"}, "sinks": []}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, PYTHONPATH=str(root))
    for cmd in (["run", "--config", str(path)], ["check-config", str(path)]):
        proc = subprocess.run([sys.executable, "-m", "daemon.cli", *cmd], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1, (cmd, proc.returncode, proc.stderr[-2000:])
        assert "yolo" in proc.stderr and str(closed_port) in proc.stderr, proc.stderr[-2000:]
    cfg["engines"]["detector"] = "triton://127.0.0.1/yolo"  # no port: a config error
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", str(path)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "engines.detector" in proc.stderr, proc.stderr[-2000:]
