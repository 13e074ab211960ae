"""The daemon's own int8 upgrade (daemon/int8): frames of its cameras collected beside the f32
IR, the int8 IR built (a seam: tests/int8_fake_build.py stands in for the NNCF export), checked
against f32 with no labels, and swapped in without a restart; a disagreeing int8 refused; a
checked one loaded directly at the next start; a stop during a build ends it.

Fakes only at the seams (detector factory, build command, box facts); the service, scheduler,
collector, checker and subprocess handling are the real ones. The real NNCF export and the
agreement of a real int8 IR are in tests/test_int8_export.py and docs/BENCHMARKS.md."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from daemon.install.engine_choice import BoxFacts
from daemon.int8.check import agreement, check
from daemon.int8.collect import FrameCollector
from daemon.int8.sibling import Sibling
from daemon.int8.upgrader import Settings
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from engines.detections import Detections
from tests.daemon_fakes import FakeDetector, FakeSource, make_config
from tests.wait import wait_for

FAKE_BUILD = Path(__file__).with_name("int8_fake_build.py")
VNNI_BOX = BoxFacts(openvino=True, cpu_vnni=True, nncf=True)
NAMES = {0: "person", 1: "car", 2: "dog"}


def fake_build(mode: str):
    return lambda f32, calib, out, frames: [sys.executable, str(FAKE_BUILD), mode, str(f32),
                                            str(calib), str(out)]


def settings(mode: str = "ok", **kw) -> Settings:
    base = dict(facts=VNNI_BOX, every_s=0.02, calib_frames=3, check_frames=2, min_boxes=1,
                build_argv=fake_build(mode), nice=0, retry_after_s=3600)
    return Settings(**{**base, **kw})


@pytest.fixture
def f32_ir(tmp_path) -> Path:
    """An "f32 IR" on disk (its bytes only matter to the hash; the fake factory opens it)."""
    xml = tmp_path / "engines" / "yolo.xml"
    xml.parent.mkdir()
    xml.write_text("<net name='f32'/>")
    xml.with_suffix(".bin").write_bytes(b"\0" * 64)
    return xml


class Disagreeing(FakeDetector):
    """An int8 detector that found nothing where f32 did (broken quantisation)."""

    def __call__(self, images):
        self.calls.append(len(images))
        return [Detections.from_arrays(np.zeros((0, 4)), [], [], self.names) for _ in images]


class SlowStrict(FakeDetector):
    """A detector whose calls take a while and that fails any call once closed, or any two
    calls at once: a swap that closed it under a running call, or ran the two detectors side by
    side on the scheduler's frames, would show as failed frames."""

    busy: bool = False

    def __call__(self, images):
        if self.closed or self.busy:
            raise RuntimeError("called while closed or busy")
        self.busy = True
        try:
            time.sleep(0.1)
            if self.closed:
                raise RuntimeError("closed during the call")
            return super().__call__(images)
        finally:
            self.busy = False


class Factory:
    """The detector factory seam: ``f32`` for the f32 IR, ``int8`` for the int8 one."""

    def __init__(self, int8=FakeDetector, f32=FakeDetector):
        self.int8, self.f32 = int8, f32
        self.opened: list[tuple[str, object]] = []

    def __call__(self, ecfg, max_batch):
        path = str(ecfg.detector)
        det = self.int8() if path.endswith(".int8.xml") else self.f32()
        self.opened.append((path, det))
        return det


def service(f32_ir: Path, factory: Factory, s: Settings, **cfg_extra):
    sources: dict[str, FakeSource] = {}

    def source(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    cfg = make_config(engines={"detector": str(f32_ir), "check_files": False, **cfg_extra})
    svc = Service(cfg, source_factory=source, detector_factory=factory, enhancer_factory=lambda e: None,
                  notifier=Notifier(environ={}), serve_http=False, int8_settings=s)
    return svc, sources


class Feeder:
    """Pushes a frame with a bright patch to every camera until stopped (a running camera)."""

    def __init__(self, sources):
        self.sources, self.stop = sources, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        rng = np.random.default_rng(0)
        while not self.stop.wait(0.01):
            for src in list(self.sources.values()):
                src.push(rng.integers(100, 255, (48, 64, 3), dtype=np.uint8))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)


def state(svc) -> str:
    r = svc.metrics.registry
    return next((s for s in ("off", "collecting", "building", "checking", "active", "refused",
                             "failed") if r.get_sample_value("duskwatch_int8_state",
                                                             {"state": s}) == 1), "?")


# -- the parts -----------------------------------------------------------------------------------
def test_collector_splits_held_out_frames_spreads_over_time_and_resumes(tmp_path):
    sib = Sibling(tmp_path / "y.xml")
    c = FrameCollector(sib.calib, sib.check, calib_frames=6, check_frames=2, every_s=5.0)
    img = np.full((24, 32, 3), 120, np.uint8)
    assert c.offer("a", img, now=0.0) is not None
    assert c.offer("a", img, now=1.0) is None  # one frame per camera per 5 s
    assert c.offer("b", img, now=1.0) is not None  # another camera is due
    t = 10.0
    while not c.complete:
        c.offer("a", img, now=t)
        t += 5.0
    assert (c.calib, c.checks) == (6, 2)
    assert c.offer("a", img, now=t + 100) is None  # bounded
    again = FrameCollector(sib.calib, sib.check, 6, 2, 5.0)  # a restart counts what is on disk
    assert again.complete and again.count == 8
    assert {p.name.split("-")[0] for p in sib.calib.glob("*.jpg")} == {"a", "b"}


