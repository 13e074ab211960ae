"""The picture people see of a low-light camera, made only when someone looks at it.

People look at a tiny fraction of a camera's frames (a live snapshot now and then, an event's
snapshot, the frames of a clip), so the enhancer's network does not run on every frame of a
``picture: enhanced`` camera. On the scheduler thread each such frame only goes through the
enhancer's per-stream :meth:`~engines.enhancer.Enhancer.filter` (the temporal filter: cheap,
and it must see every frame in order); the result is a lazy :class:`Picture` that the snapshot
store, the event tracks and the evidence ring hold instead of an array. The first reader
(an HTTP thread drawing the live snapshot, the evidence writer encoding a snapshot or a clip
frame) runs the network on it once, through :class:`PictureMaker`; later readers get the same
array. When the detector looks at the ``enhanced`` view, the network ran on the scheduler
thread already and the picture is that output (:meth:`Picture.ready`).

A network failure while resolving falls back to the decoded frame, counted in
``duskwatch_engine_failures_total{stage="enhance"}`` and logged (rate-limited): a snapshot or a
clip is never lost to it. ``duskwatch_frames_enhanced_total`` counts network runs, lazy or not.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence, Union

import numpy as np

from daemon.metrics import Metrics
from daemon.pipeline.ratelog import RateLimitedLog
from daemon.pipeline.seams import Enhancer

log = logging.getLogger("duskwatch.picture")


class Picture:
    """One frame's picture: made from ``source`` (what the enhancer's filter returned) by the
    network on first use, or ``ready`` already. Thread-safe; resolved at most once."""

    __slots__ = ("camera", "_source", "_raw", "_maker", "_image", "_lock")

    def __init__(self, camera: str, source: np.ndarray, raw: np.ndarray, maker: "PictureMaker"):
        self.camera = camera
        self._source, self._raw, self._maker = source, raw, maker
        self._image: np.ndarray | None = None
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, image: np.ndarray) -> "Picture":
        """A picture that is already made (the enhancer's output of the enhanced view)."""
        pic = cls.__new__(cls)
        pic.camera, pic._source, pic._raw, pic._maker = "", None, None, None
        pic._image, pic._lock = _read_only(image), threading.Lock()
        return pic

    @property
    def resolved(self) -> bool:
        return self._image is not None

    @property
    def shape(self) -> tuple[int, ...]:
        raw = self._raw  # read before _image: a reader may make the picture meanwhile (see image())
        image = self._image
        return image.shape if image is not None else raw.shape

    def image(self) -> np.ndarray:
        """The picture (BGR uint8, read-only): the network's output, made now if nobody asked
        before, or the decoded frame when the network failed."""
        if self._image is None:
            with self._lock:
                if self._image is None:
                    self._image = _read_only(self._maker.resolve(self.camera, self._source, self._raw))
                    # no longer needed; cleared only after _image is set, so that a reader without
                    # the lock (shape, scaled) that read them before finding _image None has both
                    self._source = self._raw = None
        return self._image

    def scaled(self, width: int, height: int) -> "Picture":
        """The same picture at ``width`` x ``height`` (a clip's size), still lazy if this one
        is: the network then runs on the smaller frame."""
        import cv2

        size = (width, height)
        source, raw = self._source, self._raw  # before _image (see image())
        image = self._image
        if image is not None:
            return Picture.ready(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        return Picture(self.camera, cv2.resize(source, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(raw, size, interpolation=cv2.INTER_AREA), self._maker)


Image = Union[np.ndarray, Picture]
"""What the snapshot store, event tracks and the evidence ring hold: an array or a Picture."""


def as_array(image: Image) -> np.ndarray:
    """The array of ``image``: itself, or the picture made now (see :meth:`Picture.image`)."""
    return image.image() if isinstance(image, Picture) else image


class PictureMaker:
    """The enhancer as the pipeline and the pictures use it: :meth:`filter` on the scheduler
    thread for every frame that needs a picture or the enhanced view, :meth:`network` from any
    thread, one call at a time (engines are not all safe to share between threads).

    An enhancer without ``filter``/``network`` (a fake, or one without per-stream state) is
    treated as all network: its ``__call__`` runs when a picture is made."""

    def __init__(self, enhancer: Enhancer, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic):
        self.enhancer = enhancer
        self.metrics = metrics
        self.clock = clock
        self._split = callable(getattr(enhancer, "filter", None)) and callable(
            getattr(enhancer, "network", None))
        self._lock = threading.Lock()
        self._errors = RateLimitedLog(log)

    def filter(self, images: Sequence[np.ndarray], cameras: Sequence[str]) -> list[np.ndarray]:
        """Scheduler thread, every frame in order: the per-stream state's share of the work."""
        if not self._split:
            return list(images)
        out = list(self.enhancer.filter(list(images), list(cameras)))
        if len(out) != len(images):
            raise ValueError(f"enhancer filter returned {len(out)} frames for {len(images)}")
        return out

    def network(self, frames: Sequence[np.ndarray], cameras: Sequence[str]) -> list[np.ndarray]:
        """The network on filtered frames (raises on failure); timed as the ``enhance`` stage
        and counted in ``duskwatch_frames_enhanced_total``."""
        with self._lock:
            t0 = self.clock()
            if self._split:
                out = list(self.enhancer.network(list(frames)))
            else:
                out = list(self.enhancer(list(frames), list(cameras)))
            elapsed = self.clock() - t0
        if len(out) != len(frames):
            raise ValueError(f"enhancer returned {len(out)} images for {len(frames)}")
        self.metrics.stage.labels("enhance").observe(elapsed)
        for camera in cameras:
            self.metrics.count_enhanced(camera)
        return out

    def lazy(self, camera: str, filtered: np.ndarray, raw: np.ndarray) -> Picture:
        return Picture(camera, filtered, raw, self)

    def resolve(self, camera: str, filtered: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """One picture now: the network's output, or ``raw`` when it fails (counted, logged)."""
        try:
            out = self.network([filtered], [camera])[0]
            if out.shape != raw.shape:
                raise ValueError(f"enhancer returned shape {out.shape} for a {raw.shape} frame")
            return out
        except Exception as exc:  # noqa: BLE001 - a picture falls back, it never breaks a reader
            self.metrics.engine_failures.labels("enhance").inc()
            self._errors.error("picture", "enhancer failed on a picture of camera %s (showing the "
                               "decoded frame instead): %s: %s", camera, type(exc).__name__, exc)
            return raw


def _read_only(image: np.ndarray) -> np.ndarray:
    image.flags.writeable = False
    return image
