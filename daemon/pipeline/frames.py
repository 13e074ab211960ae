"""What flows through the pipeline: a :class:`Frame` in from a camera source, a :class:`Result`
out to the sinks; and the seam that creates sources.

A source owns one camera: it connects, decodes, reconnects, and keeps only the newest frame in
a one-slot buffer (live streams must never queue). The scheduler polls :meth:`CameraSource.latest`
and never blocks on a camera. Tests inject fake producers through :data:`SourceFactory`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import numpy as np

from daemon.config import CameraConfig
from engines.detections import Detections


class CameraState(str, enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKING_OFF = "backing_off"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Frame:
    camera: str
    image: np.ndarray  # HxWx3 uint8 BGR (monochrome streams are expanded to 3 channels)
    seq: int  # per-source frame number, increasing by one for every decoded frame
    captured_monotonic: float  # time.monotonic() when the frame left the decoder
    captured_wall: float  # time.time() at the same moment
    decode_seconds: float = 0.0  # CPU time the reader spent on this frame (not the wait for it)
    behind: bool = False  # the scheduler took it a whole fps period late: views are shed, not frames


@dataclass(frozen=True)
class Result:
    """One processed frame: its detections, whether the gate picked it for the low-light views
    (``lowlight``) and whether the enhancer's output is used, for a view or for the picture
    people see (``enhanced``; the picture is made when first looked at:
    :mod:`daemon.pipeline.picture`)."""

    camera: str
    seq: int
    captured_wall: float
    enhanced: bool
    detections: Detections = field(default_factory=Detections.empty)
    lowlight: bool = False

    def to_dict(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.captured_wall, tz=timezone.utc)
        return {
            "camera": self.camera,
            "time": when.isoformat(timespec="milliseconds"),
            "epoch": round(self.captured_wall, 3),
            "seq": self.seq,
            "lowlight": self.lowlight,
            "enhanced": self.enhanced,
            "detections": self.detections.to_json(),
        }


@dataclass(frozen=True)
class StateChange:
    camera: str
    old: CameraState
    new: CameraState
    reason: str = ""  # credential-free, human readable
    at: float = field(default=0.0)


class SourceEvents(Protocol):
    """Callbacks a source reports through (the service wires them to metrics and logs)."""

    def on_state(self, change: StateChange) -> None: ...
    def on_frame_skipped(self, camera: str, count: int) -> None: ...
    def on_reconnect(self, camera: str) -> None: ...
    def on_decoder_killed(self, camera: str) -> None: ...


class CameraSource(Protocol):
    name: str

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def latest(self, after_seq: int = -1) -> Frame | None:
        """The newest frame if its seq is greater than ``after_seq``, else ``None``."""
        ...

    @property
    def state(self) -> CameraState: ...

    def status(self) -> dict:
        """JSON-able state for /cameras: no credentials."""
        ...

    def heartbeat(self) -> float:
        """time.monotonic() of the reader thread's last sign of life."""
        ...


SourceFactory = Callable[[CameraConfig, SourceEvents], CameraSource]