def _dets(boxes, scores):
    return Detections.from_arrays(np.array(boxes, float).reshape(-1, 4), scores,
                                  [0] * len(scores), NAMES)


def test_agreement_counts_boxes_at_the_operating_threshold_with_a_score_band():
    ref = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.26])]
    same = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.88, 0.24])]  # 0.24: inside the band
    f1, recall, precision, boxes = agreement(ref, same, conf=0.25)
    assert (f1, recall, precision, boxes) == (1.0, 1.0, 1.0, 2)
    lost = [_dets([[0, 0, 10, 10], [20, 20, 30, 30]], [0.88, 0.05])]  # far below: a miss
    f1, recall, precision, _ = agreement(ref, lost, conf=0.25)
    assert recall == 0.5 and precision == 1.0 and f1 == pytest.approx(2 / 3)
    extra = [_dets([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], [0.9, 0.3, 0.8])]
    assert agreement(ref, extra, conf=0.25)[2] == pytest.approx(2 / 3)
    assert agreement([_dets([], [])], same, conf=0.25)[0] is None


def test_check_refuses_when_too_few_boxes_to_judge(tmp_path):
    import cv2

    path = tmp_path / "f.jpg"
    cv2.imwrite(str(path), np.zeros((24, 32, 3), np.uint8))
    res = check([path], FakeDetector(), FakeDetector(), min_boxes=5)
    assert not res.passed and "fewer than the 5 needed" in res.reason
    assert check([path], FakeDetector(), FakeDetector(), min_boxes=1).passed


