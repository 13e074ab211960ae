"""Fakes for the daemon's seams: a camera source, a detector and an enhancer.

They stand in for the real parts only at the constructor seams of Service/Pipeline
(``source_factory``, ``detector_factory``, ``enhancer_factory``); everything between them is real.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from daemon.config import CameraConfig, parse_config
from daemon.pipeline.frames import CameraState, Frame
from daemon.pipeline.latest import LatestFrame
from daemon.pipeline.lifecycle import Lifecycle
from engines.detections import Detections


class FakeSource:
    """A source whose frames the test pushes, with the real sources' lifecycle and
    latest-frame slot."""

    def __init__(self, cfg: CameraConfig, events, clock=time.monotonic):
        self.name = cfg.name
        self.cfg = cfg
        self.events = events
        self.clock = clock
        self._latest = LatestFrame(self.name)
        self._life = Lifecycle(self.name, events, clock=clock)
        self.started = 0
        self.stopped = 0
        self.frozen_heartbeat: float | None = None
        self.fail_latest = False

    def start(self) -> None:
        self.started += 1
        self._life.move(CameraState.CONNECTING, "fake starting")
        self._life.move(CameraState.STREAMING, "fake started")

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped += 1
        self._life.move(CameraState.STOPPED, "stopped")

    def push(self, image: np.ndarray | None = None, value: int = 128, decode_s: float = 0.001) -> Frame:
        """Deliver a new frame (gray ``value`` 64x48 unless ``image`` is given)."""
        if image is None:
            image = np.full((48, 64, 3), value, np.uint8)
        self._latest.put(image, self.clock(), time.time(), decode_s)
        return self._latest.newest

    def latest(self, after_seq: int = -1) -> Frame | None:
        if self.fail_latest:
            raise RuntimeError("fake source broken")
        return self._latest.take(after_seq)

    @property
    def state(self) -> CameraState:
        return self._life.state

    def status(self) -> dict:
        return {"state": self.state.value, "seq": self._latest.frames - 1}

    def heartbeat(self) -> float:
        return self.frozen_heartbeat if self.frozen_heartbeat is not None else time.monotonic()


@dataclass
class FakeDetector:
    """One box per image; class 'person' for bright images, 'car' for dark ones (mean < 100)."""

    names: dict = field(default_factory=lambda: {0: "person", 1: "car", 2: "dog"})
    backend: str = "onnxruntime"  # stands in for the det.onnx of make_config()
    fail: bool = False
    calls: list = field(default_factory=list)
    warmed: int = 0
    closed: bool = False

    def __call__(self, images):
        self.calls.append(len(images))
        if self.fail:
            raise RuntimeError("detector exploded")
        out = []
        for img in images:
            cid = 0 if img.mean() >= 100 else 1
            h, w = img.shape[:2]
            out.append(Detections.from_arrays([[1.0, 2.0, w / 2, h / 2]], [0.9], [cid], self.names))
        return out

    def warmup(self, batch: int = 1) -> None:
        self.warmed += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeEnhancer:
    """Brightens by adding 150 (so enhanced frames are detected as 'person')."""

    fail: bool = False
    calls: list = field(default_factory=list)
    resets: list = field(default_factory=list)
    closed: bool = False
    backend: str = "fake"

    def __call__(self, images, streams):
        self.calls.append(len(images))
        if self.fail:
            raise RuntimeError("enhancer exploded")
        return [np.clip(img.astype(np.int16) + 150, 0, 255).astype(np.uint8) for img in images]

    def warmup(self) -> None:
        pass

    def reset(self, stream: str) -> None:
        self.resets.append(stream)

    def close(self) -> None:
        self.closed = True


def camera_dicts(*specs):
    """Camera dicts: a name, or (name, {fields})."""
    out = []
    for spec in specs:
        name, extra = (spec, {}) if isinstance(spec, str) else spec
        out.append({"name": name, "url": f"rtsp://127.0.0.1:8554/{name}", **extra})
    return out


def make_config(cameras=("a", "b"), listen="127.0.0.1:0", **extra) -> "Config":  # noqa: F821
    data = {
        "cameras": [{"name": n, "url": f"rtsp://user:pw-{n}-secret@127.0.0.1:8554/{n}"} for n in cameras],
        "engines": {"detector": "/nonexistent/det.onnx", "enhancer": "/nonexistent/enh.onnx",
                    "check_files": False},
        "http": {"listen": listen},
        "sinks": [],
        # enhance every low-light frame (the default gate sends none through the shipped enhancer)
        "lowlight": {"enhance_below": 55.0, "max_highlight": 1.0},
        # no snapshots or clips under the default /var/lib/duskwatch/events
        "events": {"evidence": {"snapshots": False, "clips": False}},
    }
    data.update(extra)
    return parse_config(data)


class EmptyFacade:
    """A complete :class:`daemon.service.web.facade.Facade` with nothing to show: no cameras,
    no event store. Subclass it to fake one answer."""

    def metrics_payload(self):
        return b"", "text/plain; version=0.0.4"

    def health(self):
        return True, {"healthy": True, "reasons": [], "stale_cameras": []}

    def readiness(self):
        return True, {"ready": True}

    def cameras_status(self):
        return {"cameras": {}}

    def camera_names(self):
        return []

    def snapshot_jpeg(self, camera, picture="shown"):
        return None

    def events_list(self, camera=None, type_=None, limit=100):
        return []

    def events_page(self, *, camera=None, type_=None, cls=None, since=None, until=None,
                    offset=0, limit=100):
        return [], 0

    def event_file(self, event_id, kind):
        return None
