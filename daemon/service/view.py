"""The read-only side of the service: :class:`Published` (what the running daemon is, one
immutable object replaced as a whole) and :class:`ServiceView`, the
:class:`~daemon.service.web.facade.Facade` the HTTP threads call.

The main thread publishes (start-up, a reload applied, a supervisor restart, ready, stop);
HTTP threads read one :class:`Published` per answer, so an answer is wholly the old state or
wholly the new one. Live objects reached through it are safe to read from any thread: the
camera units' sources (heartbeat, status), the pipeline's :class:`SnapshotStore`, the event
stage's recent events, the metrics registry.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from daemon.config import CameraConfig, Config
from daemon.metrics import CONTENT_TYPE, Metrics
from daemon.pipeline.cameras import CameraUnit
from daemon.pipeline.snapshots import SnapshotStore
from daemon.service.snapshot_cache import JpegCache, SingleFlight
from daemon.service.web.app import SnapshotNotReady

if TYPE_CHECKING:
    from daemon.events.stage import EventStage


def _frozen(d: dict) -> Mapping:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class Published:
    """What readers see of the running daemon, never changed in place."""

    cfg: Config
    cameras: Mapping[str, CameraUnit] = field(default_factory=lambda: _frozen({}))
    ready: bool = False
    engines: Mapping[str, str | None] = field(
        default_factory=lambda: _frozen({"detector": None, "enhancer": None}))
    # (role, status()) of the engines on an inference server (Triton); local ones are not listed
    inference: tuple[tuple[str, Callable[[], str]], ...] = ()
    reload: Mapping[str, Any] = field(default_factory=lambda: _frozen({"status": "none"}))
    secrets: tuple[str, ...] = ()  # masked in /cameras (defence in depth)
    heartbeat: Callable[[], float] | None = None  # the scheduler loop's, once it runs
    frames: SnapshotStore | None = None  # the pipeline's latest frames and gate views
    events: "EventStage | None" = None  # None: no event store


class ServiceView:
    """The :class:`~daemon.service.web.facade.Facade` of a service: reads ``state()`` (the
    current :class:`Published`) once per answer and never changes it."""

    def __init__(self, state: Callable[[], Published], metrics: Metrics,
                 snapshot_interval_s: float):
        self._state = state
        self._metrics = metrics
        self.jpegs = JpegCache(self._render_snapshot, snapshot_interval_s)
        self._exposition = SingleFlight(lambda: (metrics.render(), CONTENT_TYPE))

    def metrics_payload(self) -> tuple[bytes, str]:
        """The exposition; parallel scrapes share one render (:class:`SingleFlight`)."""
        return self._exposition.get()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once warmed; names the engines *running* (a reload never swaps them) and how
        the last reload went (``config_reload``: none, ok, or failed with the reason). An
        engine on an inference server that is unavailable makes it not ready."""
        state = self._state()
        inference = {role: status() for role, status in state.inference}
        ready = state.ready and all(v == "available" for v in inference.values())
        info = {"ready": ready, **state.engines, "config_reload": dict(state.reload)}
        if inference:
            info["inference"] = inference
        return ready, info

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the scheduler loop and every camera reader have a fresh heartbeat."""
        state = self._state()
        timeout = state.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        reasons: list[str] = []
        stale: list[str] = []
        if state.heartbeat is None:
            reasons.append("starting: engines not loaded yet")
        else:
            age = now - state.heartbeat()
            if age > timeout:
                reasons.append(f"scheduler loop silent for {age:.1f} s (limit {timeout:g} s)")
        for name, unit in state.cameras.items():
            try:
                age, why = now - unit.source.heartbeat(), ""
            except Exception as exc:  # noqa: BLE001
                age, why = float("inf"), type(exc).__name__
            if age > timeout:
                stale.append(name)
                reasons.append(f"camera {name} reader silent for {age:.1f} s{' ' + why if why else ''}")
        return not reasons, {"healthy": not reasons, "reasons": reasons, "stale_cameras": stale}

    def camera_names(self) -> list[str]:
        return sorted(self._state().cameras)

    def cameras_status(self) -> dict[str, Any]:
        state = self._state()
        out = {name: self._camera_status(state, name, unit)
               for name, unit in state.cameras.items()}
        # Defence in depth: a source's status must not carry a password; mask any that does.
        text = json.dumps({"cameras": out}, default=str)
        for secret in state.secrets:
            text = text.replace(json.dumps(secret)[1:-1], "***")
        return json.loads(text)

    def _camera_status(self, state: Published, name: str, unit: CameraUnit) -> dict[str, Any]:
        try:
            status = dict(unit.source.status())
        except Exception as exc:  # noqa: BLE001
            status = {"error": f"status unavailable: {type(exc).__name__}"}
        gate = state.frames.gate(name) if state.frames else None
        status.update({
            "name": name,
            "url": unit.cfg.display_url,
            "fps_limit": unit.cfg.fps,
            "enhance": unit.cfg.enhance,
            "lowlight": gate.lowlight if gate else False,
            "luma": None if gate is None or gate.luma is None else round(gate.luma, 1),
            "frames_taken": gate.frames_taken if gate else 0,
        })
        status.update(shapes(unit.cfg))
        status["frames_processed"] = self._metrics.registry.get_sample_value(
            "duskwatch_frames_total", {"camera": name, "outcome": "processed"}) or 0
        snap = state.frames.get(name) if state.frames else None
        if snap is not None:
            status["last_result"] = snap.result.to_dict()
        return status

    def snapshot_jpeg(self, camera: str, picture: str = "shown") -> bytes | None:
        """The camera's latest annotated frame as JPEG (``picture``: the one people see, enhanced
        for a low-light camera, or ``raw``: the decoded frame), from the encoded cache: however
        many viewers poll, a camera's frame is drawn and encoded at most once per
        ``http.snapshot_interval_s`` (viewers cannot slow detection)."""
        if camera not in self._state().cameras:
            return None
        jpeg = self.jpegs.get(camera if picture != "raw" else f"{camera}:raw")
        if jpeg is None:
            raise SnapshotNotReady(f"camera {camera} has no processed frame yet")
        return jpeg

    def _render_snapshot(self, key: str):
        """(version, JPEG bytes) of a camera's latest snapshot, or None (the cache's source);
        ``key`` is the camera's name, or ``<name>:raw`` for its decoded frame (':' is never in a
        camera's name)."""
        from daemon.pipeline.snapshots import annotate, encode_jpeg

        camera, _, picture = key.partition(":")
        frames = self._state().frames
        snap = frames.get(camera) if frames else None
        if snap is None:
            return None
        return snap.result.seq, lambda: encode_jpeg(annotate(snap, picture or "shown"))

    def events_list(self, camera: str | None = None, type_: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        """Recent events, newest first (/events); ``[]`` without an event store."""
        events = self._state().events
        return events.recent.list(camera, type_, limit) if events is not None else []

    def events_page(self, *, camera: str | None = None, type_: str | None = None,
                    cls: str | None = None, since: float | None = None,
                    until: float | None = None, offset: int = 0,
                    limit: int = 100) -> tuple[list[dict[str, Any]], int]:
        """Recent events filtered and paged, and how many matched; ``([], 0)`` without an
        event store."""
        events = self._state().events
        if events is None:
            return [], 0
        return events.recent.page(camera=camera, type_=type_, cls=cls, since=since,
                                  until=until, offset=offset, limit=limit)

    def event_file(self, event_id: str, kind: str) -> Path | None:
        """An event's file ('snapshot', 'snapshot_raw', 'clip') as its record names it: a
        regular file inside the evidence folder, never through a symbolic link; None without
        an event store."""
        events = self._state().events
        return events.file_of(event_id, kind) if events is not None else None


def shapes(cam: CameraConfig) -> dict[str, Any]:
    """A camera's zones and lines for /cameras (points as fractions of the frame)."""
    return {"zones": [{"name": z.name, "points": z.points, "coords": z.coords} for z in cam.zones],
            "lines": [{"name": ln.name, "points": ln.points, "coords": ln.coords}
                      for ln in cam.lines]}
