"""Frames are immutable once published (issue 21): the array a source puts in its latest-frame
slot is read-only, so the scheduler, the evidence ring, snapshots and clip writers can share it
by reference; every stage that draws (views, snapshots, clips, /snapshot.jpg) draws on a copy.
Fakes only at the camera and engine seams; the evidence writer is real (JPEG and clip files)."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.pipeline.latest import LatestFrame
from daemon.pipeline.snapshots import annotate
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, make_config
from tests.wait import wait_for


def test_a_published_frame_is_read_only():
    slot = LatestFrame("cam")
    image = np.zeros((4, 4, 3), np.uint8)
    slot.put(image, 0.0, 0.0)
    frame = slot.take()
    assert frame.image is image and not frame.image.flags.writeable
    with pytest.raises(ValueError):
        frame.image[0, 0, 0] = 1


def test_read_only_frames_go_through_every_view_events_snapshots_and_clips(tmp_path):
    evidence = tmp_path / "ev"
    cfg = make_config(cameras=("gate",),
                      lowlight={"views": ["raw", "enhanced", "clahe", "mirror"]},
                      events={"evidence": {"dir": str(evidence), "snapshots": True, "clips": True,
                                           "pre_s": 0.5, "post_s": 0.5, "max_clip_s": 2}})
    cam = cfg.cameras[0].model_copy(update={"enhance": "always", "tracking": cfg.cameras[0]
                                            .tracking.model_copy(update={"min_age_frames": 1})})
    cfg = cfg.model_copy(update={"cameras": [cam]})  # every frame gets every view
    sources: list[FakeSource] = []

    def factory(cam, events):
        sources.append(FakeSource(cam, events))
        return sources[-1]

    svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}),
                  serve_http=False)
    svc.start()
    pushed = []
    try:
        rng = np.random.default_rng(0)

        def one_more():
            frame = sources[0].push(rng.integers(0, 80, (48, 64, 3), np.uint8))
            pushed.append((frame.image, frame.image.copy()))
            return svc.view.events_list(type_="appeared") and any(evidence.rglob("*.jpg"))

        assert wait_for(one_more, 20, interval=0.05), "no event with a snapshot"
        snap = svc.pipeline.snapshots.get("gate")
        assert snap is not None and not snap.image.flags.writeable
        annotate(snap)  # /snapshot.jpg draws on a copy
    finally:
        svc.stop()
    assert svc.events.writer.written >= 1
    for image, before in pushed:
        assert not image.flags.writeable
        assert np.array_equal(image, before)  # nothing drew on a published frame
