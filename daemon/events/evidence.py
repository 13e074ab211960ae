"""Evidence: an annotated snapshot per event and short clips around events, under a folder that
never outgrows its quota.

* :class:`FrameRing` (per camera, scheduler thread): the last ``pre_s`` seconds of processed
  frames, scaled down to ``clip_width``; the pre-roll of the next clip.
* :class:`Evidence` (scheduler thread): decides what to write. An event of a ``clip_types``
  type starts a clip (pre-roll from the ring) or extends the camera's open clip to
  ``post_s`` after it, up to ``max_clip_s``; every later frame of the camera goes to the clip.
* :class:`EvidenceWriter` (its own thread): encodes JPEGs and H.264 (PyAV's libx264 when
  available, else OpenCV's MPEG-4) from a bounded queue (a full queue drops the job and counts
  it as ``duskwatch_sink_events_dropped_total{sink="evidence"}``).
* :class:`~daemon.events.retention.Retention` (its own thread, started and closed with the
  writer): files older than ``max_age_days`` go, then the oldest until the folder is under
  ``max_bytes``, in passes bounded in time, never on the thread that encodes clips.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from daemon.config import EvidenceConfig
from daemon.events.retention import Retention, remove_empty_parents, scan, victims
from daemon.pipeline.picture import Image, Picture, as_array
from daemon.pipeline.ratelog import RateLimitedLog

log = logging.getLogger("duskwatch.evidence")

EVIDENCE_SINK = "evidence"
Boxes = list[tuple[tuple[float, float, float, float], str]]
Shapes = list[tuple[str, np.ndarray, bool]]  # (name, (K, 2) pixel points, closed: a zone)


@dataclass
class RingFrame:
    t: float
    image: Image  # scaled to clip_width (a lazy Picture is made when the clip encodes it)
    scale: float  # clip pixels per frame pixel
    boxes: Boxes


class FrameRing:
    """The newest frames of one camera covering ``seconds`` (at most ``max_frames``)."""

    def __init__(self, seconds: float, max_frames: int = 600):
        self.seconds = seconds
        self._frames: deque[RingFrame] = deque(maxlen=max_frames)

    def push(self, frame: RingFrame) -> None:
        self._frames.append(frame)
        while self._frames and frame.t - self._frames[0].t > self.seconds:
            self._frames.popleft()

    def frames(self) -> list[RingFrame]:
        return list(self._frames)


# -- jobs for the writer thread -----------------------------------------------------------------
@dataclass
class SnapshotJob:
    path: Path
    image: Image  # full-resolution frame (a reference; made if lazy, drawn on a copy)
    box: tuple[float, float, float, float]
    label: str
    quality: int
    shapes: Shapes = field(default_factory=list)  # the camera's zones and lines, drawn too


@dataclass
class ClipOpen:
    key: str
    path: Path
    frames: list[RingFrame]
    fps: float
    shapes: Shapes = field(default_factory=list)


@dataclass
class ClipFrame:
    key: str
    frame: RingFrame


@dataclass
class ClipClose:
    key: str


@dataclass
class _OpenClip:
    path: Path
    started: float
    end_t: float
    key: str


class Evidence:
    """Per-camera rings and open clips; hands the writing to :class:`EvidenceWriter`."""

    def __init__(self, cfg: EvidenceConfig, writer: "EvidenceWriter"):
        self.cfg = cfg
        self.writer = writer
        self._rings: dict[str, FrameRing] = {}
        self._fps: dict[str, float] = {}
        self._open: dict[str, _OpenClip] = {}

    def set_config(self, cfg: EvidenceConfig) -> None:
        self.cfg = cfg
        self.writer.set_config(cfg)
        for ring in self._rings.values():
            ring.seconds = cfg.pre_s

    def add_camera(self, camera: str, fps: float) -> None:
        self._rings.setdefault(camera, FrameRing(self.cfg.pre_s))
        self._fps[camera] = fps

    def forget(self, camera: str) -> None:
        self._close(camera)
        self._rings.pop(camera, None)
        self._fps.pop(camera, None)

    def close(self) -> None:
        for camera in list(self._open):
            self._close(camera)

    # per event / per frame ---------------------------------------------------------------------
    def snapshot_path(self, camera: str, event_id: str, wall: float) -> Path | None:
        return self._path(camera, event_id, wall, ".jpg") if self.cfg.snapshots else None

    def write_snapshot(self, path: Path, image: Image, box, label: str,
                       shapes: Shapes = ()) -> bool:
        """Queue the snapshot; False when the queue was full (the job dropped and counted: the
        file will not exist, so the event must not name it)."""
        return self.writer.submit(SnapshotJob(path, image, box, label, self.cfg.jpeg_quality, list(shapes)))

    def clip_for(self, camera: str, event_type: str, event_id: str, t: float, wall: float,
                 shapes: Shapes = ()) -> Path | None:
        """The clip an event at ``t`` belongs to: the camera's open one (extended), or a new one
        with the ring's pre-roll; None when clips are off for this type, or when the writer's
        queue was full and dropped the new clip (the next event tries again)."""
        if not self.cfg.clips or event_type not in self.cfg.clip_types:
            return None
        clip = self._open.get(camera)
        if clip is not None and t - clip.started < self.cfg.max_clip_s:
            clip.end_t = max(clip.end_t, t + self.cfg.post_s)
            return clip.path
        self._close(camera)
        path = self._path(camera, event_id, wall, ".mp4")
        key = f"{camera}:{event_id}"
        pre = self._rings[camera].frames() if camera in self._rings else []
        started = pre[0].t if pre else t
        if not self.writer.submit(ClipOpen(key, path, pre, self._fps.get(camera, 10.0), list(shapes))):
            return None
        self._open[camera] = _OpenClip(path, started, t + self.cfg.post_s, key)
        return path

    def push_frame(self, camera: str, t: float, image: Image, boxes: Boxes) -> None:
        """A processed frame: into the ring, and into the open clip while it runs."""
        if not self.cfg.clips:
            return
        frame = _scaled(t, image, boxes, self.cfg.clip_width)
        ring = self._rings.setdefault(camera, FrameRing(self.cfg.pre_s))
        ring.push(frame)
        clip = self._open.get(camera)
        if clip is None:
            return
        if t > clip.end_t or t - clip.started > self.cfg.max_clip_s:
            self._close(camera)
        else:
            self.writer.submit(ClipFrame(clip.key, frame))

    def tick(self, now: float) -> None:
        """Close clips whose post-roll ended (for cameras that stopped sending frames)."""
        for camera, clip in list(self._open.items()):
            if now > clip.end_t + 1.0:
                self._close(camera)

    def _close(self, camera: str) -> None:
        clip = self._open.pop(camera, None)
        if clip is not None:
            self.writer.submit(ClipClose(clip.key), force=True)

    def _path(self, camera: str, event_id: str, wall: float, suffix: str) -> Path:
        day = datetime.fromtimestamp(wall, tz=timezone.utc).strftime("%Y-%m-%d")
        return Path(self.cfg.dir) / camera / day / f"{event_id}{suffix}"


def _scaled(t: float, image: Image, boxes: Boxes, width: int) -> RingFrame:
    """The frame at the clip's width (even sides); a lazy picture stays lazy, scaled."""
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, width / float(w))
    new_w, new_h = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    small = image
    if (new_w, new_h) != (w, h):
        small = image.scaled(new_w, new_h) if isinstance(image, Picture) else \
            cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return RingFrame(t, small, new_w / float(w), boxes)


