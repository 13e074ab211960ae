"""Scheduler and pipeline with fakes at the seams and a manual clock (no timing assertions)."""

import pytest

from daemon.config import CameraConfig, LowLightConfig, SchedulerConfig
from daemon.pipeline.gate import LowLightGate
from daemon.metrics import Metrics
from daemon.pipeline.scheduler import CameraSlot, Pipeline, Scheduler
from daemon.pipeline.sinks import SinkSet
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


class Events:
    def on_state(self, change): pass
    def on_frame_skipped(self, camera, count): pass
    def on_reconnect(self, camera): pass


class ListSink:
    name = "list"

    def __init__(self):
        self.results = []

    def write(self, r):
        self.results.append(r)

    def close(self):
        pass


def value(metrics, name, **labels):
    v = metrics.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def build(names=("a", "b"), fps=10.0, max_batch=8, enhancer=None, mode="auto", detector=None,
          views=("enhanced",), picture="enhanced"):
    clock = Clock()
    metrics = Metrics()
    sink = ListSink()
    det = detector or FakeDetector()
    pipe = Pipeline(det, metrics, SinkSet([sink]), enhancer=enhancer, clock=clock)
    sched = Scheduler(pipe, SchedulerConfig(max_batch=max_batch, batch_timeout_ms=0), metrics,
                      clock=clock, idle_s=0.0, count_seq_gaps=True)
    metrics.set_classes(det.names.values())
    sources = {}
    for n in names:
        cfg = CameraConfig(name=n, url=f"rtsp://h/{n}", fps=fps, enhance=mode)
        src = FakeSource(cfg, Events(), clock=clock)
        sources[n] = src
        metrics.add_camera(n)
        sched.add_camera(CameraSlot(n, src, LowLightGate(LowLightConfig(smoothing=1.0, enhance_below=55.0, max_highlight=1.0,
                                                                views=views), mode, picture), fps))
    return clock, metrics, sink, sched, sources, det


def test_fps_limit_counts_the_rest_as_dropped():
    # a 30 fps camera limited to 10 fps, over 3 simulated seconds
    clock, metrics, sink, sched, src, _ = build(names=("a",), fps=10)
    for _ in range(90):
        src["a"].push()
        sched.step()
        clock.t += 1 / 30
    processed = value(metrics, "duskwatch_frames_total", camera="a", outcome="processed")
    dropped = value(metrics, "duskwatch_frames_total", camera="a", outcome="dropped")
    assert 29 <= processed <= 31
    # every frame is accounted for: taken or dropped (the last pushed one may still wait)
    assert processed + dropped in (89, 90)
    assert len(sink.results) == processed


def test_frames_at_the_limit_are_not_dropped():
    clock, metrics, _, sched, src, _ = build(names=("a",), fps=10)
    for _ in range(50):
        src["a"].push()
        sched.step()
        clock.t += 0.1
    assert value(metrics, "duskwatch_frames_total", camera="a", outcome="processed") == 50
    assert value(metrics, "duskwatch_frames_total", camera="a", outcome="dropped") == 0


def test_round_robin_with_small_batches_starves_nobody():
    clock, metrics, sink, sched, src, det = build(names=("a", "b", "c", "d"), fps=100, max_batch=1)
    for _ in range(40):
        for s in src.values():
            s.push()
        sched.step()
        clock.t += 0.05
    counts = {n: value(metrics, "duskwatch_frames_total", camera=n, outcome="processed") for n in src}
    assert set(counts.values()) == {10.0}, counts
    assert det.calls == [1] * 40


def test_batches_gather_one_frame_per_camera():
    clock, metrics, sink, sched, src, det = build(names=("a", "b", "c"), max_batch=8)
    for s in src.values():
        s.push()
    assert sched.step() == 3
    assert det.calls == [3]
    assert sorted(r.camera for r in sink.results) == ["a", "b", "c"]
    # nothing new: nothing processed, the detector is not called
    clock.t += 1
    assert sched.step() == 0 and det.calls == [3]


def test_views_of_a_dark_frame_go_through_the_detector_in_one_call_and_merge():
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("dark", "light"), enhancer=enh,
                                                  views=("raw", "enhanced", "clahe"))
    src["dark"].push(value=10)
    src["light"].push(value=200)
    sched.step()
    # dark: raw + enhanced + CLAHE, light: raw; one detector call, one enhancer call
    assert det.calls == [4] and enh.calls == [1]
    by_cam = {r.camera: r for r in sink.results}
    # raw and CLAHE of a flat dark frame are 'car' at the same box: merged into one; the
    # enhanced picture is 'person': kept beside it (NMS is per class)
    assert sorted(by_cam["dark"].detections.names) == ["car", "person"]
    assert by_cam["light"].detections.names == ("person",)
    assert by_cam["dark"].enhanced and not by_cam["light"].enhanced
    snap = sched.pipeline.snapshots.get("dark")
    assert snap.image.mean() == pytest.approx(160)  # snapshots show the enhanced picture


