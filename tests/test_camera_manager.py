"""The camera manager (issue 21): per camera one unit (source, slot, gate, metric series) added
and removed as one, on the scheduler's thread; other threads read an immutable table."""

from __future__ import annotations

import pytest

from daemon.config import CameraConfig, LowLightConfig, SchedulerConfig
from daemon.metrics import Metrics
from daemon.pipeline.cameras import CameraManager
from daemon.pipeline.frames import CameraState, StateChange
from daemon.pipeline.process import Pipeline
from daemon.pipeline.scheduler import Scheduler
from daemon.pipeline.sinks import SinkSet
from tests.daemon_fakes import FakeDetector, FakeSource


@pytest.fixture
def rig():
    metrics = Metrics()
    det = FakeDetector()
    metrics.set_classes(det.names.values())
    sched = Scheduler(Pipeline(det, metrics, SinkSet([])), SchedulerConfig(max_batch=2), metrics,
                      idle_s=0.01)
    made: dict[str, list[FakeSource]] = {}

    def factory(cam, events):
        made.setdefault(cam.name, []).append(FakeSource(cam, events))
        return made[cam.name][-1]

    cameras = CameraManager(sched, metrics, factory)
    sched.start()
    yield sched, metrics, cameras, made
    sched.stop(5)


def cam(name: str, **kw) -> CameraConfig:
    return CameraConfig(name=name, url=f"rtsp://h/{name}", **kw)


def probe(sched: Scheduler, metrics: Metrics, cameras: CameraManager, name: str) -> tuple:
    """What the scheduler thread sees of a camera between two commands: (slot, series, unit)."""
    seen = []
    sched.submit(lambda: seen.append((
        name in {s.name for s in sched.slots()}, metrics.has_camera(name),
        name in cameras.units())))
    assert sched.sync(5)
    return seen[0]


def test_a_camera_is_added_and_removed_as_one_unit(rig):
    sched, metrics, cameras, made = rig
    states = set()
    for i in range(20):
        cameras.add(cam("yard"), LowLightConfig())
        states.add(probe(sched, metrics, cameras, "yard"))
        cameras.remove("yard")
        states.add(probe(sched, metrics, cameras, "yard"))
    assert states == {(True, True, True), (False, False, False)}
    assert cameras.wait_stopped(5)
    assert all(s.started == 1 and s.stopped == 1 for s in made["yard"])
    assert len(made["yard"]) == 20


def test_only_the_published_sources_events_count(rig):
    sched, metrics, cameras, made = rig
    cameras.add(cam("yard"), LowLightConfig())
    cameras.remove("yard", keep_metrics=True)  # a supervisor restart: the counters carry on
    cameras.add(cam("yard"), LowLightConfig())
    assert sched.sync(5) and cameras.wait_stopped(5)
    old, new = made["yard"]
    assert cameras.units()["yard"].source is new and old.stopped == 1
    old.events.on_reconnect("yard")  # a late event of the replaced reader
    new.events.on_reconnect("yard")
    new.events.on_state(StateChange("yard", CameraState.STREAMING, CameraState.STALLED, "test"))
    r = metrics.registry
    assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": "yard"}) == 1
    cameras.close()
    new.events.on_reconnect("yard")  # the service stops: nothing counts any more
    assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": "yard"}) == 1


def test_an_update_keeps_the_source_and_the_gates_history(rig):
    sched, metrics, cameras, made = rig
    cameras.add(cam("yard", fps=5), LowLightConfig())
    assert sched.sync(5)
    before = cameras.units()["yard"]
    cameras.update(cam("yard", fps=2, enhance="always"), LowLightConfig())
    assert sched.sync(5)
    after = cameras.units()["yard"]
    assert after.source is before.source and after.gate is before.gate
    assert after.slot.fps == 2 and after.gate.mode == "always" and after.cfg.fps == 2
    assert before.cfg.fps == 5  # the published unit was replaced, never changed in place
