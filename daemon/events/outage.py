"""A sink's outage, told in three log lines that add up.

An outage begins when the sink cannot reach its receiver (the MQTT broker lost or refusing, a
webhook failing, a file that cannot be written) and the sink logs why, once (and again only
when the reason changes). It ends in two steps: the receiver is reachable again (logged with how
long it was not), then the events that waited are through; then one line sums it up::

    sink mqtt: outage over: 15.2 s without broker 127.0.0.1:1883 (connection lost), 40 events
    delivered late, 83 dropped

"Delivered late": events that were waiting (queued or being sent) while the receiver was
unreachable and reached it after it came back. "Dropped": events dropped from the outage's
start to its end (a full queue, retries run out, undelivered at shutdown); they are the
increase of ``duskwatch_sink_events_dropped_total{sink}`` over the outage. A shutdown during an
outage ends it with the same line ("outage ended by shutdown").
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable


class Outage:
    """The outage state of one sink; every method is safe to call from any thread."""

    def __init__(self, sink: str, target: str, logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.sink, self.target, self.log, self.clock = sink, target, logger, clock
        self._lock = threading.Lock()
        self._start: float | None = None  # when the receiver became unreachable
        self._back: float | None = None  # when it was reachable again (events still draining)
        self._reason = ""
        self._first_reason = ""
        self.late = 0
        self.dropped = 0
        self.ended = 0  # outages over (for tests and the curious)

    @property
    def active(self) -> bool:
        return self._start is not None

    def failed(self, reason: str) -> None:
        """The receiver cannot be reached, for ``reason`` (words, no secrets)."""
        with self._lock:
            if self._start is None:
                self._start, self._back, self.late, self.dropped = self.clock(), None, 0, 0
                self._reason = self._first_reason = reason
                self.log.warning("sink %s: %s unreachable (%s); events wait in the queue, and "
                                 "are dropped when it is full", self.sink, self.target, reason)
                return
            again = self._back is not None
            self._back = None
            if again or reason != self._reason:
                self._reason = reason
                self.log.warning("sink %s: %s %s (%s)", self.sink, self.target,
                                 "unreachable again" if again else "still unreachable", reason)

    def recovered(self, pending: int) -> None:
        """The receiver is reachable again; ``pending``: events waiting in the queue."""
        with self._lock:
            if self._start is None or self._back is not None:
                return
            self._back = self.clock()
            self.log.info("sink %s: %s reachable again after %.1f s; delivering the %d queued "
                          "events", self.sink, self.target, self._back - self._start, pending)

    def delivered(self, offered_at: float, pending: int) -> None:
        """An event offered at ``offered_at`` (monotonic) reached the receiver."""
        with self._lock:
            if self._start is None:
                return
            if self._back is None or offered_at < self._back:
                self.late += 1
            self._settle_locked(pending, offered_at)

    def dropped_one(self) -> None:
        with self._lock:
            if self._start is not None:
                self.dropped += 1

    def settle(self, pending: int) -> None:
        """Called when the sink is idle: an outage whose receiver is back and whose queue is
        empty is over."""
        with self._lock:
            if self._start is not None:
                self._settle_locked(pending, None)

    def close(self) -> None:
        """Shutdown: an outage still on ends here, with its line."""
        with self._lock:
            if self._start is not None:
                self._end_locked("outage ended by shutdown", self._back or self.clock())

    def _settle_locked(self, pending: int, offered_at: float | None) -> None:
        if self._back is None:
            return
        caught_up = pending == 0 or (offered_at is not None and offered_at >= self._back)
        if caught_up:
            self._end_locked("outage over", self._back)

    def _end_locked(self, what: str, back: float) -> None:
        self.log.warning("sink %s: %s: %.1f s without %s (%s), %d events delivered late, %d "
                         "dropped", self.sink, what, back - self._start, self.target,
                         self._first_reason, self.late, self.dropped)
        self._start = self._back = None
        self.ended += 1