def test_views_without_an_enhancer_leave_enhanced_out():
    clock, metrics, sink, sched, src, det = build(names=("dark",), views=("enhanced", "clahe"))
    src["dark"].push(value=10)
    sched.step()
    assert det.calls == [1]  # CLAHE only: no enhancer configured
    # the gate picked it (lowlight), the enhancer did not run (enhanced means it did)
    assert sink.results[0].lowlight and not sink.results[0].enhanced
    assert value(metrics, "duskwatch_frames_enhanced_total", camera="dark") == 0
    clock, metrics, sink, sched, src, det = build(names=("dark",), views=("enhanced",))
    src["dark"].push(value=10)
    sched.step()
    assert det.calls == [1] and not sink.results[0].enhanced  # nothing left: the raw frame


def test_mirror_view_is_merged_in_frame_pixels():
    clock, metrics, sink, sched, src, det = build(names=("dark",), views=("raw", "mirror"))
    src["dark"].push(value=10)
    sched.step()
    assert det.calls == [2]
    boxes = sorted(sink.results[0].detections.boxes.tolist())
    # FakeDetector puts its box at (1, 2, w/2, h/2) of whatever it sees; on the mirror that is
    # (w/2, 2, w-1, h/2) of the frame: two boxes that do not overlap, both kept
    w, h = 64, 48  # FakeSource.push's frame
    assert boxes == [[1.0, 2.0, w / 2, h / 2], [w / 2, 2.0, w - 1.0, h / 2]]


def test_detector_failure_counts_failed_and_the_loop_goes_on():
    clock, metrics, sink, sched, src, det = build(names=("a", "b"))
    det.fail = True
    for s in src.values():
        s.push()
    assert sched.step() == 0
    assert value(metrics, "duskwatch_frames_total", camera="a", outcome="failed") == 1
    assert value(metrics, "duskwatch_frames_total", camera="b", outcome="failed") == 1
    assert value(metrics, "duskwatch_engine_failures_total", stage="detect") == 1
    det.fail = False
    clock.t += 1
    for s in src.values():
        s.push()
    assert sched.step() == 2
    assert value(metrics, "duskwatch_frames_total", camera="a", outcome="processed") == 1


def test_enhancer_runs_on_dark_frames_only():
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("dark", "light"), enhancer=enh)
    src["dark"].push(value=10)
    src["light"].push(value=200)
    sched.step()
    assert enh.calls == [1]
    by_cam = {r.camera: r for r in sink.results}
    assert by_cam["dark"].enhanced and not by_cam["light"].enhanced
    # the detector saw the enhanced picture (brightened -> 'person')
    assert by_cam["dark"].detections.names == ("person",)
    assert value(metrics, "duskwatch_frames_enhanced_total", camera="dark") == 1
    assert value(metrics, "duskwatch_frames_enhanced_total", camera="light") == 0
    assert value(metrics, "duskwatch_camera_lowlight", camera="dark") == 1
    assert value(metrics, "duskwatch_camera_lowlight", camera="light") == 0
    # duskwatch_detections_total counts tracked objects once each, in the event stage (this
    # pipeline has none): tests/test_events_tracking.py checks it
    assert value(metrics, "duskwatch_detections_total", camera="dark", **{"class": "person"}) == 0
    snap = sched.pipeline.snapshots.get("dark")
    assert snap.result.enhanced and snap.image.mean() == pytest.approx(160)


def test_enhancer_failure_fails_dark_frames_only():
    enh = FakeEnhancer(fail=True)
    clock, metrics, sink, sched, src, det = build(names=("dark", "light"), enhancer=enh)
    src["dark"].push(value=10)
    src["light"].push(value=200)
    assert sched.step() == 1
    assert value(metrics, "duskwatch_frames_total", camera="dark", outcome="failed") == 1
    assert value(metrics, "duskwatch_frames_total", camera="light", outcome="processed") == 1
    assert value(metrics, "duskwatch_engine_failures_total", stage="enhance") == 1
    assert value(metrics, "duskwatch_engine_failures_total", stage="detect") == 0


