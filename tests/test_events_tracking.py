"""Tracking, zones, lines and events on synthetic boxes: the real tracker (``trackers``'
ByteTrack), the real zone/line logic and metrics, no camera and no detector.

A 640x480 scene; one person box of 40x80 pixels moves by a few pixels a frame. Every test feeds
:class:`~daemon.events.events.CameraEvents` frame by frame with its capture time.
"""

from __future__ import annotations

import numpy as np
import pytest

from daemon.config import CameraConfig, ConfigError, parse_config
from daemon.events.events import CameraEvents
from daemon.events.geometry import Line, Zone
from daemon.metrics import Metrics
from engines.detections import Detections

W, H = 640, 480
IMAGE = np.zeros((H, W, 3), np.uint8)
CLASSES = ["car", "person"]


def box_at(cx: float, bottom: float, w: float = 40, h: float = 80) -> list[float]:
    return [cx - w / 2, bottom - h, cx + w / 2, bottom]


def dets(*boxes, cls="person", score=0.9) -> Detections:
    if not boxes:
        return Detections.empty()
    return Detections(np.array(boxes, np.float32), np.full(len(boxes), score, np.float32),
                      np.zeros(len(boxes), np.int32), (cls,) * len(boxes))


def camera(**over) -> CameraConfig:
    d = {"name": "yard", "url": "rtsp://h/x", "fps": 10,
         "tracking": {"min_age_frames": 3, "min_score": 0.5, "lost_track_s": 1.0}}
    d.update(over)
    return CameraConfig.model_validate(d)


def run(cam_events: CameraEvents, frames, t0=100.0, dt=0.1, enhanced=lambda i: False):
    """Feed ``frames`` (a list of Detections) at ``dt`` apart; all events, in order."""
    out = []
    for i, d in enumerate(frames):
        out += cam_events.observe(d, t0 + i * dt, 1.7e9 + i * dt, IMAGE, enhanced(i))
    return out


def metrics() -> Metrics:
    m = Metrics()
    m.set_classes(CLASSES)
    m.add_camera("yard")
    return m


def value(m: Metrics, name: str, **labels) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def walk(x0, x1, steps, bottom=300):
    return [dets(box_at(x0 + (x1 - x0) * i / (steps - 1), bottom)) for i in range(steps)]


# -- lines --------------------------------------------------------------------------------------
def test_line_crossings_by_direction():
    # a vertical line drawn bottom -> top: walking up it, screen-left is your left, so moving
    # left -> right on screen is "in", right -> left is "out"
    cam = camera(lines=[{"name": "gate", "points": [[0.5, 1.0], [0.5, 0.0]]}])
    m = metrics()
    ev = CameraEvents(cam, m, CLASSES)
    first = run(ev, walk(100, 540, 30))
    crossed = [e for e in first if e.type == "crossed"]
    assert [(e.line, e.direction, e.cls) for e in crossed] == [("gate", "in", "person")]
    # the same object walks back after a pause on the right: one "out"
    back = run(ev, walk(540, 100, 30), t0=103.1)
    crossed_back = [e for e in back if e.type == "crossed"]
    assert [e.direction for e in crossed_back] == ["out"]
    assert crossed_back[0].track_id == crossed[0].track_id
    labels = dict(camera="yard", line="gate", **{"class": "person"})
    assert value(m, "duskwatch_line_crossings_total", direction="in", **labels) == 1
    assert value(m, "duskwatch_line_crossings_total", direction="out", **labels) == 1
    assert value(m, "duskwatch_events_total", camera="yard", type="crossed") == 2
    # series for every class and direction exist from the start
    assert m.registry.get_sample_value("duskwatch_line_crossings_total",
                                       dict(camera="yard", line="gate", direction="out",
                                            **{"class": "car"})) == 0


