"""Helpers for tests that drive camera sources: an event recorder and polling waits."""

from __future__ import annotations

import threading
import time
from typing import Callable

from daemon.config import CameraConfig
from daemon.pipeline.frames import CameraState, StateChange
from tests.wait import wait_for


def camera(name: str, url: str, **kw) -> CameraConfig:
    """A CameraConfig with short timeouts suited to tests (override any field with ``kw``)."""
    fields = dict(open_timeout_s=3.0, read_timeout_s=1.5, backoff_initial_s=0.2, backoff_max_s=1.0)
    fields.update(kw)
    return CameraConfig(name=name, url=url, **fields)


class EventRecorder:
    """A :class:`daemon.pipeline.frames.SourceEvents` that keeps everything it is told (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changes: list[StateChange] = []
        self.skipped: dict[str, int] = {}
        self.reconnects: dict[str, int] = {}
        self.stamps: list[tuple[float, StateChange]] = []

    def on_state(self, change: StateChange) -> None:
        with self._lock:
            self.changes.append(change)
            self.stamps.append((time.monotonic(), change))

    def on_frame_skipped(self, camera: str, count: int) -> None:
        with self._lock:
            self.skipped[camera] = self.skipped.get(camera, 0) + count

    def on_reconnect(self, camera: str) -> None:
        with self._lock:
            self.reconnects[camera] = self.reconnects.get(camera, 0) + 1

    def states(self, camera: str) -> list[CameraState]:
        with self._lock:
            return [c.new for c in self.changes if c.camera == camera]

    def reasons(self) -> list[str]:
        with self._lock:
            return [c.reason for c in self.changes]

    def first_time(self, camera: str, state: CameraState, after: float = 0.0) -> float | None:
        """time.monotonic() of the first change of ``camera`` into ``state`` after ``after``."""
        with self._lock:
            for t, c in self.stamps:
                if c.camera == camera and c.new is state and t >= after:
                    return t
        return None

    def wait_state(self, camera: str, state: CameraState, timeout: float,
                   after: float = 0.0) -> float:
        """Wait until ``camera`` entered ``state`` after ``after``; return when it did."""
        found = wait_until(lambda: self.first_time(camera, state, after), timeout)
        if found is None:
            raise AssertionError(f"{camera} did not reach {state.value} within {timeout} s; "
                                 f"states: {[s.value for s in self.states(camera)]}; "
                                 f"reasons: {self.reasons()[-5:]}")
        return found


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` passes
    (returns the last falsy value)."""
    return wait_for(predicate, timeout, interval)