def test_never_mode_skips_the_enhancer_even_when_dark():
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("a",), enhancer=enh, mode="never")
    src["a"].push(value=5)
    sched.step()
    assert enh.calls == [] and not sink.results[0].enhanced
    assert value(metrics, "duskwatch_camera_lowlight", camera="a") == 1


def test_stage_histograms_and_frame_age():
    clock, metrics, sink, sched, src, det = build(names=("a",))
    src["a"].push(decode_s=0.004)
    clock.t += 0.25  # the frame waited a quarter second before the scheduler took it
    sched.step()
    assert value(metrics, "duskwatch_stage_duration_seconds_count", stage="decode") == 1
    assert value(metrics, "duskwatch_stage_duration_seconds_sum", stage="decode") == pytest.approx(0.004)
    assert value(metrics, "duskwatch_stage_duration_seconds_count", stage="detect") == 1
    assert value(metrics, "duskwatch_stage_duration_seconds_count", stage="enhance") == 0
    assert value(metrics, "duskwatch_frame_age_seconds", camera="a") == pytest.approx(0.25)


def test_a_broken_source_does_not_stop_the_others():
    clock, metrics, sink, sched, src, det = build(names=("a", "b"))
    src["a"].fail_latest = True
    src["a"].push()
    src["b"].push()
    assert sched.step() == 1
    assert sink.results[0].camera == "b"


def test_run_loop_processes_frames_in_a_thread():
    clock, metrics, sink, sched, src, det = build(names=("a",))
    sched.clock = __import__("time").monotonic
    sched.idle_s = 0.05
    src["a"].push()
    sched.start()
    try:
        import time
        end = time.monotonic() + 5
        while not sink.results and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        assert sched.stop(timeout=2)
    assert len(sink.results) == 1


def test_temporal_enhancer_gets_each_frames_camera():
    class StreamEnhancer(FakeEnhancer):
        temporal = True

        def __call__(self, images, streams=None):
            self.streams = list(streams)
            return super().__call__(images)

    enh = StreamEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("a", "b", "light"), enhancer=enh)
    src["a"].push(value=10)
    src["b"].push(value=12)
    src["light"].push(value=200)
    sched.step()
    assert sorted(enh.streams) == ["a", "b"]  # dark frames only, keyed by camera
    assert all(r.enhanced for r in sink.results if r.camera in ("a", "b"))


def test_a_low_light_camera_is_shown_enhanced_even_when_the_detector_does_not_look_at_it():
    """The enhancer's two jobs apart: views without 'enhanced' still give people the enhanced
    picture (one enhancer call, made when the snapshot is first looked at), while the detector
    sees only its views; the raw frame is kept."""
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("dark",), enhancer=enh, views=("clahe",))
    src["dark"].push(value=10)
    sched.step()
    assert enh.calls == [] and det.calls == [1]  # nobody looked at the picture yet
    r = sink.results[0]
    assert r.lowlight and r.enhanced
    assert r.detections.names != ("person",)  # the detector saw CLAHE, not the enhanced picture
    snap = sched.pipeline.snapshots.get("dark")
    assert snap.image.mean() == pytest.approx(160) and snap.picture("raw").mean() == pytest.approx(10)
    assert snap.image.shape == snap.raw.shape
    assert enh.calls == [1]  # made once, on first look


def test_picture_raw_keeps_the_decoded_frame_and_skips_the_enhancer_it_does_not_need():
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("dark",), enhancer=enh, views=("clahe",),
                                                  picture="raw")
    src["dark"].push(value=10)
    sched.step()
    assert enh.calls == [] and not sink.results[0].enhanced
    snap = sched.pipeline.snapshots.get("dark")
    assert snap.image.mean() == pytest.approx(10) and snap.raw is None


def test_overload_sheds_views_before_frames_and_counts_them():
    """A frame taken a whole fps period late, with newer frames skipped, is detected on its
    first view only; the views not made are counted."""
    enh = FakeEnhancer()
    clock, metrics, sink, sched, src, det = build(names=("dark",), enhancer=enh, fps=10.0,
                                                  views=("clahe", "mirror", "raw"))
    src["dark"].push(value=10)
    sched.step()
    assert det.calls == [3]  # on time: every view
    clock.t += 0.35  # the scheduler comes back 3.5 periods later; the camera sent 3 frames
    for _ in range(3):
        src["dark"].push(value=10)
    sched.step()
    assert det.calls == [3, 1]
    assert value(metrics, "duskwatch_views_shed_total", camera="dark") == 2
    clock.t += 0.1  # back on time
    src["dark"].push(value=10)
    sched.step()
    assert det.calls == [3, 1, 3]
