"""The int8 upgrade from a folder of the operator's frames, at once (``install-service
--calib-dir DIR``): the same layout, build, check and verdict as the daemon's upgrade
(:mod:`daemon.int8.upgrader`), with the frames read from ``DIR`` instead of the cameras."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from daemon.int8 import check as int8_check
from daemon.int8.build import run_build
from daemon.int8.collect import FrameCollector
from daemon.int8.sibling import Sibling

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".ts", ".webm"}


class FolderError(ValueError):
    """The folder has no frame to calibrate on (the message says what it looked for)."""


def folder_frames(folder: Path, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """Up to ``limit`` (name, BGR frame) from the images and videos in ``folder`` (recursive):
    images spread over the sorted list, videos sampled evenly over their length."""
    import cv2

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in
                   IMAGE_SUFFIXES | VIDEO_SUFFIXES) if Path(folder).is_dir() else []
    if not files:
        raise FolderError(f"--calib-dir {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          f"or videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in it")
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    per_video = (limit - min(len(images), limit // 2)) // max(1, len(videos))
    for path in videos:
        cap = cv2.VideoCapture(str(path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or per_video
        step = max(1, total // max(1, per_video))
        for i in range(per_video):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i * step)
            ok, frame = cap.read()
            if not ok:
                break
            yield path.stem, frame
        cap.release()
    picks = np.linspace(0, len(images) - 1, min(len(images), limit // 2 if videos else limit))
    for i in sorted(set(picks.round().astype(int).tolist())) if images else []:
        img = cv2.imread(str(images[i]), cv2.IMREAD_COLOR)
        if img is not None:
            yield images[i].stem, img


def upgrade_from_folder(f32: Path, folder: Path, settings: Any, open_detector: Callable,
                        say: Callable[[str], None] = print,
                        conf: float = 0.25) -> int8_check.CheckResult:
    """Collect ``folder``'s frames beside ``f32``, build the int8 IR, check it, record the
    verdict; the check's result. Raises BuildFailed / FolderError / OSError on failure."""
    sib = Sibling(Path(f32))
    collector = FrameCollector(sib.calib, sib.check, settings.calib_frames,
                               settings.check_frames, every_s=0.0)
    collector.clear()
    for n, (name, frame) in enumerate(folder_frames(folder, settings.calib_frames
                                                    + settings.check_frames)):
        collector.offer(f"{name}-{n}", frame, now=float(n))
    if collector.calib == 0 or collector.checks == 0:
        raise FolderError(f"--calib-dir {folder}: {collector.count} frames could be read; at "
                          "least 2 are needed (one to calibrate, one to check)")
    say(f"int8: {collector.calib} calibration and {collector.checks} check frames from {folder}")
    argv = settings.build_argv(sib.f32, sib.calib, sib.int8, settings.calib_frames)
    say(f"int8: building {sib.int8} (output in {sib.build_log})")
    run_build(argv, sib.build_log, threading.Event(), settings.build_timeout_s, settings.nice)
    low = conf * int8_check.SCORE_BAND
    f32_det = open_detector(sib.f32, low)
    int8_det = open_detector(sib.int8, low)
    try:
        result = int8_check.check(collector.check_images(), f32_det, int8_det, conf,
                                  settings.min_agreement, settings.min_boxes)
    finally:
        f32_det.close()
        int8_det.close()
    sib.record_check({**result.to_json(), "at": round(time.time(), 3)})
    if result.passed:  # nothing left beside the engines for uninstall to trip over
        shutil.rmtree(sib.frames, ignore_errors=True)
    return result
