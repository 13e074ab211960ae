"""What the scheduler thread publishes per camera for other threads to read: the newest
processed frame (drawn for ``/snapshot/<camera>.jpg``) and the gate's state (``/cameras``).

The scheduler thread writes after each frame; HTTP threads read immutable values under a lock.
Drawing and JPEG encoding happen on the reader's side, on a copy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from daemon.pipeline.frames import Result
from daemon.pipeline.picture import Image, as_array


@dataclass(frozen=True)
class Snapshot:
    """The latest processed frame of one camera: the picture people see (``shown``: enhanced
    for a low-light camera whose ``picture`` is enhanced, a lazy :class:`Picture` made when
    first drawn) and, when that is not the decoded frame, the decoded frame too (``raw``)."""

    camera: str
    shown: Image
    result: Result
    raw: np.ndarray | None = None

    @property
    def image(self) -> np.ndarray:
        """The picture people see, made now if nobody looked at it before."""
        return as_array(self.shown)

    def picture(self, which: str = "shown") -> np.ndarray:
        """``shown`` (the default picture) or ``raw`` (the decoded frame)."""
        return self.raw if which == "raw" and self.raw is not None else self.image


@dataclass(frozen=True)
class GateView:
    """A camera's gate as last seen by the scheduler thread."""

    lowlight: bool
    luma: float | None
    frames_taken: int


class SnapshotStore:
    """One :class:`Snapshot` and one :class:`GateView` per camera: written by the scheduler
    thread, read by any."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshots: dict[str, Snapshot] = {}
        self._gates: dict[str, GateView] = {}

    def put_gate(self, camera: str, view: GateView) -> None:
        with self._lock:
            self._gates[camera] = view

    def gate(self, camera: str) -> GateView | None:
        with self._lock:
            return self._gates.get(camera)

    def put(self, snap: Snapshot) -> None:
        """Publish the camera's latest snapshot; its image becomes read-only (HTTP threads
        draw on copies of it; a :class:`Picture` is read-only once made)."""
        if isinstance(snap.shown, np.ndarray):
            snap.shown.flags.writeable = False
        with self._lock:
            self._snapshots[snap.camera] = snap

    def get(self, camera: str) -> Snapshot | None:
        with self._lock:
            return self._snapshots.get(camera)

    def forget(self, camera: str) -> None:
        with self._lock:
            self._snapshots.pop(camera, None)
            self._gates.pop(camera, None)


def annotate(snap: Snapshot, picture: str = "shown") -> np.ndarray:
    """The snapshot's frame (``picture``: the one people see, or ``raw``: the decoded frame) with
    its boxes, class names and scores drawn on a copy."""
    import cv2

    img = np.ascontiguousarray(snap.picture(picture).copy())
    thick = max(1, round(max(img.shape[:2]) / 500))
    for det in snap.result.detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        color = class_color(det.class_id)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick)
        label = f"{det.class_name} {det.score:.2f}"
        cv2.putText(img, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thick, color, thick, cv2.LINE_AA)
    tag = f"{snap.camera} seq {snap.result.seq}" + (" enhanced" if snap.result.enhanced else "")
    scale = 0.5 * thick
    (w, h), base = cv2.getTextSize(tag, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    cv2.rectangle(img, (0, 0), (w + 16, h + base + 12), (0, 0, 0), -1)
    cv2.putText(img, tag, (8, h + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), thick,
                cv2.LINE_AA)
    return img


def class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, bright BGR colour per class id."""
    rng = np.random.default_rng(class_id + 17)
    return tuple(int(c) for c in rng.integers(64, 256, size=3))


def encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
