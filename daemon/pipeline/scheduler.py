"""The scheduler: newest frame of each camera -> batches -> gate -> enhancer -> detector -> sinks.

Two parts, written apart:

* :class:`Pipeline` runs one batch of frames through the engines and reports the results
  (metrics, sinks, the snapshot store). It knows nothing about cameras or timing.
* :class:`Scheduler` decides *which* frames form a batch: the newest frame of every camera whose
  ``fps`` budget allows one, up to ``max_batch`` frames, waiting at most ``batch_timeout_ms`` for
  the batch to fill after its first frame. The camera it starts polling from rotates every batch,
  so with more ready cameras than batch slots no camera starves.

Frames are never queued: a camera's source keeps only its newest frame, and every frame the
scheduler never took (a gap in the source's ``seq``) is counted as ``dropped``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from daemon.config import SchedulerConfig
from daemon.pipeline.frames import CameraSource, Frame
from daemon.pipeline.gate import LowLightGate
from daemon.service.metrics import Metrics
from daemon.pipeline.sinks import Detection, Result, SinkSet

log = logging.getLogger("duskwatch.scheduler")

Detector = Callable[[list[np.ndarray]], Sequence[Any]]
Enhancer = Callable[[list[np.ndarray]], Sequence[np.ndarray]]


# -- results ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """The latest processed frame of one camera (the enhanced picture when it was enhanced)."""

    camera: str
    image: np.ndarray
    result: Result


def to_detections(det: Any, names: dict[int, str]) -> tuple[Detection, ...]:
    """Convert the detector's per-image output (``.boxes``, ``.scores``, ``.class_ids``)."""
    boxes = np.asarray(det.boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(det.scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(det.class_ids).reshape(-1).astype(int)
    if not len(boxes) == len(scores) == len(class_ids):
        raise ValueError(
            f"detector output is inconsistent: {len(boxes)} boxes, {len(scores)} scores, "
            f"{len(class_ids)} class ids"
        )
    own = getattr(det, "names", None)
    out = []
    for i, (box, score, cid) in enumerate(zip(boxes, scores, class_ids)):
        if isinstance(own, (list, tuple)) and len(own) == len(boxes):
            name = str(own[i])
        elif isinstance(own, dict) and cid in own:
            name = str(own[cid])
        else:
            name = names.get(int(cid), str(int(cid)))
        out.append(Detection(tuple(float(v) for v in box), float(score), int(cid), name))
    return tuple(out)


class RateLimitedLog:
    """Log a recurring error at most once per ``interval_s`` per key, counting the rest."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0):
        self.logger, self.interval = logger, interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if key in self._last and now - self._last[key] < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        more = self._suppressed.pop(key, 0)
        suffix = f" ({more} more since the last message)" if more else ""
        self.logger.error(msg + suffix, *args)
        self._last[key] = now


# -- one batch through the engines --------------------------------------------------------------
class Pipeline:
    """Runs batches: gate -> enhancer (dark frames only) -> detector (all) -> metrics and sinks."""

    def __init__(
        self,
        detector: Detector,
        metrics: Metrics,
        sinks: SinkSet,
        enhancer: Enhancer | None = None,
        class_names: dict[int, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.detector = detector
        self.enhancer = enhancer
        self.metrics = metrics
        self.sinks = sinks
        self.names = dict(class_names if class_names is not None else getattr(detector, "names", {}) or {})
        self.clock = clock
        self._snapshots: dict[str, Snapshot] = {}
        self._snap_lock = threading.Lock()
        self._errors = RateLimitedLog(log)

    # public ---------------------------------------------------------------------------------
    def process(self, frames: Sequence[Frame], gates: Sequence[LowLightGate]) -> list[Result]:
        """Run one batch; return the results of the frames that made it through."""
        if not frames:
            return []
        for f in frames:
            self.metrics.stage.labels("decode").observe(f.decode_seconds)
        images = [f.image for f in frames]
        wants = [self._gate(f, g) for f, g in zip(frames, gates)]
        ok = [True] * len(frames)
        enhanced = self._enhance(frames, images, wants, ok)
        live = [i for i in range(len(frames)) if ok[i]]
        dets = self._detect(frames, images, live)
        if dets is None:
            return []
        return [self._finish(frames[i], images[i], enhanced[i], d) for i, d in zip(live, dets)]

    def snapshot(self, camera: str) -> Snapshot | None:
        with self._snap_lock:
            return self._snapshots.get(camera)

    def forget(self, camera: str) -> None:
        with self._snap_lock:
            self._snapshots.pop(camera, None)

    # stages ---------------------------------------------------------------------------------
    def _gate(self, frame: Frame, gate: LowLightGate) -> bool:
        want = gate.update(frame.image)
        self.metrics.set_lowlight(frame.camera, gate.lowlight)
        return want

    def _enhance(self, frames, images, wants, ok) -> list[bool]:
        enhanced = [False] * len(frames)
        idx = [i for i, w in enumerate(wants) if w]
        if not idx or self.enhancer is None:
            return enhanced
        t0 = self.clock()
        try:
            batch = [images[i] for i in idx]
            if getattr(self.enhancer, "temporal", False):  # per-camera state (engines.enhancer)
                out = list(self.enhancer(batch, streams=[frames[i].camera for i in idx]))
            else:
                out = list(self.enhancer(batch))
            if len(out) != len(idx):
                raise ValueError(f"enhancer returned {len(out)} images for {len(idx)}")
        except Exception as exc:  # noqa: BLE001 - count, log, go on with the next batch
            self._engine_failed("enhance", [frames[i] for i in idx], exc)
            for i in idx:
                ok[i] = False
            return enhanced
        self.metrics.stage.labels("enhance").observe(self.clock() - t0)
        for i, img in zip(idx, out):
            images[i] = img
            enhanced[i] = True
            self.metrics.count_enhanced(frames[i].camera)
        return enhanced

    def _detect(self, frames, images, live) -> list[Any] | None:
        if not live:
            return None
        t0 = self.clock()
        try:
            dets = list(self.detector([images[i] for i in live]))
            if len(dets) != len(live):
                raise ValueError(f"detector returned {len(dets)} results for {len(live)} images")
            dets = [to_detections(d, self.names) for d in dets]
        except Exception as exc:  # noqa: BLE001
            self._engine_failed("detect", [frames[i] for i in live], exc)
            return None
        self.metrics.stage.labels("detect").observe(self.clock() - t0)
        return dets

    def _finish(self, frame: Frame, image: np.ndarray, enhanced: bool, dets) -> Result:
        result = Result(frame.camera, frame.seq, frame.captured_wall, enhanced, dets)
        age = max(0.0, self.clock() - frame.captured_monotonic)
        m = self.metrics
        m.stage.labels("end_to_end").observe(age)
        m.set_frame_age(frame.camera, age)
        m.count_frames(frame.camera, "processed")
        for d in dets:
            m.count_detection(frame.camera, d.class_name)
        with self._snap_lock:
            self._snapshots[frame.camera] = Snapshot(frame.camera, image, result)
        self.sinks.write(result)
        return result

    def _engine_failed(self, stage: str, frames: Sequence[Frame], exc: Exception) -> None:
        self.metrics.engine_failures.labels(stage).inc()
        for f in frames:
            self.metrics.count_frames(f.camera, "failed")
        self._errors.error(stage, "%s engine failed on a batch of %d: %s: %s",
                           stage, len(frames), type(exc).__name__, exc)


# -- which frames form a batch ------------------------------------------------------------------
@dataclass
class CameraSlot:
    """The scheduler's view of one camera: its source, gate and fps budget."""

    name: str
    source: CameraSource
    gate: LowLightGate
    fps: float
    last_seq: int = -1
    next_due: float = 0.0
    taken: int = field(default=0)

    @property
    def period(self) -> float:
        return 1.0 / self.fps


class Scheduler:
    """Forms batches from the newest frame of each camera and runs them through a pipeline."""

    def __init__(
        self,
        pipeline: Pipeline,
        cfg: SchedulerConfig,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.002,
        idle_s: float = 0.1,
        count_seq_gaps: bool = True,
    ):
        self.pipeline = pipeline
        self.cfg = cfg
        self.metrics = metrics
        self.clock = clock
        self.poll_s = poll_s
        self.idle_s = idle_s
        self.count_seq_gaps = count_seq_gaps
        self._slots: dict[str, CameraSlot] = {}
        self._lock = threading.Lock()
        self._rr = 0
        self._heartbeat = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # cameras --------------------------------------------------------------------------------
    def add_camera(self, slot: CameraSlot) -> None:
        with self._lock:
            self._slots[slot.name] = slot

    def remove_camera(self, name: str) -> CameraSlot | None:
        with self._lock:
            return self._slots.pop(name, None)

    def slots(self) -> list[CameraSlot]:
        with self._lock:
            return list(self._slots.values())

    def slot(self, name: str) -> CameraSlot | None:
        with self._lock:
            return self._slots.get(name)

    # liveness -------------------------------------------------------------------------------
    def heartbeat(self) -> float:
        """clock() of the loop's last iteration."""
        return self._heartbeat

    # running --------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="duskwatch-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the loop to end and wait; True when it ended within ``timeout``."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def run(self) -> None:
        """The loop: gather a batch, process it, until :meth:`stop`."""
        while not self._stop.is_set():
            self.step()

    def step(self) -> int:
        """One iteration: gather one batch (possibly empty) and process it; frames processed."""
        self._heartbeat = self.clock()
        batch = self.gather()
        self._heartbeat = self.clock()
        if not batch:
            return 0
        results = self.pipeline.process([f for _, f in batch], [s.gate for s, _ in batch])
        self._heartbeat = self.clock()
        return len(results)

    def gather(self) -> list[tuple[CameraSlot, Frame]]:
        """Up to ``max_batch`` newest frames, one per camera whose fps budget allows one.

        Waits up to ``idle_s`` for a first frame, then up to ``batch_timeout_ms`` more for the
        batch to fill. Polling starts at a camera that rotates every call (fairness).
        """
        slots = self.slots()
        if not slots:
            self._stop.wait(self.idle_s)
            return []
        start = self._rr % len(slots)
        self._rr += 1
        order = slots[start:] + slots[:start]
        batch: list[tuple[CameraSlot, Frame]] = []
        deadline = self.clock() + self.idle_s
        filling = False
        while not self._stop.is_set():
            self._poll(order, batch)
            now = self.clock()
            if batch and not filling:  # first frame in: the batch may fill for batch_timeout
                filling = True
                deadline = min(deadline, now + self.cfg.batch_timeout_ms / 1000.0)
            if len(batch) >= min(self.cfg.max_batch, len(order)) or now >= deadline:
                break
            self._stop.wait(self._wait_time(order, batch, now, deadline))
        return batch

    def _poll(self, order: list[CameraSlot], batch: list[tuple[CameraSlot, Frame]]) -> None:
        taken = {s.name for s, _ in batch}
        for slot in order:
            if len(batch) >= self.cfg.max_batch:
                return
            if slot.name in taken:
                continue
            frame = self._take(slot)
            if frame is not None:
                batch.append((slot, frame))

    def _take(self, slot: CameraSlot) -> Frame | None:
        now = self.clock()
        if now < slot.next_due:
            return None
        try:
            frame = slot.source.latest(slot.last_seq)
        except Exception as exc:  # noqa: BLE001 - a broken source must not stop the loop
            log.error("camera %s: latest() failed: %s: %s", slot.name, type(exc).__name__, exc)
            return None
        if frame is None:
            return None
        if self.count_seq_gaps and slot.last_seq >= 0 and frame.seq > slot.last_seq + 1:
            self.metrics.count_frames(slot.name, "dropped", frame.seq - slot.last_seq - 1)
        slot.last_seq = frame.seq
        # Budget: one frame per period; a frame that arrives early waits in the source's slot.
        # After an idle spell the next frame is due half a period later at the earliest.
        slot.next_due = max(slot.next_due + slot.period, now + slot.period / 2)
        slot.taken += 1
        return frame

    def _wait_time(self, order, batch, now: float, deadline: float) -> float:
        """Sleep until the next poll, or until the next camera's fps budget allows a frame
        when that is later; never past the deadline."""
        taken = {s.name for s, _ in batch}
        due = min((s.next_due for s in order if s.name not in taken), default=deadline)
        return max(0.0, min(deadline - now, max(self.poll_s, due - now)))
