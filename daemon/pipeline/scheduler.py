"""The scheduler: the newest frame of each camera -> batches -> :class:`~daemon.pipeline.process.Pipeline`.

:class:`Scheduler` decides *which* frames form a batch: the newest frame of every camera whose
  ``fps`` budget allows one, up to ``max_batch`` frames, waiting at most ``batch_timeout_ms`` for
  the batch to fill after its first frame. The camera it starts polling from rotates every batch,
  so with more ready cameras than batch slots no camera starves.

The scheduler thread owns the camera slots, the gates and the pipeline (engines, sinks, the
enhancer's per-camera state). Other threads never touch them: a reload or a camera change
reaches the loop as a command (:meth:`Scheduler.submit`), applied between two batches. In
debug runs (:mod:`daemon.pipeline.owner`) the slots and the command queue are checked: a
change from another thread while the loop runs raises AssertionError naming both threads.

Frames are never queued: a camera's source keeps only its newest frame, and every frame the
scheduler never took (a gap in the source's ``seq``) is counted as ``dropped``.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from daemon.config import CameraConfig, EventsConfig, LowLightConfig, SchedulerConfig
from daemon.metrics import Metrics
from daemon.pipeline.frames import CameraSource, Frame
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.owner import OwnedDict, Owner
from daemon.pipeline.process import Pipeline
from daemon.pipeline.sinks import SinkSet

if TYPE_CHECKING:
    from daemon.events.sinks import EventSinkSet

log = logging.getLogger("duskwatch.scheduler")

Command = Callable[[], None]


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
        self.owner = Owner("the scheduler's structures")  # bound to the loop's thread
        self._slots: dict[str, CameraSlot] = OwnedDict(self.owner, "Scheduler._slots")
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._rr = 0
        self._heartbeat = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # commands: how other threads change what the loop owns --------------------------------
    def submit(self, command: Command) -> None:
        """Run ``command`` on the scheduler thread between two batches."""
        self._commands.put(command)

    def add_camera(self, slot: CameraSlot, camera: CameraConfig | None = None,
                   on_added: Command | None = None) -> None:
        """One unit, applied between two batches: ``on_added`` (the camera manager creates
        the camera's metric series there), the camera's events settings when ``camera`` is given,
        then its slot, so no frame of it is processed before its series exist."""

        def add() -> None:
            if on_added is not None:
                on_added()
            self.attach(slot, camera)

        self.submit(add)

    def remove_camera(self, name: str, on_removed: Command | None = None) -> None:
        """One unit, applied between two batches: drop the camera's slot, release what the
        pipeline keeps for it, then ``on_removed`` (the camera manager drops the camera's
        metric series there). No batch holding the camera is in flight by then, so nothing
        re-creates its series."""

        def remove() -> None:
            self.detach(name)
            if on_removed is not None:
                on_removed()

        self.submit(remove)

    # on the scheduler thread (inside a command) -------------------------------------------
    def attach(self, slot: CameraSlot, camera: CameraConfig | None = None) -> None:
        """The camera's events settings (when ``camera`` is given), then its slot: polled from
        the next batch on. Only on the loop's thread (a command) while the loop runs."""
        self.owner.check("Scheduler.attach")
        if camera is not None and self.pipeline.events is not None:
            self.pipeline.events.configure_camera(camera)
        self._slots[slot.name] = slot

    def detach(self, name: str) -> None:
        """Drop the camera's slot and what the pipeline keeps for it (loop's thread only)."""
        self.owner.check("Scheduler.detach")
        self._slots.pop(name, None)
        self.pipeline.forget(name)

    def sync(self, timeout: float) -> bool:
        """Wait until every command submitted before this call has been applied; True when
        they were within ``timeout``. While the loop is not running, the caller applies them
        (the loop's thread is then nobody's: before :meth:`start` or after :meth:`stop`)."""
        if not self.running:
            self.apply_commands()
            return True
        done = threading.Event()
        self.submit(done.set)
        return done.wait(timeout)

    def update_camera(self, name: str, fps: float, lowlight: LowLightConfig, mode: str,
                      picture: str | None = None) -> None:
        """New fps budget and gate settings for a camera, keeping its gate's history."""

        def update() -> None:
            slot = self._slots.get(name)
            if slot is not None:
                slot.fps = fps
                slot.gate.reconfigure(lowlight, mode, picture)

        self.submit(update)

    def set_config(self, cfg: SchedulerConfig) -> None:
        self.submit(lambda: setattr(self, "cfg", cfg))

    def replace_sinks(self, sinks: SinkSet) -> None:
        self.submit(lambda: self.pipeline.replace_sinks(sinks))

    def configure_events(self, camera: CameraConfig) -> None:
        """New tracking, zone and line settings of a camera (its tracks and ids are kept)."""
        self.submit(lambda: self.pipeline.events.configure_camera(camera)
                    if self.pipeline.events is not None else None)

    def replace_event_sinks(self, sinks: "EventSinkSet", cfg: EventsConfig | None = None) -> None:
        """Event sinks (and events settings) from now on; the old sinks close on their own
        thread, delivering what they hold."""

        def replace() -> None:
            if self.pipeline.events is None:
                sinks.close(0)
                return
            if cfg is not None:
                self.pipeline.events.set_config(cfg)
            self.pipeline.events.replace_sinks(sinks)

        self.submit(replace)

    def apply_commands(self) -> int:
        """Apply every pending command (on the scheduler thread); how many ran."""
        self.owner.check("the scheduler's command queue")
        n = 0
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return n
            try:
                command()
            except Exception:  # noqa: BLE001 - a failed command must not stop the loop
                log.exception("scheduler: a command failed")
            n += 1

    def slots(self) -> list[CameraSlot]:
        """The cameras the loop polls (a copy; read it on the scheduler thread or in tests)."""
        return list(self._slots.values())

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
        """Ask the loop to end and wait; True when it ended within ``timeout`` (only then may
        the caller close the engines and sinks the loop uses)."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The loop: apply commands, gather a batch, process it, until :meth:`stop`. Its
        thread owns the scheduler's structures while it runs."""
        self.owner.bind()
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            self.owner.release()

    def step(self) -> int:
        """One iteration: apply pending commands, gather one batch (possibly empty) and process
        it; frames processed."""
        self.owner.check("Scheduler.step")
        self._heartbeat = self.clock()
        self.apply_commands()
        batch = self.gather()
        self._heartbeat = self.clock()
        self.pipeline.tick()
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
        slots = list(self._slots.values())
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
        skipped = slot.last_seq >= 0 and frame.seq > slot.last_seq + 1
        if self.count_seq_gaps and skipped:
            self.metrics.count_frames(slot.name, "dropped", frame.seq - slot.last_seq - 1)
        if skipped and now - slot.next_due > slot.period:  # frames waited and we are a period late
            frame = dataclasses.replace(frame, behind=True)
        slot.last_seq = frame.seq
        # Budget: one frame per period; a frame that arrives early waits in the source's slot.
        # After an idle spell the next frame is due half a period later at the earliest.
        slot.next_due = max(slot.next_due + slot.period, now + slot.period / 2)
        return frame

    def _wait_time(self, order, batch, now: float, deadline: float) -> float:
        """Sleep until the next poll, or until the next camera's fps budget allows a frame
        when that is later; never past the deadline."""
        taken = {s.name for s, _ in batch}
        due = min((s.next_due for s in order if s.name not in taken), default=deadline)
        return max(0.0, min(deadline - now, max(self.poll_s, due - now)))
