"""The event stage: what the pipeline calls after a frame's detection.

Runs on the scheduler thread and owns, per camera, the tracker and zone/line state
(:class:`~daemon.events.events.CameraEvents`), and the evidence rings and clips. An event goes
to the metrics, gets its snapshot and clip paths, is handed to every event sink (bounded queues,
never blocking) and is kept in a bounded list of recent events that HTTP threads read
(/events).

Other threads change the stage only through scheduler commands (configure_camera, forget,
replace_sinks, set_config), like the rest of the pipeline.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

from daemon.config import CameraConfig, EventsConfig
from daemon.events.events import CameraEvents, Event
from daemon.events.evidence import EVIDENCE_SINK, Evidence, EvidenceWriter
from daemon.events.sinks import EventSinkSet
from daemon.metrics import Metrics
from daemon.pipeline.frames import Frame, Result
from daemon.pipeline.picture import Image


class RecentEvents:
    """The newest events (JSON dicts), read by HTTP threads, written by the scheduler thread."""

    def __init__(self, size: int):
        self.size = size
        self._lock = threading.Lock()
        self._events: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def add(self, event: dict[str, Any]) -> None:
        with self._lock:
            self._events[event["id"]] = event
            while len(self._events) > self.size:
                self._events.popitem(last=False)

    def list(self, camera: str | None = None, type_: str | None = None, limit: int = 100) -> list[dict]:
        """Newest first."""
        with self._lock:
            items = list(reversed(self._events.values()))
        out = [e for e in items if (camera is None or e["camera"] == camera)
               and (type_ is None or e["type"] == type_)]
        return out[:limit]

    def page(self, camera: str | None = None, type_: str | None = None, cls: str | None = None,
             since: float | None = None, until: float | None = None, offset: int = 0,
             limit: int = 100) -> tuple[list[dict], int]:
        """Newest first, filtered (``since``/``until``: Unix seconds, inclusive): ``limit``
        events from ``offset`` on, and how many matched in all."""
        with self._lock:
            items = list(reversed(self._events.values()))
        out = [e for e in items if (camera is None or e["camera"] == camera)
               and (type_ is None or e["type"] == type_) and (cls is None or e["class"] == cls)
               and (since is None or e["epoch"] >= since)
               and (until is None or e["epoch"] <= until)]
        return out[offset:offset + limit], len(out)

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._events.get(event_id)


class EventStage:
    """Tracks -> events -> metrics, evidence, sinks, /events (scheduler thread)."""

    def __init__(self, cfg: EventsConfig, metrics: Metrics, sinks: EventSinkSet,
                 classes: Iterable[str], writer: EvidenceWriter | None = None):
        self.cfg = cfg
        self.metrics = metrics
        self.sinks = sinks
        self.classes = sorted(set(classes))
        metrics.add_event_sink(EVIDENCE_SINK)
        self.writer = writer or EvidenceWriter(cfg.evidence, on_drop=self._dropped)
        self.evidence = Evidence(cfg.evidence, self.writer)
        self.recent = RecentEvents(cfg.recent)
        self.cameras: dict[str, CameraEvents] = {}

    def _dropped(self, sink: str) -> None:
        self.metrics.sink_events_dropped.labels(sink).inc()

    def start(self) -> None:
        self.writer.start()
        self.sinks.start()

    # commands (scheduler thread) ----------------------------------------------------------------
    def configure_camera(self, cam: CameraConfig) -> None:
        """Add a camera, or apply its new tracking, zone and line settings keeping its tracks."""
        state = self.cameras.get(cam.name)
        if state is None:
            self.cameras[cam.name] = CameraEvents(cam, self.metrics, self.classes)
        else:
            state.reconfigure(cam)
        self.evidence.add_camera(cam.name, cam.fps)

    def forget(self, camera: str) -> None:
        self.cameras.pop(camera, None)
        self.evidence.forget(camera)

    def replace_sinks(self, sinks: EventSinkSet) -> None:
        old, self.sinks = self.sinks, sinks
        sinks.start()
        threading.Thread(target=old.close, name="duskwatch-sinks-close", daemon=True).start()

    def set_config(self, cfg: EventsConfig) -> None:
        self.cfg = cfg
        self.evidence.set_config(cfg.evidence)
        self.recent.size = cfg.recent

    def close(self, timeout: float = 2.0) -> None:
        """Close open clips, then let the writer and the sinks finish, all within ``timeout``
        (after the scheduler loop ended; the service must stop within systemd's bound)."""
        self.evidence.close()
        closing = threading.Thread(target=self.sinks.close, args=(timeout,), daemon=True)
        closing.start()
        self.writer.close(timeout)
        closing.join(timeout + 1.0)

    # per frame ---------------------------------------------------------------------------------
    def observe(self, frame: Frame, image: Image, result: Result) -> list[Event]:
        """One processed frame of a configured camera; the events it raised. ``image``: the
        picture people see (the frame itself, or a lazy :class:`~daemon.pipeline.picture.Picture`, made only where a
        snapshot or a clip needs it)."""
        state = self.cameras.get(frame.camera)
        if state is None:
            return []
        t = frame.captured_monotonic
        raw = None if image is frame.image else frame.image
        events = state.observe(result.detections, t, frame.captured_wall, image, result.enhanced, raw)
        for ev in events:
            self._emit(ev, t, state)
        self.evidence.push_frame(frame.camera, t, image, state.tracked_boxes(t))
        return events

    def tick(self, now: float) -> None:
        """Between batches: tracks of cameras that stopped sending frames expire too."""
        for state in self.cameras.values():
            for ev in state.expire(now):
                self._emit(ev, now, state)
        self.evidence.tick(now)

    def _emit(self, ev: Event, t: float, state: CameraEvents) -> None:
        shapes = state.shapes()
        if ev.evidence is not None:
            # a file is named in the event only when its job was queued: a dropped one (counted
            # in duskwatch_sink_events_dropped_total{sink="evidence"}) will never exist
            path = self.evidence.snapshot_path(ev.camera, ev.id, ev.wall)
            if path is not None and self.evidence.write_snapshot(
                    path, ev.evidence.image, ev.evidence.box, ev.evidence.label, shapes):
                ev.snapshot = str(path)
                if ev.evidence.raw is not None:  # the decoded frame too, for ?picture=raw
                    raw_path = path.with_name(f"{path.stem}.raw{path.suffix}")
                    if self.evidence.write_snapshot(raw_path, ev.evidence.raw, ev.evidence.box,
                                                    ev.evidence.label, shapes):
                        ev.snapshot_raw = str(raw_path)
        clip = self.evidence.clip_for(ev.camera, ev.type, ev.id, t, ev.wall, shapes)
        ev.clip = str(clip) if clip is not None else None
        payload = ev.to_dict()
        self.recent.add(payload)
        self.sinks.offer(payload)

    # what HTTP reads ---------------------------------------------------------------------------
    def file_of(self, event_id: str, kind: str) -> Path | None:
        """The file an event's record names under ``kind`` ('snapshot', 'snapshot_raw' or
        'clip'), when it is a regular file inside the evidence folder reached through no
        symbolic link (:func:`evidence_file`). Only events still in the recent list have a
        record here: older ones answer None."""
        event = self.recent.get(event_id)
        value = event.get(kind) if event is not None else None
        return evidence_file(Path(self.cfg.evidence.dir), value) if value else None


def evidence_file(root: Path, value: str) -> Path | None:
    """``value`` (a path a record names) as a real path, when it is a regular file inside
    ``root`` and neither it nor any folder between ``root`` and it is a symbolic link; else
    None. A link planted in the evidence tree (to /etc/passwd, to the credentials folder, to a
    folder elsewhere) is thus never served."""
    path = os.path.abspath(value)
    real_root = root.resolve()
    rel = None
    for base in (os.path.abspath(root), str(real_root)):  # as configured, or as resolved
        if os.path.commonpath([path, base]) == base and path != base:
            rel = Path(os.path.relpath(path, base))
            break
    if rel is None:
        return None
    current, info = real_root, None
    for part in rel.parts:
        current = current / part
        try:
            info = os.lstat(current)
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            return None
    return current if info is not None and stat.S_ISREG(info.st_mode) else None
