"""RateLimitedLog: the first error at once, repeats summed when the window ends (not only when the
error comes back), nothing lost at flush. A fake clock and a scheduler fired by hand: no sleeps."""

from __future__ import annotations

import logging
import threading

from daemon.pipeline.ratelog import RateLimitedLog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Timers:
    """The scheduler seam: records (delay, callback); ``fire`` runs the due ones."""

    def __init__(self, clock: Clock):
        self.clock, self.pending = clock, []

    def __call__(self, delay, callback):
        timer = _Timer(self.clock.now + delay, callback)
        self.pending.append(timer)
        return timer

    def fire(self):
        due = [t for t in self.pending if t.at <= self.clock.now and not t.cancelled]
        self.pending = [t for t in self.pending if t not in due]
        for t in due:
            t.callback()


class _Timer:
    def __init__(self, at, callback):
        self.at, self.callback, self.cancelled = at, callback, False

    def cancel(self):
        self.cancelled = True


def make(caplog):
    clock = Clock()
    timers = Timers(clock)
    caplog.set_level(logging.INFO, logger="t.ratelog")
    return RateLimitedLog(logging.getLogger("t.ratelog"), 30, clock, timers), clock, timers


def messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "t.ratelog"]


def test_repeats_are_summed_when_the_window_ends_without_the_error_coming_back(caplog):
    rl, clock, timers = make(caplog)
    for i in range(84):
        rl.error("drop", "sink %s: event dropped (%s)", "mqtt", "queue full")
        clock.now += 0.1
    assert messages(caplog) == ["sink mqtt: event dropped (queue full)"]
    assert len(timers.pending) == 1 and timers.pending[0].at == 130.0  # one timer per window
    clock.now = 130.0
    timers.fire()
    assert messages(caplog)[1] == ("sink mqtt: event dropped (queue full): repeated 83 more "
                                   "times in the last 30 s")
    clock.now = 400.0
    timers.fire()
    rl.error("drop", "sink %s: event dropped (%s)", "mqtt", "queue full")
    assert len(messages(caplog)) == 3  # a new window logs at once, the old sum is not repeated


def test_a_lone_error_schedules_nothing_and_keys_are_independent(caplog):
    rl, clock, timers = make(caplog)
    rl.error("a", "first")
    rl.warning("b", "other")
    assert timers.pending == [] and messages(caplog) == ["first", "other"]
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.WARNING]


def test_the_error_recurring_after_the_window_gets_the_sum_first(caplog):
    rl, clock, timers = make(caplog)
    rl.error("k", "boom %d", 1)
    rl.error("k", "boom %d", 2)
    clock.now += 31  # the timer has not run yet (a busy box): the next error summarises first
    rl.error("k", "boom %d", 3)
    assert messages(caplog) == ["boom 1", "boom 1: repeated 1 more times in the last 31 s",
                                "boom 3"]
    assert timers.pending[0].cancelled
    timers.fire()
    assert len(messages(caplog)) == 3


def test_flush_says_what_is_pending_once(caplog):
    rl, clock, timers = make(caplog)
    for _ in range(5):
        rl.error("k", "boom")
    clock.now += 2
    rl.flush()
    assert messages(caplog) == ["boom", "boom: repeated 4 more times in the last 2 s"]
    clock.now += 60
    timers.fire()  # the cancelled timer says nothing more
    rl.flush()
    assert len(messages(caplog)) == 2


def test_the_real_timer_fires(caplog):
    """The default scheduler is a real timer (a short window: the test waits on the log)."""
    caplog.set_level(logging.INFO, logger="t.real")
    seen = threading.Event()

    class Handler(logging.Handler):
        def emit(self, record):
            if "repeated 2 more" in record.getMessage():
                seen.set()

    logger = logging.getLogger("t.real")
    logger.addHandler(Handler())
    rl = RateLimitedLog(logger, interval_s=0.2)
    for _ in range(3):
        rl.error("k", "boom")
    assert seen.wait(10)