def test_swapping_line_points_swaps_directions_and_jitter_on_the_line_is_no_crossing():
    cam = camera(lines=[{"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]]}])
    ev = CameraEvents(cam, metrics(), CLASSES)
    assert [e.direction for e in run(ev, walk(100, 540, 30)) if e.type == "crossed"] == ["out"]
    # an object standing on the line, its box jittering by +-3 px: no crossing at all
    ev2 = CameraEvents(cam, metrics(), CLASSES)
    jitter = [dets(box_at(320 + (3 if i % 2 else -3), 300)) for i in range(40)]
    assert [e for e in run(ev2, jitter) if e.type == "crossed"] == []


def test_passing_beside_the_segment_is_no_crossing():
    # the line covers only the top half; the object walks across the bottom
    cam = camera(lines=[{"name": "half", "points": [[0.5, 0.0], [0.5, 0.4]]}])
    ev = CameraEvents(cam, metrics(), CLASSES)
    assert [e for e in run(ev, walk(100, 540, 30, bottom=450)) if e.type == "crossed"] == []


# -- zones, dwell, loitering --------------------------------------------------------------------
def test_zone_entry_dwell_loitering_and_exit():
    zone = {"name": "door", "points": [[300, 200], [500, 200], [500, 400], [300, 400]],
            "coords": "pixels", "loiter_s": 2.0}
    m = metrics()
    ev = CameraEvents(camera(zones=[zone]), m, CLASSES)
    # walks in (8 px a frame, a fifth of its width), stands inside for 3 s, walks out
    frames = walk(100, 400, 40) + [dets(box_at(400, 300))] * 30 + walk(400, 640, 30)
    events = run(ev, frames)
    types = [(e.type, e.zone) for e in events if e.type != "appeared"]
    assert types == [("entered", "door"), ("loitered", "door"), ("exited", "door")]
    entered, loitered, exited = (next(e for e in events if e.type == t)
                                 for t in ("entered", "loitered", "exited"))
    assert loitered.dwell_s == pytest.approx(2.0, abs=0.11)
    assert exited.dwell_s == pytest.approx(exited.wall - entered.wall, abs=1e-6)
    assert exited.dwell_s > 3.0
    labels = dict(camera="yard", zone="door", **{"class": "person"})
    assert value(m, "duskwatch_zone_entries_total", **labels) == 1
    assert value(m, "duskwatch_zone_objects", **labels) == 0
    # while inside, the gauge showed the object
    ev2 = CameraEvents(camera(zones=[zone]), m, CLASSES)
    run(ev2, [dets(box_at(400, 300))] * 5)
    assert value(m, "duskwatch_zone_objects", **labels) == 1


def test_zone_classes_filter():
    zone = {"name": "road", "points": [[0, 0], [1, 0], [1, 1], [0, 1]], "classes": ["car"]}
    ev = CameraEvents(camera(zones=[zone]), metrics(), CLASSES)
    assert [e for e in run(ev, [dets(box_at(320, 300))] * 10) if e.type == "entered"] == []


# -- track ids, counting, gone ------------------------------------------------------------------
def test_ids_survive_skipped_frames_and_enhancer_switching_then_gone():
    m = metrics()
    ev = CameraEvents(camera(), m, CLASSES)
    # 10 fps, but the latest-frame policy skipped 4 of every 5 frames in the middle: gaps of
    # 0.5 s in which the object moved 25 px; and the enhancer is on for every other frame
    times = [100 + 0.1 * i for i in range(10)] + [101 + 0.5 * i for i in range(1, 6)]
    events, ids = [], set()
    for i, t in enumerate(times):
        x = 100 + 5 * i if i < 10 else 145 + 25 * (i - 9)
        out = ev.observe(dets(box_at(x, 300)), t, 1.7e9 + t, IMAGE, enhanced=i % 2 == 0)
        events += out
        ids |= set(ev.tracks)
    assert len(ids) == 1, f"the track id changed: {ids}"
    assert [e.type for e in events] == ["appeared"]
    # unseen for longer than lost_track_s (1 s): gone, once, with its whole life
    gone = ev.expire(times[-1] + 1.2)
    assert [e.type for e in gone] == ["gone"]
    # (the library hands out an id at a track's second frame)
    assert gone[0].dwell_s == pytest.approx(times[-1] - times[1], abs=1e-6)
    assert ev.expire(times[-1] + 5) == []
    assert value(m, "duskwatch_tracks_total", camera="yard", **{"class": "person"}) == 1
    assert value(m, "duskwatch_objects", camera="yard", **{"class": "person"}) == 0


def test_a_parked_car_counts_once_and_short_or_weak_tracks_do_not_count():
    m = metrics()
    ev = CameraEvents(camera(), m, CLASSES)
    run(ev, [dets(box_at(200, 400, 120, 80), cls="car")] * 100)  # 10 s parked
    assert value(m, "duskwatch_detections_total", camera="yard", **{"class": "car"}) == 1
    assert value(m, "duskwatch_tracks_total", camera="yard", **{"class": "car"}) == 1
    assert value(m, "duskwatch_objects", camera="yard", **{"class": "car"}) == 1
    # seen in 2 frames (min_age_frames 3): never counts; score 0.3 (< min_score 0.5): never counts
    ev2 = CameraEvents(camera(), metrics(), CLASSES)
    assert run(ev2, [dets(box_at(300, 300))] * 2) == []
    ev3 = CameraEvents(camera(), metrics(), CLASSES)
    assert run(ev3, [dets(box_at(300, 300), score=0.3)] * 20) == []


def test_tracking_classes_and_reload_keeps_ids():
    m = metrics()
    ev = CameraEvents(camera(tracking={"classes": ["car"], "min_age_frames": 2}), m, CLASSES)
    assert run(ev, [dets(box_at(300, 300))] * 5) == []  # people are not tracked here
    ev = CameraEvents(camera(), m, CLASSES)
    run(ev, walk(100, 200, 10))
    before = set(ev.tracks)
    # a reload adds a line: the track keeps its id, and the new line counts its crossing
    ev.reconfigure(camera(lines=[{"name": "new", "points": [[0.5, 0], [0.5, 1]]}]))
    events = run(ev, walk(210, 540, 30), t0=101.0)
    assert set(ev.tracks) == before
    assert [(e.type, e.line) for e in events] == [("crossed", "new")]


# -- geometry and config ------------------------------------------------------------------------
def test_geometry():
    z = Zone("z", np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float), frozenset(), 0)
    assert z.contains((5, 5)) and z.contains((10, 5)) and not z.contains((11, 5))
    ln = Line("l", (0, 0), (10, 0), frozenset(), 1.0)
    assert ln.side((5, 5)) == 1 and ln.side((5, -5)) == -1 and ln.side((5, 0.5)) == 0
    assert ln.crossed((5, -5), (5, 5)) and not ln.crossed((15, -5), (15, 5))


def test_config_errors_name_the_key_and_the_fix(tmp_path):
    eng = tmp_path / "d.onnx"
    eng.write_bytes(b"x")
    base = {"engines": {"detector": str(eng)}}
    cam = {"name": "gate", "url": "rtsp://h/x"}
    with pytest.raises(ConfigError, match=r"zones\[0\] \(a\): point \[640.0, 0.0\] is outside 0\.\.1.*coords: pixels"):
        parse_config({**base, "cameras": [{**cam, "zones": [
            {"name": "a", "points": [[0, 0], [640, 0], [640, 480]]}]}]})
    with pytest.raises(ConfigError, match="line name 'x' is used twice"):
        parse_config({**base, "cameras": [{**cam, "lines": [
            {"name": "x", "points": [[0, 0], [1, 1]]}, {"name": "x", "points": [[0, 1], [1, 0]]}]}]})
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.mqtt\.hots: unknown key"):
        parse_config({**base, "sinks": [{"type": "mqtt", "host": "h", "hots": "x"}]})
    with pytest.raises(ConfigError, match="event sink name 'mqtt' is used twice"):
        parse_config({**base, "sinks": [{"type": "mqtt", "host": "a"}, {"type": "mqtt", "host": "b"}]})
    with pytest.raises(ConfigError, match=r"url: must be http\(s\)://host"):
        parse_config({**base, "sinks": [{"type": "webhook", "url": "ftp://x"}]})
    # the per-frame JSONL sink is off by default now
    assert parse_config(base).sinks == []


def test_metrics_series_follow_reloads_and_camera_removal():
    m = metrics()
    ev = CameraEvents(camera(lines=[{"name": "a", "points": [[0.5, 0], [0.5, 1]]}]), m, CLASSES)
    run(ev, walk(100, 540, 30))
    labels = dict(camera="yard", line="a", direction="out", **{"class": "person"})
    assert value(m, "duskwatch_line_crossings_total", **labels) == 1
    # a reload adds line b: line a keeps its count, b starts at zero
    ev.reconfigure(camera(lines=[{"name": "a", "points": [[0.5, 0], [0.5, 1]]},
                                 {"name": "b", "points": [[0.2, 0], [0.2, 1]]}]))
    assert value(m, "duskwatch_line_crossings_total", **labels) == 1
    assert m.registry.get_sample_value("duskwatch_line_crossings_total",
                                       {**labels, "line": "b"}) == 0
    # a reload without line a removes its series; removing the camera removes the rest
    ev.reconfigure(camera(lines=[{"name": "b", "points": [[0.2, 0], [0.2, 1]]}]))
    assert m.registry.get_sample_value("duskwatch_line_crossings_total", labels) is None
    m.remove_camera("yard")
    text = m.render().decode()
    assert 'camera="yard"' not in text


# -- event times ---------------------------------------------------------------------------------
def test_event_time_only_goes_forward_and_gone_says_when_it_happened(tmp_path):
    """A track lost while another keeps raising events: `gone` is raised (time) at the frame
    that found it lost, after the other's events, and says when it was last seen (happened).
    The JSONL sink adds when it sent each event."""
    import json

    from daemon.config import EventsJsonlSinkConfig
    from daemon.events.sinks import EventsJsonlSink

    ev = CameraEvents(camera(lines=[{"name": "mid", "points": [[0.5, 0.0], [0.5, 1.0]]}]),
                      metrics(), CLASSES)
    frames = []
    for i in range(40):
        a = [box_at(100 + 4 * i, 200)] if i < 10 else []  # A: lost after frame 9
        b = [box_at(260 + 5 * i, 420)]  # B: walks right, across the middle line (x = 320) at 12
        frames.append(dets(*(a + b)))
    events = run(ev, frames)
    walls = {round(1.7e9 + i * 0.1, 3) for i in range(40)}
    times = [e.wall for e in events]
    assert times == sorted(times), [(e.type, e.wall) for e in events]
    types = [e.type for e in events]
    assert "crossed" in types and "gone" in types and types.index("crossed") < types.index("gone")
    gone = next(e for e in events if e.type == "gone")
    assert gone.happened == pytest.approx(1.7e9 + 0.9)  # A's last sighting (frame 9)
    assert round(gone.wall, 3) in walls and gone.wall - gone.happened > 1.0  # lost_track_s later
    assert all(e.happened == e.wall for e in events if e.type != "gone")

    sink = EventsJsonlSink(EventsJsonlSinkConfig(type="events_jsonl", path=str(tmp_path / "e.jsonl")),
                           on_drop=lambda name: None)
    sink.start()
    for e in events:
        sink.offer(e.to_dict())
    sink.close(timeout=10)
    written = [json.loads(ln) for ln in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [w["id"] for w in written] == [e.id for e in events]
    assert [w["epoch"] for w in written] == sorted(w["epoch"] for w in written)
    assert all(w["happened"] <= w["time"] <= w["sent"] for w in written)  # ISO UTC: sortable
    assert {"time", "happened", "sent", "epoch"} <= set(written[0])
