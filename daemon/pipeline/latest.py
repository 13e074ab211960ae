"""The latest-frame slot every source keeps: live streams must never queue.

A source puts every decoded frame; the slot keeps only the newest. A frame overwritten before
the scheduler took it is *skipped*, and :meth:`LatestFrame.put` says so, so the source can count
it (``duskwatch_frames_total{outcome="dropped"}``). Taking does not empty the slot: the
scheduler asks for a frame newer than the one it took last (``after_seq``).

A frame is immutable once put: its array is made read-only, because from then on the
scheduler, the evidence ring, snapshots and clip writers share it by reference. Whoever needs
to draw on a frame draws on a copy.
"""

from __future__ import annotations

import threading

import numpy as np

from daemon.pipeline.frames import Frame


class LatestFrame:
    """One camera's one-slot buffer, safe between the reader thread and the scheduler."""

    def __init__(self, camera: str):
        self.camera = camera
        self._lock = threading.Lock()
        self._frame: Frame | None = None
        self._seq = -1
        self._taken = -1
        self.skipped = 0  # frames overwritten before anyone took them

    def put(self, image: np.ndarray, captured_monotonic: float, captured_wall: float,
            decode_seconds: float = 0.0) -> int:
        """Keep ``image`` as the newest frame (the next ``seq``); returns how many frames this
        overwrote untaken (0 or 1). ``image`` becomes read-only: the caller hands it over."""
        image.flags.writeable = False
        with self._lock:
            skipped = int(self._frame is not None and self._frame.seq > self._taken)
            self.skipped += skipped
            self._seq += 1
            self._frame = Frame(self.camera, image, self._seq, captured_monotonic, captured_wall,
                                decode_seconds)
            return skipped

    def take(self, after_seq: int = -1) -> Frame | None:
        """The newest frame if its ``seq`` is greater than ``after_seq``, else None."""
        with self._lock:
            frame = self._frame
            if frame is None or frame.seq <= after_seq:
                return None
            self._taken = max(self._taken, frame.seq)
            return frame

    @property
    def newest(self) -> Frame | None:
        """The frame in the slot, without taking it."""
        with self._lock:
            return self._frame

    @property
    def frames(self) -> int:
        """Frames put so far."""
        return self._seq + 1
