"""The demo's synthetic camera, and `duskwatch demo` end to end (engines exported on first run)."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from daemon.config import CameraConfig
from daemon.pipeline.frames import CameraState
from daemon.pipeline.gate import mean_luma
from daemon.pipeline.synthetic import DayNight, SyntheticSource, darken, shape_frames

ROOT = Path(__file__).resolve().parents[1]


class Events:
    def __init__(self):
        self.states, self.skipped = [], 0

    def on_state(self, change):
        self.states.append(change.new)

    def on_frame_skipped(self, camera, count):
        self.skipped += count

    def on_reconnect(self, camera):
        pass


def test_day_night_cycle():
    c = DayNight(day_s=10, ramp_s=20, night_s=10, night_gain=0.1)
    assert c.period == 60
    assert c.gain(0) == 1.0 and c.gain(9.9) == 1.0
    ramp = [c.gain(t) for t in np.linspace(10, 30, 21)]
    assert all(a >= b for a, b in zip(ramp, ramp[1:]))
    assert c.gain(35) == pytest.approx(0.1)
    assert c.gain(50) == pytest.approx(0.55, abs=1e-6)  # half-way back up (40..60)
    assert c.gain(65) == 1.0  # loops


def test_darken_scales_brightness_and_adds_signal_dependent_noise():
    rng = np.random.default_rng(0)
    img = np.full((200, 200, 3), 200, np.uint8)
    night = darken(img, 0.1, rng)
    assert mean_luma(night, stride=1) == pytest.approx(20, abs=1)
    assert night.std() > 2.5  # sensor noise, where the clean picture is flat
    assert darken(img, 1.0, rng) is img


def test_synthetic_source_streams_counts_skips_and_stops():
    ev = Events()
    cfg = CameraConfig(name="demo", url="file:///x", fps=50)
    src = SyntheticSource(cfg, ev, shape_frames(96, 64), cycle=DayNight(day_s=0, ramp_s=0.01))
    src.start()
    try:
        end = time.monotonic() + 5
        frame = None
        while frame is None and time.monotonic() < end:
            frame = src.latest()
            time.sleep(0.01)
        assert frame is not None and frame.image.shape == (64, 96, 3)
        assert src.state == CameraState.STREAMING
        # frames keep coming; untaken ones are skipped and counted
        end = time.monotonic() + 10
        while src.status()["frames"] < frame.seq + 3 and time.monotonic() < end:
            time.sleep(0.01)
        nxt = src.latest(frame.seq)
        assert nxt is not None and nxt.seq > frame.seq
        assert nxt.seq > frame.seq + 1
        assert ev.skipped == nxt.seq + 1 - 2  # every frame but the two taken
        assert mean_luma(nxt.image) < 40  # night
        assert src.status()["kind"] == "synthetic"
    finally:
        src.stop(timeout=2)
    assert ev.states == [CameraState.CONNECTING, CameraState.STREAMING, CameraState.STOPPED]


def test_shape_frames_move():
    gen = shape_frames(120, 80)
    a, b = next(gen), next(gen)
    assert a.shape == (80, 120, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_demo_exports_engines_on_first_run_and_serves(tmp_path):
    """`duskwatch demo` from an empty cache: exports the detector (the box's fastest kind),
    runs, serves, exits on time."""
    import socket

    from daemon.install.engine_choice import choose_engines, probe_box
    from tests.prereqs import weights_or_internet_missing

    missing = weights_or_internet_missing()
    if missing:
        pytest.skip(missing)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "demo", "--duration", "12", "--imgsz", "160",
         "--fps", "4", "--cache-dir", str(tmp_path / "cache"), "--listen", f"127.0.0.1:{port}",
         "--sink", str(tmp_path / "out.jsonl")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        cams = None
        end = time.monotonic() + 180  # first run: two exports (OpenVINO conversion included) on a loaded 2-core box
        while time.monotonic() < end and proc.poll() is None:
            try:
                cams = get_json(base + "/cameras")["cameras"]
                if cams.get("demo", {}).get("last_result"):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert cams and cams["demo"]["state"] == "streaming", cams
        assert get_json(base + "/readyz")["ready"] is True
        with urllib.request.urlopen(base + "/snapshot/demo.jpg", timeout=5) as r:
            assert r.headers["Content-Type"] == "image/jpeg" and len(r.read()) > 1000
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err[-2000:]
    from daemon.sample_data import YOLO_WEIGHTS, find

    real = find(YOLO_WEIGHTS)  # the real COCO weights, where this machine has them
    stem = real.stem if real else "yolo11n"
    best = choose_engines(probe_box())
    assert (tmp_path / "cache" / "engines" / f"{stem}-160{best.detector_suffix}").is_file()
    assert (tmp_path / "cache" / "engines" / f"denoiser{best.enhancer_suffix}").is_file()
    assert f"engines: {best.describe()}" in err  # the choice, logged with its reason
    assert "/snapshot/demo.jpg" in err
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert lines and json.loads(lines[0])["camera"] == "demo"
    _sigterm_stops_a_long_demo_quickly(tmp_path, env, port)


def _sigterm_stops_a_long_demo_quickly(tmp_path, env, port):
    """Second start with the same cache: nothing is exported again, detections go to the cache
    directory by default (not the terminal), and SIGTERM long before --duration ends stops it
    within 5 s (the duration timer must not keep the process alive)."""
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "demo", "--duration", "300", "--imgsz", "160",
         "--fps", "4", "--cache-dir", str(tmp_path / "cache"), "--listen", f"127.0.0.1:{port}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 90
        ready = False
        while time.monotonic() < end and proc.poll() is None and not ready:
            try:
                ready = get_json(f"http://127.0.0.1:{port}/readyz")["ready"] is True
            except OSError:
                time.sleep(0.3)
        assert ready
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=15)
        stopped_in = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert stopped_in < 5, f"demo took {stopped_in:.1f} s to stop after SIGTERM"
    assert "exporting" not in err
    events = tmp_path / "cache" / "demo-events.jsonl"
    assert str(events) in err
    assert events.is_file()
