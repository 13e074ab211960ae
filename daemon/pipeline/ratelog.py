"""Logging a recurring error without flooding the journal."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable


class RateLimitedLog:
    """Log a recurring error at most once per ``interval_s`` per key, counting the rest."""

    def __init__(self, logger: logging.Logger, interval_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger, self.interval, self.clock = logger, interval_s, clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def error(self, key: str, msg: str, *args: Any) -> None:
        now = self.clock()
        if key in self._last and now - self._last[key] < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        more = self._suppressed.pop(key, 0)
        suffix = f" ({more} more since the last message)" if more else ""
        self.logger.error(msg + suffix, *args)
        self._last[key] = now
