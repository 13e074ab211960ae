"""A camera source's life as a state machine, shared by every source (RTSP, synthetic, fakes).

States are :class:`~daemon.pipeline.frames.CameraState`; the transitions a source may make are
:data:`ALLOWED`. :class:`Lifecycle` holds the state under one lock and reports every change to
the source's :class:`~daemon.pipeline.frames.SourceEvents`::

    stopped -> connecting -> streaming -> stalled -> backing_off -> connecting -> ...
                     \\-> backing_off (open failed)   \\-> backing_off (stream lost)
    any -> stopped (stop(), or a file that ended without ``loop``)
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from daemon.pipeline.frames import CameraState, SourceEvents, StateChange

S = CameraState
ALLOWED: dict[CameraState, frozenset[CameraState]] = {
    S.STOPPED: frozenset({S.CONNECTING}),
    S.CONNECTING: frozenset({S.STREAMING, S.BACKING_OFF, S.STOPPED}),
    S.STREAMING: frozenset({S.STALLED, S.BACKING_OFF, S.STOPPED}),
    S.STALLED: frozenset({S.BACKING_OFF, S.STOPPED}),
    S.BACKING_OFF: frozenset({S.CONNECTING, S.STOPPED}),
}
"""Every state change a source may make; anything else is a bug (:class:`InvalidTransition`)."""


class InvalidTransition(RuntimeError):
    """A state change that :data:`ALLOWED` does not list."""


class Lifecycle:
    """One source's state. ``stopping`` says whether the source was asked to stop: from then on
    only the move to ``stopped`` happens (a reader winding down cannot reconnect)."""

    def __init__(self, camera: str, events: SourceEvents,
                 stopping: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.monotonic):
        self.camera = camera
        self._events = events
        self._stopping = stopping
        self._clock = clock
        self._lock = threading.Lock()
        self._state = S.STOPPED
        self.since = clock()  # monotonic time of the last change
        self.since_wall = time.time()

    @property
    def state(self) -> CameraState:
        with self._lock:
            return self._state

    def move(self, new: CameraState, reason: str = "") -> bool:
        """Change to ``new`` and report it; False (no event) when it is already the state or
        when stopping made the change moot. ``reason`` must be credential-free."""
        with self._lock:
            old = self._state
            if old is new:
                return False
            if self._stopping() and new is not S.STOPPED:
                return False
            if new not in ALLOWED[old]:
                raise InvalidTransition(f"camera {self.camera}: {old.value} -> {new.value}")
            self._state = new
            self.since, self.since_wall = self._clock(), time.time()
        self._events.on_state(StateChange(self.camera, old, new, reason, time.time()))
        return True
