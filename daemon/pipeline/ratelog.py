"""Logging a recurring error without flooding the journal, and without losing its count.

The first occurrence of an error (per key) is logged at once; repeats within ``interval_s`` are
counted, and when that window ends a timer logs their sum (``... repeated 82 more times in the
last 30 s``), whether or not the error comes back. :meth:`RateLimitedLog.flush` (called on
close) logs what is pending at once, so a count is never lost at shutdown either.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

#: Runs ``callback`` after ``delay_s`` seconds; returns something with ``cancel()``.
Scheduler = Callable[[float, Callable[[], None]], Any]


def _timer(delay_s: float, callback: Callable[[], None]) -> threading.Timer:
    t = threading.Timer(delay_s, callback)
    t.daemon = True
    t.name = "duskwatch-ratelog"
    t.start()
    return t


@dataclass
class _Window:
    """One key's rate-limit window: when it opened, what was said, and the repeats since."""

    opened: float
    message: str
    level: int
    repeats: int = 0
    timer: Any = None


class RateLimitedLog:
    """Log a recurring error at most once per ``interval_s`` per key, and sum the rest when the
    window ends (a timer from ``schedule``; tests pass one they fire by hand)."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, schedule: Scheduler = _timer):
        self.logger, self.interval, self.clock, self.schedule = logger, interval_s, clock, schedule
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def error(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.ERROR, key, msg, *args)

    def warning(self, key: str, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = self.clock()
        with self._lock:
            win = self._windows.get(key)
            if win is not None and now - win.opened < self.interval:
                win.repeats += 1
                if win.timer is None:
                    delay = max(0.0, win.opened + self.interval - now)
                    win.timer = self.schedule(delay, lambda: self._window_ended(key, win))
                return
            if win is not None:
                self._summarise(win)  # a window that ended without its timer firing yet
            self._windows[key] = _Window(now, msg % args if args else msg, level)
        self.logger.log(level, msg, *args)

    def flush(self) -> None:
        """Log every pending sum now (on close: nothing counted is left unsaid)."""
        with self._lock:
            windows = list(self._windows.values())
            self._windows.clear()
        for win in windows:
            self._summarise(win)

    def _window_ended(self, key: str, win: _Window) -> None:
        with self._lock:
            if self._windows.get(key) is not win:
                return  # flushed, or replaced by a newer window that summarised this one
            del self._windows[key]
        self._summarise(win)

    def _summarise(self, win: _Window) -> None:
        if win.timer is not None:
            win.timer.cancel()
            win.timer = None
        if win.repeats:
            seconds = max(0.0, self.clock() - win.opened)
            self.logger.log(win.level, "%s: repeated %d more times in the last %.0f s",
                            win.message, win.repeats, seconds)
            win.repeats = 0
