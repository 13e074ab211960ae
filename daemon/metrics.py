"""Prometheus metrics of one service instance (deploy/README.md, "Reading the metrics").

Every metric lives in a registry owned by :class:`Metrics`, so each service (and each test) has
its own. Every label value is created when its camera, class or stage becomes known, so a
series exists at zero before anything happens (``rate()`` and alerts work from the first
scrape). Label values are camera names, class names, stage and sink names only: never a URL.

Threads: the scheduler thread adds and removes a camera's series (as part of applying the
camera's addition or removal), camera readers and the scheduler update them, HTTP threads
render. The label tables (which cameras, classes, zones and lines have series) are guarded by
one lock, and every per-camera update checks, under that lock, that the camera still has its
series: an update that races with a removal is dropped instead of re-creating a series.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from daemon.pipeline.frames import CameraState

OUTCOMES = ("processed", "dropped", "failed")
STAGES = ("decode", "enhance", "detect", "end_to_end")
ENGINE_STAGES = ("enhance", "detect")
# 1 ms .. 10 s: decode of one frame is ~1-10 ms, a CPU detector batch up to seconds.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# The *_created series double the exposition for nothing an operator uses.
disable_created_metrics()


class Metrics:
    """All of the service's metrics, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._lock = threading.RLock()  # the label tables below, and check-then-update
        r = self.registry
        self.frames = Counter(
            "duskwatch_frames", "Frames by outcome: processed, dropped (skipped by the fps limit "
            "or the latest-frame slot), failed (an engine call failed).",
            ["camera", "outcome"], registry=r)
        self.frames_enhanced = Counter(
            "duskwatch_frames_enhanced", "Frames the low-light enhancer's network ran on: the "
            "enhanced view for the detector, and the enhanced pictures that were looked at (live "
            "snapshot, event snapshot, clip frame; each made once, when first needed).",
            ["camera"], registry=r)
        self.views_shed = Counter(
            "duskwatch_views_shed", "Low-light views (detector passes) a dark frame was not given "
            "because the scheduler was a whole fps period behind: under overload a camera sheds "
            "views before it loses frames.",
            ["camera"], registry=r)
        self.detections = Counter(
            "duskwatch_detections", "Objects detected, by class: each tracked object "
            "counted once (when the tracker first matches it), not every box of every frame.",
            ["camera", "class"], registry=r)
        self.stage = Histogram(
            "duskwatch_stage_duration_seconds", "Time spent per stage: decode (CPU time of the "
            "camera reader per frame: demux, decode, colour conversion; not the wait for the next "
            "frame; with decoder: process, the child's CPU for the frame plus the reader's), enhance and detect (per engine call), end_to_end (capture to results, per frame).",
            ["stage"], buckets=STAGE_BUCKETS, registry=r)
        self.camera_up = Gauge(
            "duskwatch_camera_up", "1 while the camera is streaming, else 0.", ["camera"], registry=r)
        self.reconnects = Counter(
            "duskwatch_camera_reconnects", "Reconnect attempts after a camera failure.",
            ["camera"], registry=r)
        self.lowlight = Gauge(
            "duskwatch_camera_lowlight", "1 while the low-light gate considers the scene dark.",
            ["camera"], registry=r)
        self.frame_age = Gauge(
            "duskwatch_frame_age_seconds", "Seconds from the capture of the camera's last "
            "processed frame to its results reaching the sinks.", ["camera"], registry=r)
        self.decoder_kills = Counter(
            "duskwatch_decoder_kills", "Decoder processes killed because no frame came for "
            "read_timeout_s (cameras with decoder: process); the camera reconnects with a new one.",
            ["camera"], registry=r)
        self.camera_state = Gauge(
            "duskwatch_camera_state", "1 for the camera's current source state, 0 for the others.",
            ["camera", "state"], registry=r)
        self.engine_failures = Counter(
            "duskwatch_engine_failures", "Engine calls that raised, by stage.", ["stage"], registry=r)
        self.sink_failures = Counter(
            "duskwatch_sink_failures", "Results a sink failed to write.", ["sink"], registry=r)
        self.build_info = Gauge(
            "duskwatch_build_info", "Always 1; labels describe the running build and engines.",
            ["version", "backend", "detector", "enhancer"], registry=r)
        self.engine_info = Gauge(
            "duskwatch_engine_info", "Always 1; where each engine really runs: device (cpu, "
            "cuda:N) and the runtime's provider (e.g. CUDAExecutionProvider, openvino:CPU/bf16).",
            ["engine", "device", "provider"], registry=r)
        self.ready = Gauge(
            "duskwatch_ready", "1 once the engines are loaded and warmed.", registry=r)
        self.heartbeat_age = Gauge(
            "duskwatch_heartbeat_age_seconds", "Seconds since each worker's last heartbeat.",
            ["worker"], registry=r)
        self._init_event_metrics(r)
        self._add_hardening_metrics(r)
        for stage in STAGES:
            self.stage.labels(stage)
        for stage in ENGINE_STAGES:
            self.engine_failures.labels(stage)
        self._cameras: set[str] = set()
        self._classes: list[str] = []
        self._sinks: set[str] = set()
        self._engine_labels: dict[str, tuple[str, str, str]] = {}

    def _init_event_metrics(self, r: CollectorRegistry) -> None:
        """Tracking, zones, lines, events and event sinks (deploy/README.md, "Events")."""
        self.objects = Gauge(
            "duskwatch_objects", "Tracked objects in view now (tracks that count).",
            ["camera", "class"], registry=r)
        self.tracks = Counter(
            "duskwatch_tracks", "Tracks that counted (tracking.min_score and min_age_frames "
            "reached): each object once.", ["camera", "class"], registry=r)
        self.zone_objects = Gauge(
            "duskwatch_zone_objects", "Objects in the zone now.", ["camera", "zone", "class"],
            registry=r)
        self.zone_entries = Counter(
            "duskwatch_zone_entries", "Objects that entered the zone.", ["camera", "zone", "class"],
            registry=r)
        self.line_crossings = Counter(
            "duskwatch_line_crossings", "Objects that crossed the line, by direction (in: from its "
            "left to its right walking from its first point to its second).",
            ["camera", "line", "direction", "class"], registry=r)
        self.events = Counter(
            "duskwatch_events", "Events raised, by type.", ["camera", "type"], registry=r)
        self.sink_events_dropped = Counter(
            "duskwatch_sink_events_dropped", "Events (or evidence files) a sink dropped: its "
            "queue was full, or retries ran out.", ["sink"], registry=r)
        self._shapes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._track_classes: dict[str, list[str]] = {}
        self._event_types: dict[str, tuple[str, ...]] = {}

    def _add_hardening_metrics(self, r: CollectorRegistry) -> None:
        """Config reloads and the HTTP server's defences (issue 12)."""
        self.reload_failures = Counter(
            "duskwatch_config_reload_failures", "Reloads (SIGHUP) refused because the new config "
            "failed validation; the running config was kept.", registry=r)
        self.reload_success_time = Gauge(
            "duskwatch_config_last_reload_success_timestamp_seconds", "Unix time the running "
            "config was last loaded successfully (start-up or reload).", registry=r)
        self.http_rejected = Counter(
            "duskwatch_http_connections_closed", "HTTP connections the server closed on its own, "
            "by reason: idle (no request within idle_timeout_s), slow (request not complete "
            "within request_timeout_s), evicted (longest idle, to stay under max_connections).",
            ["reason"], registry=r)
        self.http_unauthorized = Counter(
            "duskwatch_http_unauthorized", "HTTP requests answered 401 (missing or wrong "
            "credentials).", registry=r)
        for reason in ("idle", "slow", "evicted"):
            self.http_rejected.labels(reason)

    # -- label sets ------------------------------------------------------------------------
    def add_event_camera(self, camera: str, classes: Iterable[str], zones: Iterable[str],
                         lines: Iterable[str], event_types: Iterable[str]) -> None:
        """Create the tracking, zone, line and event series of ``camera`` at zero. On a reload
        the series of zones, lines or classes that went away are removed; the others keep
        their values."""
        with self._lock:
            before = self._event_labelsets(camera)
            self._track_classes[camera] = sorted(set(classes))
            self._shapes[camera] = (tuple(zones), tuple(lines))
            self._event_types[camera] = tuple(event_types)
            after = self._event_labelsets(camera)
            self._remove_labelsets(before - after)
            for metric, labels in after - before:
                child = metric.labels(*labels)
                if isinstance(metric, Gauge):
                    child.set(0)

    def event_inc(self, metric: Counter, camera: str, *labels: str) -> None:
        """Count one on an event series (``metric`` is one of the event metrics: tracks,
        zone_entries, line_crossings, events) of ``camera``, unless its series were removed."""
        with self._lock:
            if camera in self._shapes:
                metric.labels(camera, *labels).inc()

    def event_set(self, metric: Gauge, value: float, camera: str, *labels: str) -> None:
        """Set an event gauge (objects, zone_objects) of ``camera``, unless its series were
        removed (a frame processed while the camera was being removed)."""
        with self._lock:
            if camera in self._shapes:
                metric.labels(camera, *labels).set(value)

    def add_event_sink(self, sink: str) -> None:
        self.sink_events_dropped.labels(sink)

    def _event_labelsets(self, camera: str) -> set[tuple]:
        """``(metric, label values)`` of every event series of ``camera``."""
        zones, lines = self._shapes.get(camera, ((), ()))
        out: set[tuple] = set()
        for cls in self._track_classes.get(camera, []):
            out |= {(self.objects, (camera, cls)), (self.tracks, (camera, cls))}
            for z in zones:
                out |= {(self.zone_objects, (camera, z, cls)), (self.zone_entries, (camera, z, cls))}
            for ln in lines:
                out |= {(self.line_crossings, (camera, ln, d, cls)) for d in ("in", "out")}
        out |= {(self.events, (camera, t)) for t in self._event_types.get(camera, ())}
        return out

    def _remove_event_series(self, camera: str) -> None:
        with self._lock:
            labelsets = self._event_labelsets(camera)
            self._shapes.pop(camera, None)
            self._track_classes.pop(camera, None)
            self._event_types.pop(camera, None)
            self._remove_labelsets(labelsets)

    @staticmethod
    def _remove_labelsets(labelsets) -> None:
        for metric, labels in labelsets:
            try:
                metric.remove(*labels)
            except KeyError:
                pass

    def set_classes(self, names: Iterable[str]) -> None:
        """Class names the detector knows; their detection series are created per camera."""
        with self._lock:
            self._classes = sorted(set(names))
            for cam in self._cameras:
                self._create_class_series(cam)

    def add_camera(self, camera: str, state: CameraState | None = None) -> None:
        """Create every series of ``camera`` at zero (those it has already keep their values),
        its state series showing ``state`` (the source's state now; connecting when None)."""
        with self._lock:
            new = camera not in self._cameras
            self._cameras.add(camera)
            for outcome in OUTCOMES:
                self.frames.labels(camera, outcome)
            self.frames_enhanced.labels(camera)
            self.views_shed.labels(camera)
            self.reconnects.labels(camera)
            self.decoder_kills.labels(camera)
            if new:
                self.lowlight.labels(camera).set(0)
                self.frame_age.labels(camera).set(0)
            self.set_state(camera, state or CameraState.CONNECTING)
            self._create_class_series(camera)

    def has_camera(self, camera: str) -> bool:
        with self._lock:
            return camera in self._cameras

    def remove_camera(self, camera: str) -> None:
        """Drop every series of a camera taken out of the config."""
        with self._lock:
            self._cameras.discard(camera)
            self._remove_event_series(camera)
            for metric, labelsets in self._camera_labelsets(camera):
                self._remove_labelsets((metric, labels) for labels in labelsets)

    def add_sink(self, sink: str) -> None:
        with self._lock:
            self._sinks.add(sink)
            self.sink_failures.labels(sink)

    def heartbeat_gauge(self, worker: str, last: Callable[[], float]) -> None:
        """Export ``now - last()`` for ``worker`` at every scrape."""
        self.heartbeat_age.labels(worker).set_function(lambda: time.monotonic() - last())

    def remove_heartbeat(self, worker: str) -> None:
        try:
            self.heartbeat_age.remove(worker)
        except KeyError:
            pass

    def _create_class_series(self, camera: str) -> None:
        for cls in self._classes:
            self.detections.labels(camera, cls)

    def _camera_labelsets(self, camera: str):
        return [
            (self.frames, [(camera, o) for o in OUTCOMES]),
            (self.frames_enhanced, [(camera,)]),
            (self.views_shed, [(camera,)]),
            (self.detections, [(camera, c) for c in self._classes]),
            (self.camera_up, [(camera,)]),
            (self.reconnects, [(camera,)]),
            (self.decoder_kills, [(camera,)]),
            (self.lowlight, [(camera,)]),
            (self.frame_age, [(camera,)]),
            (self.camera_state, [(camera, s.value) for s in CameraState]),
        ]

    # -- updates ---------------------------------------------------------------------------
    def set_state(self, camera: str, state: CameraState) -> None:
        with self._lock:
            if camera not in self._cameras:
                return
            for s in CameraState:
                self.camera_state.labels(camera, s.value).set(1 if s == state else 0)
            self.camera_up.labels(camera).set(1 if state == CameraState.STREAMING else 0)

    def count_frames(self, camera: str, outcome: str, n: int = 1) -> None:
        with self._lock:
            if n > 0 and camera in self._cameras:
                self.frames.labels(camera, outcome).inc(n)

    def set_lowlight(self, camera: str, dark: bool) -> None:
        with self._lock:
            if camera in self._cameras:
                self.lowlight.labels(camera).set(1 if dark else 0)

    def set_frame_age(self, camera: str, seconds: float) -> None:
        with self._lock:
            if camera in self._cameras:
                self.frame_age.labels(camera).set(seconds)

    def count_enhanced(self, camera: str) -> None:
        with self._lock:
            if camera in self._cameras:
                self.frames_enhanced.labels(camera).inc()

    def count_views_shed(self, camera: str, n: int) -> None:
        if n > 0 and camera in self._cameras:
            self.views_shed.labels(camera).inc(n)

    def count_reconnect(self, camera: str) -> None:
        with self._lock:
            if camera in self._cameras:
                self.reconnects.labels(camera).inc()

    def count_decoder_kill(self, camera: str) -> None:
        with self._lock:
            if camera in self._cameras:
                self.decoder_kills.labels(camera).inc()

    def count_detection(self, camera: str, cls: str) -> None:
        with self._lock:
            if camera in self._cameras:
                self.detections.labels(camera, cls).inc()

    def set_build_info(self, version: str, backend: str, detector: str, enhancer: str) -> None:
        self.build_info.clear()
        self.build_info.labels(version, backend, detector, enhancer).set(1)

    def set_engine_info(self, engine: str, device: str, provider: str) -> None:
        """One series for ``engine`` (detector, enhancer): the device and provider it runs on."""
        old = self._engine_labels.pop(engine, None)
        if old is not None:
            self.engine_info.remove(*old)
        self._engine_labels[engine] = (engine, device, provider)
        self.engine_info.labels(engine, device, provider).set(1)

    def render(self) -> bytes:
        """The text exposition format, as served on /metrics."""
        return generate_latest(self.registry)