# -- the service ---------------------------------------------------------------------------------
def test_upgrade_swaps_the_running_detector_without_a_restart(f32_ir, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch")
    factory = Factory(f32=SlowStrict)
    svc, sources = service(f32_ir, factory, settings())
    svc.start()
    f32 = svc.detector
    try:
        with Feeder(sources):
            assert wait_for(lambda: state(svc) == "active", timeout=30), (state(svc), caplog.text)
            int8 = svc.detector
            assert int8 is not f32 and svc.pipeline.detector is int8
            assert factory.opened[-1] == (str(Sibling(f32_ir).int8), int8)
            calls = len(int8.calls)
            assert wait_for(lambda: len(int8.calls) > calls)  # frames go through int8 now
        assert f32.closed and not int8.closed
        assert int8.warmed == 1  # warmed before the swap, off the hot path
        r = svc.metrics.registry
        assert r.get_sample_value("duskwatch_frames_total", {"camera": "a", "outcome": "failed"}) == 0
        assert r.get_sample_value("duskwatch_int8_check_agreement") == 1.0
        assert r.get_sample_value("duskwatch_build_info", {
            "version": "0.1.0", "backend": "onnxruntime", "detector": "yolo.int8.xml",
            "enhancer": ""}) == 1
        assert svc.published.engines["detector"] == "yolo.int8.xml"
        assert "switched to the int8 IR" in caplog.text and "passed its check" in caplog.text
        verdict = Sibling(f32_ir).verdict()
        assert verdict["passed"] and not Sibling(f32_ir).calib.exists()  # frames removed
    finally:
        svc.stop()
    assert int8.closed


def test_a_disagreeing_int8_is_refused_and_f32_keeps_running(f32_ir, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch")
    svc, sources = service(f32_ir, Factory(int8=Disagreeing), settings())
    svc.start()
    f32 = svc.detector
    try:
        with Feeder(sources):
            assert wait_for(lambda: state(svc) == "refused", timeout=30), caplog.text
            calls = len(f32.calls)
            assert wait_for(lambda: len(f32.calls) > calls)  # f32 still detects
        assert svc.detector is f32 and not f32.closed
        r = svc.metrics.registry
        assert r.get_sample_value("duskwatch_int8_failures_total", {"stage": "check"}) == 1
        assert r.get_sample_value("duskwatch_int8_check_agreement") == 0.0
        assert "refused" in caplog.text and "keeps running" in caplog.text
        verdict = Sibling(f32_ir).verdict()
        assert verdict is not None and verdict["passed"] is False
    finally:
        svc.stop()


def upgrade_once(f32_ir) -> None:
    """Run a service until its detector went int8 (built, checked, swapped), then stop it."""
    svc, sources = service(f32_ir, Factory(), settings())
    svc.start()
    try:
        with Feeder(sources):
            assert wait_for(lambda: state(svc) == "active", timeout=30)
    finally:
        svc.stop()


def test_a_restart_loads_the_checked_sibling_directly_and_not_one_of_another_f32(f32_ir, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch")
    upgrade_once(f32_ir)
    factory = Factory()
    again, _ = service(f32_ir, factory, settings())
    again.start()
    try:
        assert factory.opened[0][0] == str(Sibling(f32_ir).int8)  # the first and only open
        assert len(factory.opened) == 1 and state(again) == "active" and again.int8 is None
        assert "instead of" in caplog.text
    finally:
        again.stop()
    f32_ir.with_suffix(".bin").write_bytes(b"\1" * 64)  # a new f32 IR: the int8 one is stale
    factory = Factory()
    third, _ = service(f32_ir, factory, settings())
    third.start()
    try:
        assert factory.opened[0][0] == str(f32_ir)
        assert wait_for(lambda: state(third) == "collecting")
    finally:
        third.stop()


@pytest.mark.parametrize("int8_mode, facts, detector", [
    ("off", VNNI_BOX, "yolo.xml"),
    ("auto", BoxFacts(openvino=True, cpu_vnni=True, cpu_bf16=True, nncf=True), "yolo.xml"),  # bf16
    ("auto", BoxFacts(openvino=True, cpu_vnni=True), "yolo.xml"),  # no NNCF to build it
    ("auto", BoxFacts(openvino=True), "yolo.xml"),  # no VNNI
])
def test_no_upgrade_where_the_rule_or_the_config_says_no(f32_ir, int8_mode, facts, detector):
    svc, _ = service(f32_ir, Factory(), settings(facts=facts), int8=int8_mode)
    svc.start()
    try:
        assert svc.int8 is None and state(svc) == "off"
    finally:
        svc.stop()


def test_a_crashing_build_leaves_f32_running_counted_and_logged(f32_ir, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch")
    svc, sources = service(f32_ir, Factory(), settings("crash"))
    svc.start()
    f32 = svc.detector
    try:
        with Feeder(sources):
            assert wait_for(lambda: state(svc) == "failed", timeout=30), caplog.text
        r = svc.metrics.registry
        assert r.get_sample_value("duskwatch_int8_failures_total", {"stage": "build"}) == 1
        assert svc.detector is f32 and "fake build: boom" in caplog.text
    finally:
        svc.stop()


def test_stop_during_a_build_ends_it_and_its_children(f32_ir):
    svc, sources = service(f32_ir, Factory(), settings("hang"))
    svc.start()
    pids_file = Sibling(f32_ir).int8.with_suffix(".pids")
    try:
        with Feeder(sources):
            assert wait_for(pids_file.exists, timeout=30)
    finally:
        svc.stop()
    assert not svc.int8.alive
    for pid in map(int, pids_file.read_text().split()):
        assert wait_for(lambda: not _alive(pid), timeout=5), pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


def test_frames_of_a_real_rtsp_camera_reach_the_calibration_folder(rtsp_server, f32_ir):
    """The real source (GStreamer RTSP server, the daemon's decoder) -> the pipeline's newest
    frame -> JPEGs in the calibration and check folders, spread over time."""
    import cv2

    from daemon.config import parse_config

    srv = rtsp_server({"street": "h264"})  # vtest.avi as H.264, 640x360
    cfg = parse_config({
        "cameras": [{"name": "street", "url": srv.url("street"), "fps": 5, "enhance": "never"}],
        "engines": {"detector": str(f32_ir), "check_files": False},
        "http": {"listen": "127.0.0.1:0"}, "sinks": [],
        "events": {"evidence": {"snapshots": False, "clips": False}}})
    s = settings("hang", every_s=0.3, calib_frames=4, check_frames=2)
    svc = Service(cfg, detector_factory=Factory(), enhancer_factory=lambda e: None,
                  notifier=Notifier(environ={}), serve_http=False, int8_settings=s)
    svc.start()
    sib = Sibling(f32_ir)
    try:
        assert wait_for(lambda: state(svc) == "building", timeout=60), state(svc)
    finally:
        svc.stop()
    calib, held = sorted(sib.calib.glob("*.jpg")), sorted(sib.check.glob("*.jpg"))
    assert (len(calib), len(held)) == (4, 2)
    stamps = sorted(int(p.name.split("-")[1]) for p in calib + held)
    assert all(b - a >= 250 for a, b in zip(stamps, stamps[1:]))  # one per camera per 0.3 s
    for path in calib + held:
        assert path.name.startswith("street-")
        img = cv2.imread(str(path))
        assert img.shape == (360, 640, 3) and img.std() > 10  # a decoded picture, not a blank


def test_a_checked_sibling_that_will_not_open_leaves_f32_running(f32_ir, caplog):
    caplog.set_level(logging.INFO, logger="duskwatch")
    upgrade_once(f32_ir)

    def broken():
        raise RuntimeError("truncated .bin")

    factory = Factory(int8=broken)
    again, _ = service(f32_ir, factory, settings())
    again.start()  # starts, with f32
    try:
        assert [p for p, _ in factory.opened] == [str(f32_ir)]  # the int8 open raised
        assert again.detector is factory.opened[-1][1]
        r = again.metrics.registry
        assert r.get_sample_value("duskwatch_int8_failures_total", {"stage": "load"}) == 1
        assert "cannot open" in caplog.text and "truncated .bin" in caplog.text
    finally:
        again.stop()
