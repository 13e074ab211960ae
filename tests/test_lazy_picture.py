"""The lazy enhanced picture (daemon.pipeline.picture): the real Enhancer (its temporal filter,
batching, padding) on an engine faked at the engine seam that brightens and counts its runs.

The network must run only for the pictures somebody looks at (a live snapshot over HTTP, an
event snapshot, a clip frame) while the temporal filter sees every frame in order; a failing
network falls back to the decoded frame, counted, and never costs a snapshot or a clip."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from daemon.config import LowLightConfig, load_config
from daemon.metrics import Metrics
from daemon.pipeline.frames import Frame
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.picture import Picture
from daemon.pipeline.process import Pipeline
from daemon.pipeline.sinks import SinkSet
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from engines.base import Engine, TensorSpec
from engines.enhancer import Enhancer
from tests.daemon_fakes import FakeDetector, FakeSource
from tests.wait import wait_for

GAIN = 4.0


class BrighteningEngine(Engine):
    """An enhancer engine: ``image`` x4 (clipped), counting the images it is run on."""

    backend = "fake"

    def __init__(self, fail: bool = False):
        super().__init__(Path("/nonexistent/brighten.onnx"))
        spec = (None, 3, None, None)
        self.inputs = [TensorSpec("image", spec, np.float32)]
        self.outputs = [TensorSpec("enhanced", spec, np.float32)]
        self.metadata = {"kind": "enhancer", "multiple": 16}
        self.fail = fail
        self.images = 0
        self._lock = threading.Lock()

    def _run(self, feed):
        x = feed["image"]
        with self._lock:
            self.images += x.shape[0]
        if self.fail:
            raise RuntimeError("enhancer engine exploded")
        return {"enhanced": np.clip(x * GAIN, 0.0, 1.0).astype(np.float32)}


def noisy_dark(rng, seq: int, shape=(48, 64)) -> np.ndarray:
    """A dark still scene with fresh sensor noise in every frame."""
    base = np.full((*shape, 3), 20.0)
    return np.clip(base + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)


def run_frames(pipe: Pipeline, gate: LowLightGate, images, camera="dark"):
    t = time.monotonic()
    for seq, img in enumerate(images):
        img.flags.writeable = False
        pipe.process([Frame(camera, img, seq, t + seq / 10, time.time())], [gate])


def dark_gate(views=("clahe",)) -> LowLightGate:
    return LowLightGate(LowLightConfig(smoothing=1.0, enhance_below=55.0, max_highlight=1.0,
                                       views=list(views)), "always", "enhanced")


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_the_network_runs_only_for_a_picture_someone_looks_at_and_the_filter_sees_every_frame():
    rng = np.random.default_rng(7)
    images = [noisy_dark(rng, i) for i in range(12)]
    engine = BrighteningEngine()
    metrics = Metrics()
    metrics.add_camera("dark")
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]), enhancer=Enhancer(engine, temporal=True))
    run_frames(pipe, dark_gate(), images)
    assert engine.images == 0  # 12 frames processed, nobody looked
    assert value(metrics, "duskwatch_frames_total", camera="dark", outcome="processed") == 12
    snap = pipe.snapshots.get("dark")
    assert isinstance(snap.shown, Picture) and not snap.shown.resolved
    shown = snap.image
    assert engine.images == 1 and value(metrics, "duskwatch_frames_enhanced_total", camera="dark") == 1
    assert snap.image is shown and engine.images == 1  # made once
    # the very picture an eager enhancer gives for the 12th frame after all 12 in order: the
    # temporal filter saw every frame, though the network ran on one
    eager = Enhancer(BrighteningEngine(), temporal=True)
    expected = [eager([img], ["dark"])[0] for img in images][-1]
    np.testing.assert_array_equal(shown, expected)
    assert shown.mean() > images[-1].mean() * 2 and shown.shape == images[-1].shape
    assert snap.picture("raw") is images[-1]


def test_with_the_enhanced_view_the_network_runs_once_per_frame_and_that_is_the_picture():
    rng = np.random.default_rng(8)
    engine = BrighteningEngine()
    metrics = Metrics()
    metrics.add_camera("dark")
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]), enhancer=Enhancer(engine, temporal=True))
    run_frames(pipe, dark_gate(("raw", "enhanced")), [noisy_dark(rng, i) for i in range(5)])
    assert engine.images == 5
    snap = pipe.snapshots.get("dark")
    assert snap.shown.resolved and snap.image.mean() > 60
    assert engine.images == 5  # no second run for the picture


def test_a_failing_network_falls_back_to_the_decoded_frame_counted():
    rng = np.random.default_rng(9)
    images = [noisy_dark(rng, i) for i in range(3)]
    engine = BrighteningEngine(fail=True)
    metrics = Metrics()
    metrics.add_camera("dark")
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]), enhancer=Enhancer(engine, temporal=True))
    run_frames(pipe, dark_gate(), images)
    snap = pipe.snapshots.get("dark")
    assert snap.image is images[-1]  # the decoded frame, not an error
    assert value(metrics, "duskwatch_engine_failures_total", stage="enhance") == 1
    assert value(metrics, "duskwatch_frames_total", camera="dark", outcome="processed") == 3
    assert value(metrics, "duskwatch_frames_total", camera="dark", outcome="failed") == 0
    assert value(metrics, "duskwatch_frames_enhanced_total", camera="dark") == 0
    snap.image
    assert value(metrics, "duskwatch_engine_failures_total", stage="enhance") == 1  # resolved once


def test_many_readers_at_once_make_one_picture():
    engine = BrighteningEngine()
    metrics = Metrics()
    metrics.add_camera("dark")
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]), enhancer=Enhancer(engine, temporal=True))
    run_frames(pipe, dark_gate(), [noisy_dark(np.random.default_rng(1), 0)])
    pic = pipe.snapshots.get("dark").shown
    got = []
    threads = [threading.Thread(target=lambda: got.append(pic.image())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 8 and all(g is got[0] for g in got) and engine.images == 1


def test_a_clip_sized_picture_stays_lazy_and_is_made_at_its_own_size():
    engine = BrighteningEngine()
    metrics = Metrics()
    metrics.add_camera("dark")
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]), enhancer=Enhancer(engine, temporal=True))
    run_frames(pipe, dark_gate(), [noisy_dark(np.random.default_rng(2), 0, (96, 128))])
    small = pipe.snapshots.get("dark").shown.scaled(64, 48)
    assert not small.resolved and small.shape == (48, 64, 3) and engine.images == 0
    image = small.image()
    assert image.shape == (48, 64, 3) and image.mean() > 60 and engine.images == 1
    assert not pipe.snapshots.get("dark").shown.resolved  # the full-size picture was not made


# -- the service: HTTP snapshot, event snapshot and clip ---------------------------------------
def service_config(tmp_path: Path) -> dict:
    return {
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate",
                     "tracking": {"min_age_frames": 6, "lost_track_s": 2.0}}],
        "engines": {"detector": "/nonexistent/det.onnx", "enhancer": "/nonexistent/enh.onnx",
                    "check_files": False},
        "http": {"listen": "127.0.0.1:0", "snapshot_interval_s": 0},
        "sinks": [],
        "lowlight": {"enhance_below": 55.0, "max_highlight": 1.0, "views": ["clahe"]},
        "events": {"evidence": {"dir": str(tmp_path / "evidence"), "pre_s": 0.0, "post_s": 0.3,
                                "clip_types": ["appeared"]}},
    }


@pytest.fixture
def dark_service(tmp_path, request):
    import yaml

    engine = BrighteningEngine()
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(service_config(tmp_path)))
    sources: dict[str, FakeSource] = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(load_config(path), source_factory=factory,
                  detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: Enhancer(engine, temporal=True),
                  notifier=Notifier(environ={}))
    svc.start()
    engine.fail = getattr(request, "param", False)  # fails from now on (the warm-up passed)
    engine.images = 0  # the warm-up's run
    try:
        yield svc, sources["gate"], engine
    finally:
        svc.stop()


def clip_means(path: str, region=np.s_[:, :]) -> tuple[list[float], tuple[int, int]]:
    """Mean grey of every frame of a clip (of ``region``: boxes and labels are drawn), its size."""
    cap = cv2.VideoCapture(path)
    means, size = [], None
    while True:
        ok, img = cap.read()
        if not ok:
            break
        means.append(float(img[region].mean()))
        size = img.shape[:2]
    cap.release()
    return means, size


def processed(svc) -> float:
    return svc.metrics.registry.get_sample_value(
        "duskwatch_frames_total", {"camera": "gate", "outcome": "processed"}) or 0.0


def push_processed(svc, src, n: int) -> None:
    """``n`` dark frames, each waited for until the pipeline processed it."""
    for _ in range(n):
        before = processed(svc)
        src.push(np.full((48, 64, 3), 20, np.uint8))
        assert wait_for(lambda: processed(svc) > before, timeout=10), "frame not processed"


def pump_until_clip(svc, src) -> dict:
    """Dark frames until the 'appeared' event's snapshot and clip are written (the clip
    closes ``post_s`` after the event)."""
    def done():
        src.push(np.full((48, 64, 3), 20, np.uint8))
        time.sleep(0.02)
        evs = svc.view.events_list(type_="appeared")
        ev = evs[0] if evs else None
        ok = ev and ev["snapshot"] and Path(ev["snapshot"]).is_file() and ev["clip"] and \
            Path(ev["clip"]).is_file()
        return ev if ok else None

    ev = wait_for(done, timeout=20)
    assert ev, "no event snapshot and clip written"
    return ev


def test_a_dark_cameras_live_snapshot_event_snapshot_and_clip_are_the_enhanced_picture(dark_service):
    svc, src, engine = dark_service
    push_processed(svc, src, 4)  # a track, no event yet (min_age_frames 6), nobody looking
    assert engine.images == 0
    ev = pump_until_clip(svc, src)
    shown = cv2.imread(ev["snapshot"])
    kept = cv2.imread(ev["snapshot_raw"])
    assert shown.shape == kept.shape == (48, 64, 3)
    assert shown.mean() > kept.mean() + 30  # the enhanced picture, the decoded frame beside it
    means, size = clip_means(ev["clip"])
    assert means and size == (48, 64) and min(means) > 50  # every clip frame enhanced (raw: 20)

    host, port = svc.http.address
    base = f"http://{host}:{port}/snapshot/gate.jpg"
    live = cv2.imdecode(np.frombuffer(urllib.request.urlopen(base, timeout=5).read(), np.uint8), 1)
    raw = cv2.imdecode(np.frombuffer(urllib.request.urlopen(base + "?picture=raw", timeout=5).read(),
                                     np.uint8), 1)
    assert live.shape == raw.shape == (48, 64, 3)
    # the frame's middle (the label and the box are drawn at the edges)
    assert live[30:, 40:].mean() > 60 and raw[30:, 40:].mean() < 30
    assert svc.metrics.registry.get_sample_value(
        "duskwatch_frames_enhanced_total", {"camera": "gate"}) == engine.images
    assert engine.images < processed(svc)  # not the frames nobody looked at


@pytest.mark.parametrize("dark_service", [True], indirect=True)
def test_a_failing_enhancer_gives_the_decoded_frame_in_snapshots_and_clips_counted(dark_service):
    svc, src, engine = dark_service
    ev = pump_until_clip(svc, src)
    shown, kept = cv2.imread(ev["snapshot"]), cv2.imread(ev["snapshot_raw"])
    assert np.abs(shown.astype(int) - kept).mean() < 2  # the decoded frame, drawn alike
    means, _ = clip_means(ev["clip"], np.s_[30:, 40:])
    assert means and max(means) < 30  # every frame the decoded one (20), none lost
    host, port = svc.http.address
    with urllib.request.urlopen(f"http://{host}:{port}/snapshot/gate.jpg", timeout=5) as r:
        assert r.status == 200
    failures = svc.metrics.registry.get_sample_value("duskwatch_engine_failures_total",
                                                      {"stage": "enhance"})
    assert failures >= len(means)  # every clip frame tried once and fell back
    assert svc.metrics.registry.get_sample_value(
        "duskwatch_frames_total", {"camera": "gate", "outcome": "failed"}) == 0
