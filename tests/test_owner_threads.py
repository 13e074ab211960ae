"""Owner-thread checks (issue 21): the scheduler's structures belong to its loop's thread while
it runs; in debug runs (``tests/conftest.py`` turns the checks on) a change from another thread
fails at once with an AssertionError that names the structure and both threads."""

from __future__ import annotations

import threading

import pytest

from daemon.config import CameraConfig, LowLightConfig, SchedulerConfig
from daemon.metrics import Metrics
from daemon.pipeline import owner
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.process import Pipeline
from daemon.pipeline.scheduler import CameraSlot, Scheduler
from daemon.pipeline.sinks import SinkSet
from tests.daemon_fakes import FakeDetector, FakeSource


class _Events:
    def on_state(self, change): pass
    def on_frame_skipped(self, camera, count): pass
    def on_reconnect(self, camera): pass


def _scheduler() -> Scheduler:
    metrics = Metrics()
    pipe = Pipeline(FakeDetector(), metrics, SinkSet([]))
    return Scheduler(pipe, SchedulerConfig(max_batch=2, batch_timeout_ms=0), metrics,
                     idle_s=0.01)


def _slot(name: str) -> CameraSlot:
    cfg = CameraConfig(name=name, url=f"rtsp://h/{name}", fps=5)
    return CameraSlot(name, FakeSource(cfg, _Events()), LowLightGate(LowLightConfig(), "auto"), 5)


@pytest.fixture
def running():
    sched = _scheduler()
    sched.start()
    assert sched.sync(5)  # the loop runs and has bound its thread
    yield sched
    assert sched.stop(5)


def test_checks_are_on_in_the_test_suite():
    assert owner.checks_on()


def test_a_slot_added_from_another_thread_fails_loudly(running):
    with pytest.raises(AssertionError) as err:
        running._slots["intruder"] = _slot("intruder")
    text = str(err.value)
    assert "Scheduler._slots" in text
    assert "'duskwatch-scheduler'" in text and f"'{threading.current_thread().name}'" in text
    assert "intruder" not in {s.name for s in running.slots()}


def test_the_same_change_as_a_command_is_applied_on_the_loop(running):
    slot = _slot("guest")
    running.add_camera(slot)
    assert running.sync(5)
    assert [s.name for s in running.slots()] == ["guest"]
    running.remove_camera("guest")
    assert running.sync(5)
    assert running.slots() == []


@pytest.mark.parametrize("call", ["apply_commands", "step", "detach"])
def test_running_the_loops_work_from_another_thread_fails(running, call):
    args = ("x",) if call == "detach" else ()
    with pytest.raises(AssertionError, match="belongs to thread 'duskwatch-scheduler'"):
        getattr(running, call)(*args)


def test_the_camera_table_is_the_scheduler_threads_too(running):
    from daemon.pipeline.cameras import CameraManager

    cameras = CameraManager(running, running.metrics, lambda cam, events: FakeSource(cam, events))
    cameras.add(CameraConfig(name="yard", url="rtsp://h/yard", fps=5), LowLightConfig())
    assert running.sync(5) and list(cameras.units()) == ["yard"]
    with pytest.raises(AssertionError, match=r"CameraManager\._table belongs to thread "
                                             r"'duskwatch-scheduler'"):
        cameras._table.pop("yard")
    assert list(cameras.units()) == ["yard"]


def test_before_the_loop_starts_and_after_it_ends_the_caller_may_change_them():
    sched = _scheduler()
    sched._slots["early"] = _slot("early")  # nobody owns them yet
    sched.apply_commands()
    sched.start()
    assert sched.sync(5)
    assert sched.stop(5)
    sched._slots.pop("early")  # the loop ended: released
    sched.apply_commands()


def test_checks_off_cost_nothing_and_say_nothing(running):
    owner.set_checks(False)
    try:
        running._slots["x"] = _slot("x")  # not checked (as under python -O)
    finally:
        owner.set_checks(True)
