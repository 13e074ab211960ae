"""Events inside the service, with fakes only at the camera and detector seams: SIGHUP reload of
zones, lines and event sinks without dropping a camera; bounded event-sink queues whose every
drop is counted; evidence retention under a tiny quota with the real writer thread."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import yaml

from daemon.config import EvidenceConfig, WebhookSinkConfig, load_config
from daemon.events.evidence import (
    ClipClose,
    ClipFrame,
    ClipOpen,
    EvidenceWriter,
    RingFrame,
    SnapshotJob,
    enforce_retention,
)
from daemon.events.sinks import WebhookSink
from daemon.metrics import Metrics
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeSource
from tests.wait import wait_for


def config(tmp: Path, lines: list, sinks: list) -> dict:
    return {
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate", "lines": lines,
                     "tracking": {"min_age_frames": 1, "lost_track_s": 0.5}}],
        "engines": {"detector": "/nonexistent/det.onnx", "check_files": False},
        "sinks": sinks,
        "events": {"evidence": {"dir": str(tmp / "evidence")}},
    }


def test_sighup_reload_of_lines_and_sinks_keeps_the_camera_streaming(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(tmp_path, [], [])))
    sources: list[FakeSource] = []

    def factory(cam, events):
        sources.append(FakeSource(cam, events))
        return sources[-1]

    svc = Service(load_config(path), source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: None, notifier=Notifier(environ={}), serve_http=False,
                  config_path=path)
    svc.start()
    try:
        src = sources[0]

        def appeared():
            src.push(value=200)  # a new frame each poll: the library names a track at its 2nd
            return svc.view.events_list(type_="appeared")

        assert wait_for(appeared)
        text = svc.metrics.render().decode()
        assert "duskwatch_line_crossings_total{" not in text
        new = config(tmp_path, [{"name": "door", "points": [[0.5, 0], [0.5, 1]]}],
                     [{"type": "events_jsonl", "path": str(tmp_path / "ev.jsonl")}])
        path.write_text(yaml.safe_dump(new))
        assert svc.reload_from_file()
        # the new line's series and the new sink's drop counter exist at zero ...
        assert wait_for(lambda: 'duskwatch_line_crossings_total{camera="gate",class="person",'
                        'direction="in",line="door"} 0.0' in svc.metrics.render().decode())
        assert 'duskwatch_sink_events_dropped_total{sink="events_jsonl"} 0.0' in svc.metrics.render().decode()
        # ... the camera was not restarted, and its track kept its id
        assert len(sources) == 1 and src.stopped == 0
        track_ids = {e["track_id"] for e in svc.view.events_list()}
        for _ in range(3):
            src.push(value=200)
            time.sleep(0.05)
        assert wait_for(lambda: svc.events.cameras["gate"].tracks)
        assert set(svc.events.cameras["gate"].tracks) == track_ids
        # no more frames: the object is gone after lost_track_s, and the new sink gets that
        assert wait_for(lambda: svc.view.events_list(type_="gone"))
    finally:
        svc.stop()
    written = [yaml.safe_load(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert [(e["type"], e["track_id"]) for e in written] == [("gone", min(track_ids))]


def test_a_dead_webhook_never_blocks_and_every_drop_is_counted(closed_port):
    m = Metrics()
    cfg = WebhookSinkConfig(type="webhook", url=f"http://127.0.0.1:{closed_port}/x", queue_size=3,
                            retries=1, backoff_max_s=0.05, timeout_s=0.5)
    drops = []
    sink = WebhookSink(cfg, on_drop=lambda name: (drops.append(name),
                                                  m.sink_events_dropped.labels(name).inc()))
    sink.start()
    t0 = time.monotonic()
    offered = [sink.offer({"id": f"{i:016x}", "type": "crossed", "camera": "gate"}) for i in range(20)]
    assert time.monotonic() - t0 < 0.5  # offer() never waits for the receiver
    assert offered.count(False) >= 20 - 3 - 1  # the queue holds 3 (+1 being sent)
    sink.close(timeout=10)
    # every event is either delivered or counted as dropped: none vanished
    assert sink.delivered == 0 and sink.dropped == 20 == len(drops)
    assert m.registry.get_sample_value("duskwatch_sink_events_dropped_total", {"sink": "webhook"}) == 20


def test_retention_keeps_the_folder_under_a_tiny_quota(tmp_path):
    quota = 300_000  # about a third of what is written
    cfg = EvidenceConfig(dir=tmp_path / "ev", max_bytes=quota, queue_size=1000, max_age_days=1)
    writer = EvidenceWriter(cfg, retention_interval_s=0.0)
    writer.start()
    rng = np.random.default_rng(0)
    for i in range(12):  # noisy frames: ~60 kB JPEGs, and ~20 kB clips
        img = rng.integers(0, 255, (240, 320, 3), np.uint8)
        writer.submit(SnapshotJob(tmp_path / "ev" / "gate" / "2026-11-28" / f"{i:016x}.jpg",
                                  img, (10, 10, 100, 100), "person #1", 90))
        frames = [RingFrame(t, img, 1.0, [((10, 10, 50, 50), "x")]) for t in range(5)]
        key = f"clip{i}"
        writer.submit(ClipOpen(key, tmp_path / "ev" / "gate" / "2026-11-28" / f"c{i:015x}.mp4", frames[:3], 5))
        writer.submit(ClipFrame(key, frames[3]))
        writer.submit(ClipClose(key))
    writer.close(timeout=30)
    enforce_retention(cfg.dir, 86400, quota)  # the writer's last pass may predate its last file
    files = [p for p in (tmp_path / "ev").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    assert writer.written == 24 and 0 < size <= quota, (writer.written, size)
    # the newest survive, the oldest went
    names = {p.name for p in files}
    assert f"c{11:015x}.mp4" in names and f"{11:016x}.jpg" in names
    assert f"{0:016x}.jpg" not in names and f"c{0:015x}.mp4" not in names


def test_retention_by_age_and_empty_folders(tmp_path):
    old = tmp_path / "gate" / "2026-01-01" / "a.jpg"
    new = tmp_path / "gate" / "2026-11-28" / "b.mp4"
    part = tmp_path / "gate" / "2026-11-28" / "c.mp4.part"
    for p in (old, new, part):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    deleted = enforce_retention(tmp_path, 7 * 86400, 10**9)
    assert deleted == [old] and not old.parent.exists()
    assert new.exists() and part.exists()


def test_a_full_evidence_queue_never_leaves_a_clip_encoder_open(tmp_path):
    """Under load the writer's queue fills; a clip's close must still come after its open, or
    the encoder (and its x264 threads and buffers) stays open for good. The soak found 50 such
    encoders after 30 minutes: 270 threads and +500 MB."""
    cfg = EvidenceConfig(dir=tmp_path / "ev", queue_size=2, max_age_days=1)
    writer = EvidenceWriter(cfg, retention_interval_s=3600)
    img = np.full((64, 96, 3), 90, np.uint8)
    frames = [RingFrame(float(t), img, 1.0, []) for t in range(3)]
    day = tmp_path / "ev" / "cam" / "2026-11-29"
    # the writer is not running yet: the queue fills, as it does while it encodes a long clip
    assert writer.submit(ClipOpen("a", day / "a.mp4", frames, 5))
    assert writer.submit(ClipFrame("a", frames[-1]))
    assert not writer.submit(ClipFrame("a", frames[-1]))  # full: dropped and counted
    assert writer.submit(ClipClose("a"), force=True)  # a close is never dropped
    writer.start()
    assert wait_for(lambda: (day / "a.mp4").exists(), 20), "the clip was never finished"
    writer.close(timeout=20)
    assert writer.open_clips == 0 and writer.dropped == 1
    assert not list(day.glob("*.part"))


def test_a_dark_cameras_event_snapshot_shows_the_enhanced_picture_and_keeps_the_raw_one(tmp_path):
    """camera.picture: enhanced (the default) -> the event snapshot is the enhancer's picture,
    brighter than the camera's frame and the same size, with the decoded frame beside it;
    picture: raw -> the decoded frame only."""
    import cv2

    from tests.daemon_fakes import FakeEnhancer

    raw = dict(config(tmp_path, [], [])["cameras"][0], name="raw", picture="raw")
    cfg = config(tmp_path, [], [])
    cfg["cameras"].append(raw)
    cfg["engines"]["enhancer"] = "/nonexistent/enh.onnx"
    cfg["lowlight"] = {"views": ["clahe"]}  # the detector never looks at the enhanced picture
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sources: dict[str, FakeSource] = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(load_config(path), source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}), serve_http=False)
    svc.start()
    try:
        def snapshots():
            for s in sources.values():
                s.push(np.full((120, 160, 3), 20, np.uint8))
            evs = {e["camera"]: e for e in svc.view.events_list(type_="appeared")}
            return evs if set(evs) == {"gate", "raw"} and all(
                Path(e["snapshot"]).is_file() for e in evs.values()) and Path(
                evs["gate"].get("snapshot_raw", "/nonexistent")).is_file() else None

        evs = wait_for(snapshots, timeout=20)
        assert evs, "no event snapshots written"
        shown = cv2.imread(evs["gate"]["snapshot"])
        kept = cv2.imread(evs["gate"]["snapshot_raw"])
        assert shown.shape == kept.shape == (120, 160, 3)
        assert shown.mean() > kept.mean() + 80  # the enhanced picture; the raw frame beside it
        assert evs["gate"]["pictures"] == ["enhanced", "raw"]
        assert evs["raw"]["pictures"] == ["raw"] and "snapshot_raw" not in evs["raw"]
        assert cv2.imread(evs["raw"]["snapshot"]).mean() < 60
    finally:
        svc.stop()


def test_an_event_never_names_a_snapshot_or_clip_whose_job_was_dropped(tmp_path):
    """The writer's queue full (it is busy: here, not started), new events' snapshot and clip
    jobs are dropped and counted; their records then name no file, so neither /events, MQTT nor
    the review page point at a file that will never exist. Once the writer runs, every file a
    record names exists."""
    from daemon.config import parse_config
    from daemon.events.sinks import EventSinkSet
    from daemon.events.stage import EventStage
    from daemon.pipeline.frames import Frame, Result
    from engines.detections import Detections

    raw = config(tmp_path, [], [])
    raw["events"]["evidence"].update(queue_size=1, clip_types=["appeared"], pre_s=0)
    cfg = parse_config(raw)
    metrics = Metrics()
    metrics.add_camera("gate")
    stage = EventStage(cfg.events, metrics, EventSinkSet([]), classes=["person"])
    stage.configure_camera(cfg.cameras[0])
    image = np.full((120, 160, 3), 90, np.uint8)
    boxes = []
    for seq in range(5):  # a new person in each of the first four frames: an 'appeared' each
        if seq < 4:
            boxes.append([10 + 30 * seq, 10, 30 + 30 * seq, 60])
        dets = Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32),
                          np.zeros(len(boxes), np.int64), ("person",) * len(boxes))
        now = time.monotonic()
        frame = Frame("gate", image, seq, now, time.time())
        stage.observe(frame, image, Result("gate", seq, frame.captured_wall, False, dets))
    records = list(reversed(stage.recent.list(type_="appeared")))  # oldest first
    dropped = metrics.registry.get_sample_value("duskwatch_sink_events_dropped_total", {"sink": "evidence"})
    # the queue holds one job: the first event's snapshot; every clip open and later snapshot
    # was dropped and counted, and no record names them
    assert len(records) == 4 and dropped == 3 + 4
    assert records[0]["snapshot_url"] and records[0]["pictures"] == ["raw"]
    assert all(e["snapshot_url"] is None and e["pictures"] == [] for e in records[1:])
    assert all(e["clip_url"] is None for e in records)
    stage.start()
    stage.close(timeout=20)
    for e in records:
        for kind in ("snapshot", "clip"):
            if e.get(kind):
                assert Path(e[kind]).is_file(), (kind, e[kind])
