"""Encoded snapshots: each camera's latest frame is drawn and JPEG-encoded at most once per
``interval_s`` and only when it changed, and every viewer gets the same bytes.

Without it every ``GET /snapshot/<camera>.jpg`` drew and encoded a full frame: 50 viewers
polling halved every camera's detection rate. Now the cost is bounded by the number of cameras,
not of viewers: a viewer either takes the cached bytes or waits (on the camera's lock) for the
one encode in progress. One encode runs at a time across all cameras.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

# camera -> None (no frame yet), or (version, render) where render() -> JPEG bytes
SnapshotSource = Callable[[str], "tuple[Hashable, Callable[[], bytes]] | None"]


@dataclass
class _Entry:
    version: Hashable
    jpeg: bytes
    at: float


class JpegCache:
    """Per-camera encoded JPEGs, refreshed at most every ``interval_s``."""

    def __init__(self, source: SnapshotSource, interval_s: float = 0.5,
                 clock: Callable[[], float] = time.monotonic):
        self._source = source
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._camera_locks: dict[str, threading.Lock] = {}
        self._encode_slot = threading.Lock()  # one encode at a time, all cameras together
        self.encodes = 0

    def get(self, camera: str) -> bytes | None:
        """The camera's JPEG (None before its first processed frame)."""
        entry = self._fresh(camera)
        if entry is not None:
            return entry.jpeg
        with self._camera_lock(camera):
            entry = self._fresh(camera)  # encoded by the viewer we waited for
            if entry is not None:
                return entry.jpeg
            found = self._source(camera)
            if found is None:
                return None
            version, render = found
            with self._lock:
                old = self._entries.get(camera)
            if old is not None and old.version == version:
                old.at = self._clock()
                return old.jpeg
            with self._encode_slot:
                jpeg = render()
                self.encodes += 1
            with self._lock:
                self._entries[camera] = _Entry(version, jpeg, self._clock())
            return jpeg

    def forget(self, camera: str) -> None:
        with self._lock:
            self._entries.pop(camera, None)

    def _fresh(self, camera: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(camera)
        if entry is not None and self._clock() - entry.at < self.interval_s:
            return entry
        return None

    def _camera_lock(self, camera: str) -> threading.Lock:
        with self._lock:
            return self._camera_locks.setdefault(camera, threading.Lock())


class SingleFlight:
    """One render at a time, shared: a caller arriving while a render runs waits for it and
    gets its result (at most one render old), so 50 parallel scrapes cost one exposition each
    round instead of fifty."""

    def __init__(self, render: Callable[[], "tuple[bytes, str]"]):
        self._render = render
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._running = False
        self._generation = 0
        self._result: "tuple[bytes, str] | None" = None
        self._error: BaseException | None = None

    def get(self) -> "tuple[bytes, str]":
        with self._cond:
            if self._running:
                gen = self._generation
                while self._running and self._generation == gen:
                    self._cond.wait(10.0)
                if self._generation != gen and self._error is None and self._result is not None:
                    return self._result
            self._running = True
        try:
            result, error = self._render(), None
        except BaseException as exc:  # noqa: BLE001 - handed to this caller; others re-render
            result, error = None, exc
        with self._cond:
            self._running = False
            self._generation += 1
            self._result, self._error = result, error
            self._cond.notify_all()
        if error is not None:
            raise error
        return result
