"""A camera removed by a reload leaves no metric series behind (issue 21, the series race).

A real RTSP server, a real ONNX YOLO detector and the service's own HTTP server: a second
camera is added and removed by reloads 50 times while one camera keeps streaming and four
threads scrape /metrics. After each removal has been applied (the scheduler's queue drained),
no series of the removed camera may remain.
"""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

import pytest

from daemon.config import Config
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.wait import wait_for

pytestmark = [pytest.mark.rtsp, pytest.mark.slow, pytest.mark.timeout(300)]

CYCLES = 50


@pytest.fixture(scope="module")
def detector_engine() -> Path:
    from tests.yolo_exports import exported

    return exported("onnx", imgsz=160, batch=8, dynamic=True)


def make_config(srv, detector: Path, names: tuple[str, ...]) -> Config:
    return Config.model_validate({
        "cameras": [{"name": n, "url": srv.url("cam"), "fps": 15,
                     "tracking": {"min_age_frames": 1}} for n in names],
        "engines": {"detector": str(detector), "conf": 0.01},
        "scheduler": {"max_batch": 2, "batch_timeout_ms": 5},
        "http": {"listen": "127.0.0.1:0"},
        "sinks": [],
    })


def drained(svc: Service, timeout: float = 10.0) -> bool:
    """True once every command sent to the scheduler before this call has been applied."""
    done = threading.Event()
    svc.scheduler.submit(done.set)
    return done.wait(timeout)


def processed(svc: Service, camera: str) -> float:
    value = svc.metrics.registry.get_sample_value(
        "duskwatch_frames_total", {"camera": camera, "outcome": "processed"})
    return value or 0.0


def leftovers(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if 'camera="extra"' in ln or "camera:extra" in ln]


def test_a_removed_camera_leaves_no_series_after_50_reloads_under_scrapes(
        rtsp_server, detector_engine, tmp_path):
    srv = rtsp_server({"cam": "h264"})
    one = make_config(srv, detector_engine, ("main",))
    two = make_config(srv, detector_engine, ("main", "extra"))
    svc = Service(one, notifier=Notifier(environ={}))
    svc.start()
    stop = threading.Event()
    scrapes = [0] * 4

    def scrape(i: int) -> None:
        url = "http://%s:%d/metrics" % svc.http.address
        while not stop.is_set():
            with urllib.request.urlopen(url, timeout=10) as resp:
                resp.read()
            scrapes[i] += 1

    scrapers = [threading.Thread(target=scrape, args=(i,), daemon=True) for i in range(4)]
    for t in scrapers:
        t.start()
    bad_cycles: list[tuple[int, list[str]]] = []
    try:
        assert wait_for(lambda: processed(svc, "main") > 0, 30), "camera main never processed"
        for cycle in range(CYCLES):
            svc.reload(two)
            # the extra camera's frames are in flight when it is removed
            assert wait_for(lambda: processed(svc, "extra") > 0, 20), f"cycle {cycle}: no frame"
            svc.reload(one)
            assert drained(svc)
            left = leftovers(svc.metrics.render().decode())
            if left:
                bad_cycles.append((cycle, left[:3]))
        assert all(n > 0 for n in scrapes), scrapes
    finally:
        stop.set()
        for t in scrapers:
            t.join(15)
        svc.stop()
    assert not bad_cycles, f"{len(bad_cycles)} of {CYCLES} removals left series: {bad_cycles[:3]}"
    assert processed(svc, "main") > 0
