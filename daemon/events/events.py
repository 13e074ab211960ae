"""Events: a track's life as an operator sees it, and the per-camera logic that raises them.

Types (``daemon.config.EVENT_TYPES``): ``appeared`` (a track started to count: tracking.min_score
and min_age_frames reached), ``entered``/``exited`` a zone, ``crossed`` a line (``direction`` in
or out), ``loitered`` (in a zone for its ``loiter_s``), ``gone`` (unseen for lost_track_s).

:class:`CameraEvents` belongs to the scheduler thread, like the rest of the pipeline. It feeds
the camera's tracker, keeps each track's state (best score, zones, sides of lines), updates the
tracking metrics and returns the frame's events.

Times (deploy/README.md, "Event times"): ``time``/``epoch`` is when the daemon raised the event,
the capture time of the frame that raised it, never earlier than the camera's previous event
(so it only goes forward per camera, in the order every sink receives the events: sort by it);
``happened`` is when what it reports happened: the same for most types, the track's last
sighting for ``gone`` and for the ``exited`` that a lost track raises (``lost_track_s`` before).
Each sink adds ``sent``, when it sent the event (later than ``time`` after an outage).
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from daemon.config import EVENT_TYPES, CameraConfig
from daemon.events.geometry import anchor, resolve
from daemon.events.tracker import CameraTracker
from daemon.metrics import Metrics
from daemon.pipeline.picture import Image
from engines.detections import Detections


@dataclass
class BestFrame:
    """What a snapshot is drawn from: the track's best frame so far. A reference to the frame
    the pipeline already made, not a copy: a track holds at most one frame."""

    image: Image  # the picture people see (a lazy Picture is made only if a snapshot is written)
    box: tuple[float, float, float, float]
    label: str
    raw: np.ndarray | None = None  # the decoded frame, when ``image`` is the enhanced picture


@dataclass
class Event:
    """One event; :meth:`to_dict` is its JSON shape on every sink and on /events."""

    type: str
    camera: str
    cls: str
    track_id: int
    wall: float  # when it was raised (epoch s), non-decreasing per camera
    happened: float  # when what it reports happened (epoch s); <= wall
    first_seen: float
    last_seen: float
    best_score: float
    box: tuple[float, float, float, float]
    enhanced: bool
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    dwell_s: float | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    snapshot: str | None = None  # path of the JPEG, once the stage assigned one
    snapshot_raw: str | None = None  # the decoded frame's JPEG, when the snapshot is enhanced
    clip: str | None = None  # path of the clip this event is part of
    evidence: BestFrame | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "type": self.type, "camera": self.camera, "class": self.cls,
            "track_id": self.track_id, "time": _iso(self.wall), "epoch": round(self.wall, 3),
            "happened": _iso(self.happened),
            "first_seen": _iso(self.first_seen), "last_seen": _iso(self.last_seen),
            "best_score": round(self.best_score, 4),
            "box": [round(float(v), 1) for v in self.box], "enhanced": self.enhanced,
        }
        for key in ("zone", "line", "direction"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.dwell_s is not None:
            out["dwell_s"] = round(self.dwell_s, 2)
        out["snapshot"] = self.snapshot
        out["pictures"] = ["enhanced", "raw"] if self.snapshot_raw else ["raw"] if self.snapshot else []
        if self.snapshot_raw:
            out["snapshot_raw"] = self.snapshot_raw
        out["clip"] = self.clip
        out["snapshot_url"] = f"/events/{self.id}/snapshot.jpg" if self.snapshot else None
        out["clip_url"] = f"/events/{self.id}/clip.mp4" if self.clip else None
        return out


def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, tz=timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class TrackState:
    """What the camera knows about one track."""

    id: int
    first_t: float
    first_wall: float
    last_t: float
    last_wall: float
    box: tuple[float, float, float, float]
    hits: int = 0
    best_score: float = 0.0
    evidence: BestFrame | None = None
    enhanced: bool = False
    names: Counter = field(default_factory=Counter)
    cls: str = ""
    counted: bool = False
    zones: dict[str, float] = field(default_factory=dict)  # zone -> monotonic time of entry
    loitered: set[str] = field(default_factory=set)
    sides: dict[str, tuple[int, tuple[float, float]]] = field(default_factory=dict)


class CameraEvents:
    """One camera's tracks -> events and tracking metrics (scheduler thread only)."""

    def __init__(self, cam: CameraConfig, metrics: Metrics, classes: list[str]):
        self.camera = cam.name
        self.metrics = metrics
        self._all_classes = classes
        self.tracks: dict[int, TrackState] = {}
        self._tracker: CameraTracker | None = None
        self._size: tuple[int, int] | None = None
        self._raised_wall = 0.0  # the newest event time raised: events never go back in time
        self.reconfigure(cam)

    # configuration ----------------------------------------------------------------------------
    def reconfigure(self, cam: CameraConfig) -> None:
        """New tracking, zone and line settings; tracks (and their ids) survive unless the
        tracking settings changed."""
        old = getattr(self, "cam", None)
        self.cam = cam
        if self._tracker is None or old is None or old.tracking != cam.tracking or old.fps != cam.fps:
            self._end_all_tracks()
            self._tracker = CameraTracker(cam.tracking, cam.fps)
        self.classes = sorted(cam.tracking.classes or self._all_classes)
        self.metrics.add_event_camera(self.camera, self.classes, [z.name for z in cam.zones],
                                      [ln.name for ln in cam.lines], EVENT_TYPES)
        self.zones, self.lines = [], []
        if self._size is not None:
            self.zones, self.lines = resolve(cam.zones, cam.lines, self._size)
        for tr in self.tracks.values():  # memberships of changed shapes start afresh
            tr.zones.clear()
            tr.loitered.clear()
            tr.sides.clear()
        self.publish_gauges()

    def _end_all_tracks(self) -> None:
        self.tracks.clear()

    # per frame --------------------------------------------------------------------------------
    def observe(self, dets: Detections, t: float, wall: float, image: Image,
                enhanced: bool, raw: np.ndarray | None = None) -> list[Event]:
        """One processed frame (captured at monotonic ``t``, ``wall`` epoch seconds): ``image``
        is the picture people see, ``raw`` the decoded frame when that picture is another."""
        self._raised_wall = max(self._raised_wall, wall)
        size = (int(image.shape[1]), int(image.shape[0]))
        if size != self._size:
            self._size = size
            self.zones, self.lines = resolve(self.cam.zones, self.cam.lines, size)
        events: list[Event] = []
        for match in self._tracker.update(dets, t):
            box = tuple(float(v) for v in dets.boxes[match.index])
            score, name = float(dets.scores[match.index]), dets.names[match.index]
            tr = self._touch(match.track_id, t, wall, box, score, name, image, enhanced, raw)
            if not tr.counted and self._counts(tr):
                events += self._start_counting(tr)
            if tr.counted:
                events += self._zones(tr, t) + self._lines(tr)
        events += self.expire(t)
        self.publish_gauges()
        return events

    def expire(self, now: float) -> list[Event]:
        """Tracks unseen for tracking.lost_track_s are gone."""
        events: list[Event] = []
        lost = [k for k, tr in self.tracks.items() if now - tr.last_t > self.cam.tracking.lost_track_s]
        for tid in lost:
            tr = self.tracks.pop(tid)
            if not tr.counted:
                continue
            for zone, since in sorted(tr.zones.items()):
                events.append(self._event("exited", tr, zone=zone, dwell_s=tr.last_t - since))
            events.append(self._event("gone", tr, dwell_s=tr.last_t - tr.first_t))
        if lost:
            self.publish_gauges()
        return events

    # steps ------------------------------------------------------------------------------------
    def _touch(self, tid, t, wall, box, score, name, image, enhanced, raw=None) -> TrackState:
        tr = self.tracks.get(tid)
        if tr is None:
            tr = TrackState(tid, t, wall, t, wall, box)
            self.tracks[tid] = tr
            self.metrics.count_detection(self.camera, name)  # each object once, at its first match
        tr.last_t, tr.last_wall, tr.box, tr.enhanced = t, wall, box, enhanced
        tr.hits += 1
        tr.names[name] += score
        if score > tr.best_score:
            tr.best_score = score
            tr.evidence = BestFrame(image, box, "", raw)
        return tr

    def _counts(self, tr: TrackState) -> bool:
        cfg = self.cam.tracking
        return tr.hits >= cfg.min_age_frames and tr.best_score >= cfg.min_score

    def _start_counting(self, tr: TrackState) -> list[Event]:
        tr.counted = True
        tr.cls = tr.names.most_common(1)[0][0]
        if tr.cls in self.classes:
            self.metrics.event_inc(self.metrics.tracks, self.camera, tr.cls)
        for line in self.lines:  # sides are known from now on; a crossing needs a change
            side = line.side(anchor(tr.box))
            if side:
                tr.sides[line.name] = (side, anchor(tr.box))
        return [self._event("appeared", tr)]

    def _zones(self, tr: TrackState, t: float) -> list[Event]:
        events = []
        point = anchor(tr.box)
        for zone in self.zones:
            inside = zone.counts(tr.cls) and zone.contains(point)
            was = zone.name in tr.zones
            if inside and not was:
                tr.zones[zone.name] = t
                self._inc(self.metrics.zone_entries, zone.name, tr.cls)
                events.append(self._event("entered", tr, zone=zone.name))
            elif was and not inside:
                since = tr.zones.pop(zone.name)
                tr.loitered.discard(zone.name)
                events.append(self._event("exited", tr, zone=zone.name, dwell_s=t - since))
            elif inside and zone.loiter_s > 0 and zone.name not in tr.loitered \
                    and t - tr.zones[zone.name] >= zone.loiter_s:
                tr.loitered.add(zone.name)
                events.append(self._event("loitered", tr, zone=zone.name,
                                          dwell_s=t - tr.zones[zone.name]))
        return events

    def _lines(self, tr: TrackState) -> list[Event]:
        events = []
        point = anchor(tr.box)
        for line in self.lines:
            if not line.counts(tr.cls):
                continue
            side = line.side(point)
            if side == 0:
                continue
            last = tr.sides.get(line.name)
            tr.sides[line.name] = (side, point)
            if last is None or last[0] == side or not line.crossed(last[1], point):
                continue
            direction = "in" if side > 0 else "out"
            if tr.cls in self.classes:
                self.metrics.event_inc(self.metrics.line_crossings, self.camera, line.name,
                                      direction, tr.cls)
            events.append(self._event("crossed", tr, line=line.name, direction=direction))
        return events

    # helpers ----------------------------------------------------------------------------------
    def _inc(self, counter, zone: str, cls: str) -> None:
        if cls in self.classes:
            self.metrics.event_inc(counter, self.camera, zone, cls)

    def _event(self, type_: str, tr: TrackState, **extra: Any) -> Event:
        self.metrics.event_inc(self.metrics.events, self.camera, type_)
        ev = tr.evidence
        label = f"{tr.cls} #{tr.id} {tr.best_score:.2f}"
        evidence = BestFrame(ev.image, ev.box, label, ev.raw) if ev is not None else None
        raised = max(self._raised_wall, tr.last_wall)
        return Event(type_, self.camera, tr.cls, tr.id, raised, tr.last_wall, tr.first_wall,
                     tr.last_wall, tr.best_score, tr.box, tr.enhanced, evidence=evidence, **extra)

    def publish_gauges(self) -> None:
        objects = Counter(tr.cls for tr in self.tracks.values() if tr.counted)
        in_zone = Counter((z, tr.cls) for tr in self.tracks.values() if tr.counted for z in tr.zones)
        for cls in self.classes:
            self.metrics.event_set(self.metrics.objects, objects.get(cls, 0), self.camera, cls)
            for zone in self.cam.zones:
                self.metrics.event_set(self.metrics.zone_objects, in_zone.get((zone.name, cls), 0),
                                       self.camera, zone.name, cls)

    def shapes(self) -> list[tuple[str, np.ndarray, bool]]:
        """The zones (closed) and lines (open) in pixels, for drawing on snapshots and clips."""
        return ([(z.name, z.polygon, True) for z in self.zones]
                + [(ln.name, np.array([ln.a, ln.b]), False) for ln in self.lines])

    def tracked_boxes(self, t: float) -> list[tuple[tuple[float, float, float, float], str]]:
        """Boxes and labels of the counted tracks seen at ``t`` (for drawing clip frames)."""
        return [(tr.box, f"{tr.cls} #{tr.id}") for tr in self.tracks.values()
                if tr.counted and tr.last_t == t]
