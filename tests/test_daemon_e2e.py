"""`duskwatch run` end to end: a real RTSP server, a real Prometheus, a real notify socket.

The daemon runs as a subprocess, exactly as systemd starts it (``NOTIFY_SOCKET`` set, signals
for stop and reload). The detector is a small ONNX export of ``yolo11n.yaml`` (see
:mod:`tests.yolo_exports`), run by ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Sup3r-s3cret-pw"

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(120)]

pytest.importorskip("daemon.pipeline.sources", reason="needs the camera sources (daemon/pipeline/sources.py)")


@pytest.fixture(scope="session")
def detector_engine() -> Path:
    from tests.yolo_exports import exported

    return exported("onnx", imgsz=160, batch=8, dynamic=True)


class NotifyListener:
    """A bound AF_UNIX datagram socket collecting what the daemon tells 'systemd'."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def seen(self, line: str) -> float | None:
        """monotonic time the first datagram containing ``line`` arrived, or None."""
        for t, msg in list(self.messages):
            if line in msg.splitlines():
                return t
        return None

    def wait(self, line: str, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            t = self.seen(line)
            if t is not None:
                return t
            time.sleep(0.05)
        raise AssertionError(f"no {line} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Daemon:
    """``duskwatch run --config`` as a subprocess with its log in a file."""

    def __init__(self, tmp: Path, cfg: dict, env: dict[str, str] | None = None):
        self.tmp = tmp
        self.config = tmp / "duskwatch.yaml"
        self.write(cfg)
        self.port = int(cfg["http"]["listen"].rpartition(":")[2])
        self.base = f"http://127.0.0.1:{self.port}"
        self.notify = NotifyListener(tmp / "notify.sock")
        self.log_path = tmp / "daemon.log"
        full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
                        NOTIFY_SOCKET=self.notify.path, WATCHDOG_USEC="4000000",
                        **(env or {}))
        full_env.pop("WATCHDOG_PID", None)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "run", "--config", str(self.config)],
            cwd=tmp, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def write(self, cfg: dict) -> None:
        self.config.write_text(yaml.safe_dump(cfg))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def metric(self, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        for fam in text_string_to_metric_families(body.decode()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None

    def wait_metric(self, name: str, pred, timeout: float = 30.0, **labels: str) -> float:
        end = time.monotonic() + timeout
        v = None
        while time.monotonic() < end:
            self.assert_alive()
            v = self.metric(name, **labels)
            if v is not None and pred(v):
                return v
            time.sleep(0.3)
        raise AssertionError(f"{name}{labels} = {v} never satisfied the condition\n{self.log()[-3000:]}")

    def assert_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()
        self.notify.close()


@pytest.fixture
def daemon(tmp_path):
    started: list[Daemon] = []

    def start(cfg: dict, env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(tmp_path, cfg, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def config(cameras: list[dict], detector: Path, port: int, sink: Path) -> dict:
    return {
        "cameras": cameras,
        "engines": {"detector": str(detector), "device": "cpu", "conf": 0.05},
        "scheduler": {"max_batch": 4, "batch_timeout_ms": 5},
        "sinks": [{"type": "jsonl", "path": str(sink)}],
        "events": {"evidence": {"dir": str(sink.parent / "evidence")}},
        "http": {"listen": f"127.0.0.1:{port}"},
        "supervision": {"heartbeat_timeout_s": 20},
    }


def camera(name: str, url: str, **extra) -> dict:
    # duskwatch_detections_total counts tracked objects; the random-weight detector's boxes score
    # below the default tracking.min_score, which is also ByteTrack's bar for starting a track
    return {"name": name, "url": url, "fps": 5, "read_timeout_s": 5, "backoff_max_s": 2,
            "tracking": {"min_score": 0.05}, **extra}


@pytest.mark.prometheus
def test_two_cameras_through_prometheus_then_sigterm(rtsp_server, prometheus, daemon, detector_engine,
                                                     tmp_path):
    srv = rtsp_server({"cam1": "h264", "cam2": "h264"}, user="viewer", password=PASSWORD)
    port = free_port()
    sink = tmp_path / "detections.jsonl"
    cams = [camera("cam1", srv.auth_url("cam1")),                        # password in the URL
            camera("cam2", srv.url("cam2", user="viewer"), password_env="CAM2_PASSWORD")]
    d = daemon(config(cams, detector_engine, port, sink), env={"CAM2_PASSWORD": PASSWORD})
    d.notify.wait("READY=1", timeout=40)
    prom = prometheus([f"127.0.0.1:{port}"])
    for cam in ("cam1", "cam2"):
        n = prom.wait_for(f'sum(duskwatch_frames_total{{camera="{cam}",outcome="processed"}})',
                          lambda v: v >= 5, timeout=40)
        assert n >= 5
    # detections were produced and counted, and the sink has them
    total_det = prom.wait_for("sum(duskwatch_detections_total)", lambda v: v > 0, timeout=20)
    assert total_det > 0
    lines = [json.loads(l) for l in sink.read_text().splitlines()]
    assert {l["camera"] for l in lines} == {"cam1", "cam2"}
    assert sum(len(l["detections"]) for l in lines) > 0
    assert d.metric("duskwatch_camera_up", camera="cam1") == 1
    assert d.notify.seen("WATCHDOG=1") is not None
    status, body = d.get("/cameras")
    assert status == 200 and json.loads(body)["cameras"]["cam2"]["state"] == "streaming"
    # SIGTERM during streaming: STOPPING=1 and exit within 5 s
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    d.proc.wait(timeout=10)
    elapsed = time.monotonic() - t0
    assert d.proc.returncode == 0, d.log()[-3000:]
    assert elapsed < 5.0, f"took {elapsed:.1f} s to stop"
    assert d.notify.seen("STOPPING=1") is not None
    # the password reached no log, metric or status
    metrics = json.dumps(prom.query('{__name__=~"duskwatch_.+"}'))
    for where, text in (("log", d.log()), ("metrics", metrics), ("cameras", body.decode())):
        assert PASSWORD not in text, f"password leaked into {where}"


def test_sighup_adds_and_removes_cameras_and_keeps_unchanged(rtsp_server, daemon, detector_engine,
                                                             tmp_path):
    srv = rtsp_server({"cam1": "h264", "cam2": "h264"})
    port = free_port()
    sink = tmp_path / "detections.jsonl"
    cam1, cam2 = camera("cam1", srv.url("cam1")), camera("cam2", srv.url("cam2"))
    d = daemon(config([cam1], detector_engine, port, sink))
    d.notify.wait("READY=1", timeout=40)
    d.wait_metric("duskwatch_frames_total", lambda v: v >= 3, camera="cam1", outcome="processed")

    d.write(config([cam1, cam2], detector_engine, port, sink))
    d.signal(signal.SIGHUP)
    d.wait_metric("duskwatch_frames_total", lambda v: v >= 3, camera="cam2", outcome="processed")
    assert "camera cam2: added" in d.log()
    assert "camera cam1: added" in d.log() and d.log().count("camera cam1: added") == 1
    assert d.metric("duskwatch_camera_reconnects_total", camera="cam1") == 0

    before = d.metric("duskwatch_frames_total", camera="cam2", outcome="processed")
    d.write({"cameras": "not a list"})
    d.signal(signal.SIGHUP)
    end = time.monotonic() + 10
    while "keeping the running config" not in d.log() and time.monotonic() < end:
        time.sleep(0.1)
    assert "keeping the running config" in d.log()
    d.wait_metric("duskwatch_frames_total", lambda v: v > before, camera="cam2", outcome="processed")

    d.write(config([cam2], detector_engine, port, sink))
    d.signal(signal.SIGHUP)
    end = time.monotonic() + 15
    while d.metric("duskwatch_frames_total", camera="cam1", outcome="processed") is not None:
        assert time.monotonic() < end, d.log()[-3000:]
        time.sleep(0.2)
    status, body = d.get("/cameras")
    assert sorted(json.loads(body)["cameras"]) == ["cam2"]
    assert d.get("/snapshot/cam1.jpg")[0] == 404
    status, jpeg = d.get("/snapshot/cam2.jpg")
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    assert d.log().count("camera cam2: added") == 1  # cam2 was not reconnected by the reloads
    d.signal(signal.SIGTERM)
    d.proc.wait(timeout=10)
    assert d.proc.returncode == 0
