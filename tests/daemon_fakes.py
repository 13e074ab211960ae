"""Fakes for the daemon's seams: a camera source, a detector and an enhancer.

They stand in for the real parts only at the constructor seams of Service/Pipeline
(``source_factory``, ``detector_factory``, ``enhancer_factory``); everything between them is real.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from daemon.config import CameraConfig, parse_config
from daemon.pipeline.frames import CameraState, Frame, StateChange


class FakeSource:
    """A source whose frames the test pushes; it keeps only the newest (like the real one)."""

    def __init__(self, cfg: CameraConfig, events, clock=time.monotonic):
        self.name = cfg.name
        self.cfg = cfg
        self.events = events
        self.clock = clock
        self._latest: Frame | None = None
        self._seq = -1
        self._state = CameraState.STOPPED
        self._lock = threading.Lock()
        self.started = 0
        self.stopped = 0
        self.frozen_heartbeat: float | None = None
        self.fail_latest = False

    def start(self) -> None:
        self.started += 1
        self._set_state(CameraState.STREAMING, "fake started")

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped += 1
        self._set_state(CameraState.STOPPED, "stopped")

    def _set_state(self, new: CameraState, reason: str) -> None:
        old, self._state = self._state, new
        self.events.on_state(StateChange(self.name, old, new, reason, time.time()))

    def push(self, image: np.ndarray | None = None, value: int = 128, decode_s: float = 0.001) -> Frame:
        """Deliver a new frame (gray ``value`` 64x48 unless ``image`` is given)."""
        if image is None:
            image = np.full((48, 64, 3), value, np.uint8)
        with self._lock:
            self._seq += 1
            self._latest = Frame(self.name, image, self._seq, self.clock(), time.time(), decode_s)
            return self._latest

    def latest(self, after_seq: int = -1) -> Frame | None:
        if self.fail_latest:
            raise RuntimeError("fake source broken")
        with self._lock:
            if self._latest is None or self._latest.seq <= after_seq:
                return None
            return self._latest

    @property
    def state(self) -> CameraState:
        return self._state

    def status(self) -> dict:
        return {"state": self._state.value, "seq": self._seq}

    def heartbeat(self) -> float:
        return self.frozen_heartbeat if self.frozen_heartbeat is not None else time.monotonic()


@dataclass
class FakeDetections:
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: list[str]


@dataclass
class FakeDetector:
    """One box per image; class 'person' for bright images, 'car' for dark ones (mean < 100)."""

    names: dict = field(default_factory=lambda: {0: "person", 1: "car", 2: "dog"})
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
            out.append(FakeDetections(np.array([[1.0, 2.0, w / 2, h / 2]]), np.array([0.9]),
                                      np.array([cid]), [self.names[cid]]))
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

    def __call__(self, images):
        self.calls.append(len(images))
        if self.fail:
            raise RuntimeError("enhancer exploded")
        return [np.clip(img.astype(np.int16) + 150, 0, 255).astype(np.uint8) for img in images]

    def warmup(self) -> None:
        pass


def make_config(cameras=("a", "b"), listen="127.0.0.1:0", **extra) -> "Config":  # noqa: F821
    data = {
        "cameras": [{"name": n, "url": f"rtsp://user:pw-{n}-secret@127.0.0.1:8554/{n}"} for n in cameras],
        "engines": {"detector": "/nonexistent/det.onnx", "enhancer": "/nonexistent/enh.onnx",
                    "check_files": False},
        "http": {"listen": listen},
        "sinks": [],
    }
    data.update(extra)
    return parse_config(data)
