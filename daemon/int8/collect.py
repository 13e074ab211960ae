"""Calibration frames from the running cameras: one frame per camera every ``every_s`` seconds
at most, as JPEGs beside the f32 IR (:class:`~daemon.int8.sibling.Sibling`), so that they cover
the cameras and the hours they stream. Every ``check_every``-th frame goes to the held-out
``check/`` folder, the rest to ``calib/``. What is on disk counts: a restart resumes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("duskwatch.int8")

JPEG_QUALITY = 92


@dataclass
class FrameCollector:
    """Saves offered frames until ``calib_frames`` + ``check_frames`` are on disk."""

    calib_dir: Path
    check_dir: Path
    calib_frames: int
    check_frames: int
    every_s: float
    _last: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.calib_dir.mkdir(parents=True, exist_ok=True)
        self.check_dir.mkdir(parents=True, exist_ok=True)
        self.calib = len(_jpegs(self.calib_dir))
        self.checks = len(_jpegs(self.check_dir))

    @property
    def count(self) -> int:
        return self.calib + self.checks

    @property
    def complete(self) -> bool:
        return self.calib >= self.calib_frames and self.checks >= self.check_frames

    def due(self, camera: str, now: float) -> bool:
        last = self._last.get(camera)
        return not self.complete and (last is None or now - last >= self.every_s)

    def offer(self, camera: str, image: np.ndarray, now: float | None = None) -> Path | None:
        """Save ``image`` (BGR) when ``camera`` is due; the file written, or None."""
        import cv2

        now = time.monotonic() if now is None else now
        if not self.due(camera, now):
            return None
        to_check = self.checks < self.check_frames and (
            self.calib >= self.calib_frames or self.count % _check_every(self) == 0)
        folder = self.check_dir if to_check else self.calib_dir
        path = folder / f"{camera}-{time.time_ns() // 1_000_000}-{self.count:04d}.jpg"
        tmp = path.with_name(path.stem + ".tmp.jpg")
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            tmp.unlink(missing_ok=True)
            raise OSError(f"cannot write {tmp} (disk full or not writable?)")
        tmp.replace(path)
        self._last[camera] = now
        if to_check:
            self.checks += 1
        else:
            self.calib += 1
        return path

    def check_images(self) -> list[Path]:
        return _jpegs(self.check_dir)

    def clear(self) -> None:
        """Start over (a refused int8 is retried on new frames)."""
        for path in _jpegs(self.calib_dir) + _jpegs(self.check_dir):
            path.unlink(missing_ok=True)
        self.calib = self.checks = 0
        self._last.clear()


def _check_every(c: FrameCollector) -> int:
    """Spread the held-out frames over the collection: one in every N."""
    total = c.calib_frames + c.check_frames
    return max(2, round(total / max(1, c.check_frames)))


def _jpegs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jpg") if not p.name.endswith(".tmp.jpg"))
