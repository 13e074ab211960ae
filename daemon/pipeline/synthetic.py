"""A built-in camera for ``duskwatch demo``: footage that goes from day to night and back.

The pictures come from a video file when one is available (OpenCV's ``vtest.avi``, or the file
given with ``--source``), else from generated moving shapes. A brightness cycle darkens them:
day, a ramp down to night over ``ramp_s`` seconds, night, a ramp back up; at night the picture
gets the noise a real sensor adds when its gain is turned up (a signal-dependent shot-noise term
plus read noise, the usual heteroscedastic Gaussian approximation of Poisson-Gaussian noise;
Foi et al., "Practical Poissonian-Gaussian noise modeling", IEEE TIP 2008).

:class:`SyntheticSource` implements :class:`daemon.pipeline.frames.CameraSource` with a reader thread
and the same lifecycle and latest-frame slot as the real sources.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from daemon.config import CameraConfig
from daemon.pipeline.frames import CameraState, Frame, SourceEvents
from daemon.pipeline.latest import LatestFrame
from daemon.pipeline.lifecycle import Lifecycle


# -- the day/night cycle (pure functions) ---------------------------------------------------------
@dataclass(frozen=True)
class DayNight:
    """Brightness over time: ``day_s`` of daylight, ``ramp_s`` down, ``night_s``, ``ramp_s`` up."""

    day_s: float = 8.0
    ramp_s: float = 30.0
    night_s: float = 20.0
    night_gain: float = 0.08

    @property
    def period(self) -> float:
        return self.day_s + 2 * self.ramp_s + self.night_s

    def gain(self, t: float) -> float:
        """Multiplier of the clean picture at time ``t`` seconds (1 by day, night_gain by night)."""
        t = t % self.period
        lo = self.night_gain
        if t < self.day_s:
            return 1.0
        t -= self.day_s
        if t < self.ramp_s:  # cosine ramp down
            return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t / self.ramp_s))
        t -= self.ramp_s
        if t < self.night_s:
            return lo
        t -= self.night_s
        return lo + (1 - lo) * 0.5 * (1 - math.cos(math.pi * t / self.ramp_s))


def darken(image: np.ndarray, gain: float, rng: np.random.Generator,
           shot: float = 0.6, read: float = 2.0) -> np.ndarray:
    """Scale ``image`` by ``gain`` and add sensor noise whose variance grows with the signal
    (``shot * signal``) and, relatively, as the gain falls (``read``). uint8 in, uint8 out."""
    if gain >= 0.999:
        return image
    signal = image.astype(np.float32) * gain
    sigma = np.sqrt(shot * signal + read**2)
    noisy = signal + rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


# -- picture producers ------------------------------------------------------------------------------
def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Frames of a video file, looping at its end; raises ValueError when it cannot be read."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot open the video (is it a video file OpenCV can read?)")
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, img = cap.read()
                if not ok:
                    raise ValueError(f"{path}: no frame could be decoded")
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            yield img
    finally:
        cap.release()


def shape_frames(width: int = 640, height: int = 360, seed: int = 0) -> Iterator[np.ndarray]:
    """Generated footage: a textured background with coloured shapes moving across it."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = (90 + 50 * np.sin(xx / 37.0) * np.cos(yy / 23.0)).astype(np.float32)
    base = np.stack([background * 0.9, background, background * 1.1], axis=2)
    base = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    movers = [(rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-4, 4), rng.uniform(-3, 3),
               tuple(int(c) for c in rng.integers(60, 255, 3)), int(rng.integers(15, 45)))
              for _ in range(6)]
    t = 0
    while True:
        img = base.copy()
        for i, (x, y, vx, vy, color, size) in enumerate(movers):
            cx = int((x + vx * t) % width)
            cy = int((y + vy * t) % height)
            if i % 2:
                cv2.circle(img, (cx, cy), size, color, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (cx - size, cy - 2 * size), (cx + size, cy + 2 * size), color, -1)
        t += 1
        yield img


def default_video() -> Path | None:
    """OpenCV's vtest.avi from the sample data, if this machine has it (:mod:`daemon.sample_data`)."""
    from daemon.sample_data import DEMO_VIDEO, find

    return find(DEMO_VIDEO)


# -- the source -------------------------------------------------------------------------------------
class SyntheticSource:
    """A camera playing ``frames`` at ``fps``, darkened by ``cycle`` (None: as they are)."""

    def __init__(self, cfg: CameraConfig, events: SourceEvents, frames: Iterator[np.ndarray],
                 cycle: DayNight | None = DayNight(), fps: float | None = None, seed: int = 0):
        self.name = cfg.name
        self._events = events
        self._frames = frames
        self._cycle = cycle
        self._fps = fps or cfg.fps
        self._rng = np.random.default_rng(seed)
        self._latest = LatestFrame(self.name)
        self._stop = threading.Event()
        self._life = Lifecycle(self.name, events, self._stop.is_set)
        self._thread: threading.Thread | None = None
        self._heartbeat = time.monotonic()
        self._t0 = time.monotonic()
        self._error = ""

    # CameraSource ------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._t0 = time.monotonic()
        self._life.move(CameraState.CONNECTING, "synthetic source starting")
        self._thread = threading.Thread(target=self._run, name=f"duskwatch-synthetic-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._life.move(CameraState.STOPPED, "stopped")

    def latest(self, after_seq: int = -1) -> Frame | None:
        return self._latest.take(after_seq)

    @property
    def state(self) -> CameraState:
        return self._life.state

    def status(self) -> dict:
        gain = self._cycle.gain(time.monotonic() - self._t0) if self._cycle else 1.0
        return {"state": self.state.value, "kind": "synthetic", "frames": self._latest.frames,
                "skipped": self._latest.skipped, "brightness_gain": round(gain, 3),
                **({"error": self._error} if self._error else {})}

    def heartbeat(self) -> float:
        return self._heartbeat

    # reader thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        period = 1.0 / self._fps
        next_t = time.monotonic()
        try:
            first = True
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                self._produce()
                if first:
                    self._life.move(CameraState.STREAMING, "synthetic frames flowing")
                    first = False
                next_t = max(next_t + period, time.monotonic() - period)
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the reason goes to the state, not a traceback
            self._error = f"{type(exc).__name__}: {exc}"
            self._stop.set()
            self._life.move(CameraState.STOPPED, self._error)

    def _produce(self) -> None:
        t0 = time.monotonic()
        img = next(self._frames)
        if self._cycle is not None:
            img = darken(img, self._cycle.gain(t0 - self._t0), self._rng)
        decode = time.monotonic() - t0
        if self._latest.put(img, time.monotonic(), time.time(), decode):
            self._events.on_frame_skipped(self.name, 1)


def synthetic_factory(video: str | Path | None = None, cycle: DayNight | None = DayNight()):
    """A :data:`daemon.pipeline.frames.SourceFactory` for the demo: ``video`` if given, else vtest.avi
    when present, else generated shapes."""

    def factory(cfg: CameraConfig, events: SourceEvents) -> SyntheticSource:
        path = video or default_video()
        frames = video_frames(path) if path else shape_frames()
        return SyntheticSource(cfg, events, frames, cycle=cycle)

    return factory
