"""The cameras: per camera one :class:`CameraUnit` (its source, slot, gate and metric series),
added and removed as one unit on the scheduler's thread.

Any thread asks (:meth:`CameraManager.add`, :meth:`~CameraManager.remove`,
:meth:`~CameraManager.update`); each request is one scheduler command, so the unit's parts
change together between two batches:

- **add**: the camera's metric series, its events settings and slot, the unit in the table,
  the table published, then the source (reader thread) started;
- **remove**: the slot and the pipeline's state for the camera, its metric series (unless a
  supervisor restart keeps its counters), the unit out of the table, the table published, then
  the source stopped on a thread of its own (:meth:`~CameraManager.wait_stopped` waits for it).

The table is the scheduler thread's (checked in debug runs, :mod:`daemon.pipeline.owner`);
other threads read :meth:`CameraManager.units`, an immutable mapping replaced as a whole after
each change. A source's events (state changes, skips, reconnects) count only while its unit is
the one published, so a removed or replaced reader changes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from daemon.config import CameraConfig, LowLightConfig
from daemon.metrics import Metrics
from daemon.pipeline.frames import CameraSource, CameraState, SourceFactory, StateChange
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.owner import OwnedDict
from daemon.pipeline.scheduler import CameraSlot, Scheduler

log = logging.getLogger("duskwatch.service")  # the name its lines always had in the journal


@dataclass(frozen=True)
class CameraUnit:
    """One camera as it runs: its settings, source (reader), scheduler slot (with the gate)."""

    cfg: CameraConfig
    source: CameraSource
    slot: CameraSlot
    token: int

    @property
    def gate(self) -> LowLightGate:
        return self.slot.gate


class CameraManager:
    """Owns the cameras' units; see the module docstring."""

    def __init__(self, scheduler: Scheduler, metrics: Metrics, source_factory: SourceFactory,
                 *, count_source_skips: bool = True):
        self._scheduler = scheduler
        self._metrics = metrics
        self._source_factory = source_factory
        self.count_source_skips = count_source_skips
        self._table: dict[str, CameraUnit] = OwnedDict(scheduler.owner, "CameraManager._table")
        self._published: Mapping[str, CameraUnit] = MappingProxyType({})
        self._tokens = iter(range(1, 1 << 62))
        self._token_lock = threading.Lock()
        self._stoppers: list[threading.Thread] = []
        self._stoppers_lock = threading.Lock()
        self._closed = False

    # -- what any thread reads ------------------------------------------------------------
    def units(self) -> Mapping[str, CameraUnit]:
        """The cameras running now (immutable; replaced as a whole after each change)."""
        return self._published

    def is_current(self, name: str, token: int) -> bool:
        """True while the source of ``token`` is the camera's published one (its events count)."""
        unit = self._published.get(name)
        return not self._closed and unit is not None and unit.token == token

    def close(self) -> None:
        """The service stops (any thread): from now on no source's event counts."""
        self._closed = True

    # -- requests (any thread): one scheduler command each ------------------------------------
    def add(self, cam: CameraConfig, lowlight: LowLightConfig) -> None:
        """Build the camera's unit now; it joins the table, and its source starts, on the
        scheduler's thread."""
        with self._token_lock:
            token = next(self._tokens)
        source = self._source_factory(cam, _SourceEvents(self, cam.name, token))
        slot = CameraSlot(cam.name, source, LowLightGate(lowlight, cam.enhance, cam.picture),
                          cam.fps)
        unit = CameraUnit(cam, source, slot, token)
        self._scheduler.submit(lambda: self._attach(unit))

    def remove(self, name: str, *, keep_metrics: bool = False, timeout: float = 3.0) -> None:
        """Take the camera out (slot, pipeline state, series unless ``keep_metrics``: a
        supervisor restart, whose counters carry on), then stop its source within ``timeout``."""
        self._scheduler.submit(lambda: self._detach(name, keep_metrics, timeout))

    def update(self, cam: CameraConfig, lowlight: LowLightConfig) -> None:
        """New fps, gate settings (keeping the gate's history) and settings of a running camera."""
        self._scheduler.submit(lambda: self._update(cam, lowlight))

    def wait_stopped(self, timeout: float) -> bool:
        """Wait for the sources that removals are stopping; True when all stopped in time."""
        end = time.monotonic() + timeout
        with self._stoppers_lock:
            stoppers, self._stoppers = self._stoppers, []
        for t in stoppers:
            t.join(max(0.0, end - time.monotonic()))
        alive = [t for t in stoppers if t.is_alive()]
        with self._stoppers_lock:
            self._stoppers += alive
        return not alive

    # -- on the scheduler's thread --------------------------------------------------------------
    def _attach(self, unit: CameraUnit) -> None:
        name, source = unit.cfg.name, unit.source
        self._metrics.add_camera(name, state_of(source))
        self._metrics.heartbeat_gauge(f"camera:{name}", source.heartbeat)
        self._scheduler.attach(unit.slot, unit.cfg)
        self._table[name] = unit
        self._publish()
        source.start()

    def _detach(self, name: str, keep_metrics: bool, timeout: float) -> None:
        unit = self._table.pop(name, None)
        if unit is None:
            return
        self._scheduler.detach(name)
        if not keep_metrics:
            self._metrics.remove_camera(name)
            self._metrics.remove_heartbeat(f"camera:{name}")
        self._publish()
        self._stop_source(unit.source, timeout)

    def _update(self, cam: CameraConfig, lowlight: LowLightConfig) -> None:
        unit = self._table.get(cam.name)
        if unit is None:
            return
        unit.slot.fps = cam.fps
        unit.slot.gate.reconfigure(lowlight, cam.enhance, cam.picture)
        self._table[cam.name] = CameraUnit(cam, unit.source, unit.slot, unit.token)
        self._publish()

    def _publish(self) -> None:
        self._published = MappingProxyType(dict(self._table))

    def _stop_source(self, source: CameraSource, timeout: float) -> None:
        """Stop a source off the scheduler's thread (a reader may take ``timeout`` to end)."""
        t = threading.Thread(target=_stop_one, args=(source, timeout),
                             name=f"duskwatch-stop-{getattr(source, 'name', '?')}", daemon=True)
        with self._stoppers_lock:
            self._stoppers = [s for s in self._stoppers if s.is_alive()] + [t]
        t.start()