# -- the writer thread --------------------------------------------------------------------------
class EvidenceWriter:
    """Writes snapshots and clips from a bounded queue on its own thread; its
    :attr:`retention` keeps the folder within its quota on another."""

    def __init__(self, cfg: EvidenceConfig, on_drop: Callable[[str], None] = lambda sink: None,
                 retention_interval_s: float = 60.0, retention: Retention | None = None):
        self.cfg = cfg
        self._on_drop = on_drop
        # One FIFO for every job, so that a clip's close always comes after its open and frames;
        # the bound applies to the jobs that may be dropped (snapshots, clip opens and frames),
        # never to closes. (Closes used to jump the queue when it was full: a close that
        # overtook its open left that encoder, its x264 threads and buffers open for good.)
        self._jobs: deque = deque()
        self._droppable = 0
        self._max_jobs = cfg.queue_size
        self._cond = threading.Condition()
        self._clips: dict[str, object] = {}
        self.retention = retention or Retention(
            lambda: self.cfg, interval_s=retention_interval_s,
            min_gap_s=max(0.05, min(5.0, retention_interval_s)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="duskwatch-evidence", daemon=True)
        self.written: int = 0
        self.dropped: int = 0
        self._errors = RateLimitedLog(log)

    def set_config(self, cfg: EvidenceConfig) -> None:
        self.cfg = cfg

    def start(self) -> None:
        self._thread.start()
        self.retention.start()

    @property
    def open_clips(self) -> int:
        """Clips being written (an encoder each)."""
        return len(self._clips)

    def submit(self, job, force: bool = False) -> bool:
        """Queue ``job`` behind every earlier one; when ``queue_size`` droppable jobs wait,
        drop it and count the drop, unless ``force`` (a clip's close is never dropped)."""
        with self._cond:
            full = not force and self._droppable >= self._max_jobs
            if not full:
                self._jobs.append((job, not force))
                self._droppable += not force
                self._cond.notify()
        if full:
            self.dropped += 1
            self._on_drop(EVIDENCE_SINK)
        return not full

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (within ``timeout``), close open clips, stop the thread."""
        self._stop.set()
        self.retention.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():  # still encoding: its clips stay .part files
            log.warning("evidence: the writer did not finish within %.1f s", timeout)
            return
        for key in list(self._clips):
            self._finish_clip(key)

    def _run(self) -> None:
        while True:
            job = self._next()
            if job is None:
                if self._stop.is_set():
                    return
                continue
            try:
                self._do(job)
            except Exception as exc:  # noqa: BLE001 - one bad file never stops the writer
                self._errors.error(type(job).__name__, "evidence: %s failed: %s: %s",
                                   type(job).__name__, type(exc).__name__, exc)

    def _next(self):
        with self._cond:
            if not self._jobs:
                self._cond.wait(0.2)
            if not self._jobs:
                return None
            job, droppable = self._jobs.popleft()
            self._droppable -= droppable
            return job

    def _do(self, job) -> None:
        if isinstance(job, SnapshotJob):
            self._snapshot(job)
        elif isinstance(job, ClipOpen):
            self._clips[job.key] = ClipEncoder(job.path, job.fps, job.shapes)
            for frame in job.frames:
                self._clips[job.key].write(frame)
        elif isinstance(job, ClipFrame):
            enc = self._clips.get(job.key)
            if enc is not None:
                enc.write(job.frame)
        elif isinstance(job, ClipClose):
            self._finish_clip(job.key)

    def _snapshot(self, job: SnapshotJob) -> None:
        import cv2

        img = np.ascontiguousarray(as_array(job.image).copy())
        thick = max(2, round(max(img.shape[:2]) / 400))
        draw_shapes(img, job.shapes, 1.0, thick)
        draw_box(img, job.box, job.label, thick)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), job.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        _write_atomic(job.path, buf.tobytes())
        self.written += 1

    def _finish_clip(self, key: str) -> None:
        enc = self._clips.pop(key, None)
        if enc is not None:
            enc.close()  # releases the encoder even when finishing the file fails
            self.written += 1
            self.retention.poke()  # a new file: check the quota soon


def draw_shapes(img: np.ndarray, shapes: Shapes, scale: float, thick: int) -> None:
    """The camera's zones (closed, blue) and lines (open, magenta) with their names."""
    import cv2

    for name, points, closed in shapes:
        pts = np.round(np.asarray(points) * scale).astype(np.int32).reshape(-1, 1, 2)
        color = (255, 128, 0) if closed else (255, 0, 255)
        cv2.polylines(img, [pts], closed, color, max(1, thick // 2), cv2.LINE_AA)
        x, y = (int(v) for v in pts[0, 0])
        cv2.putText(img, name, (max(0, x + 3), max(12, y + 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * max(1, thick), color, 1, cv2.LINE_AA)


def draw_box(img: np.ndarray, box, label: str, thick: int) -> None:
    import cv2

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 255), thick)
    if label:
        scale, weight = 0.35 * thick, max(1, thick // 2)
        (w, h), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
        x = max(0, min(x1, img.shape[1] - w - 2))  # keep the label inside the picture
        y = y1 - 5 if y1 - 5 >= h else min(img.shape[0] - 2, y2 + h + 5)
        cv2.putText(img, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 255, 255), weight,
                    cv2.LINE_AA)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    os.replace(part, path)


class ClipEncoder:
    """One clip being written: H.264 in MP4 through PyAV (libx264), or OpenCV's MPEG-4 when
    PyAV or libx264 is missing. Written to ``<path>.part`` and renamed when closed."""

    def __init__(self, path: Path, fps: float, shapes: Shapes = ()):
        self.path = path
        self.shapes = list(shapes)
        self.part = path.with_name(path.name + ".part")
        self.fps = max(1, min(60, round(fps)))
        self._av = None
        self._stream = None
        self._cv = None
        self._size: tuple[int, int] | None = None
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: RingFrame) -> None:
        img = np.ascontiguousarray(as_array(frame.image).copy())
        draw_shapes(img, self.shapes, frame.scale, 1)
        for box, label in frame.boxes:
            draw_box(img, [v * frame.scale for v in box], label, 1)
        if self._size is None:
            self._open(img.shape[1], img.shape[0])
        if (img.shape[1], img.shape[0]) != self._size:
            import cv2

            img = cv2.resize(img, self._size)
        if self._av is not None:
            import av

            for packet in self._stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                self._av.mux(packet)
        else:
            self._cv.write(img)

    def _open(self, w: int, h: int) -> None:
        self._size = (w, h)
        try:
            import av

            container = av.open(str(self.part), mode="w", format="mp4",
                                options={"movflags": "+faststart"})
            stream = container.add_stream("libx264", rate=self.fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "28"}
            self._av, self._stream = container, stream
            return
        except Exception as exc:  # noqa: BLE001 - no PyAV / no libx264: MPEG-4 through OpenCV
            log.warning("evidence: H.264 through PyAV unavailable (%s); writing MPEG-4", exc)
        import cv2

        self._cv = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        if not self._cv.isOpened():
            raise RuntimeError(f"cannot open a video writer for {self.path}")

    def close(self) -> None:
        if self._av is not None:
            try:
                for packet in self._stream.encode():
                    self._av.mux(packet)
            finally:
                self._av.close()  # the codec's threads and buffers go with the container
        elif self._cv is not None:
            self._cv.release()
        else:
            return  # no frame came: no file
        os.replace(self.part, self.path)


def enforce_retention(root: Path, max_age_s: float, max_bytes: int,
                      now: float | None = None) -> list[Path]:
    """One whole retention pass at once (tests, tools; the writer's own runs in bounded steps,
    :class:`~daemon.events.retention.Retention`): delete evidence under ``root`` older than
    ``max_age_s``, then the oldest files until the rest fits in ``max_bytes``; empty day
    folders go too. Files being written (``*.part``) are left alone. Returns the deleted files."""
    root = Path(root)
    if not root.is_dir():
        return []
    doomed = victims(list(scan(root)), time.time() if now is None else now, max_age_s, max_bytes)
    for p in doomed:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    remove_empty_parents(root, doomed)
    return [Path(p) for p in doomed]