class _SourceEvents:
    """The events of one source instance; counted only while its unit is the published one."""

    def __init__(self, cameras: CameraManager, camera: str, token: int):
        self._cameras, self._camera, self._token = cameras, camera, token

    def _current(self) -> bool:
        return self._cameras.is_current(self._camera, self._token)

    def on_state(self, change: StateChange) -> None:
        if not self._current():
            return
        self._cameras._metrics.set_state(self._camera, change.new)
        level = logging.WARNING if change.new in (CameraState.STALLED, CameraState.BACKING_OFF) \
            else logging.INFO
        log.log(level, "camera %s: %s -> %s%s", self._camera, change.old.value, change.new.value,
                f" ({change.reason})" if change.reason else "")

    def on_frame_skipped(self, camera: str, count: int) -> None:
        if self._current() and self._cameras.count_source_skips:
            self._cameras._metrics.count_frames(self._camera, "dropped", count)

    def on_reconnect(self, camera: str) -> None:
        if self._current():
            self._cameras._metrics.count_reconnect(self._camera)

    def on_decoder_killed(self, camera: str) -> None:
        if self._current():
            self._cameras._metrics.count_decoder_kill(self._camera)


def state_of(source: CameraSource) -> CameraState | None:
    """The source's state, or None when it cannot say (a broken source)."""
    try:
        return source.state
    except Exception:  # noqa: BLE001
        return None


def _stop_one(source: CameraSource, timeout: float) -> None:
    try:
        source.stop(timeout=timeout)
    except Exception as exc:  # noqa: BLE001
        log.warning("camera %s: stop failed: %s", getattr(source, "name", "?"), exc)


def stop_sources(sources: list[CameraSource], timeout: float) -> None:
    """Stop sources in parallel, each within ``timeout``; a failing stop is logged."""
    threads = [threading.Thread(target=_stop_one, args=(s, timeout), daemon=True)
               for s in sources]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout + 0.5
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
