"""Reconnect delays: capped exponential backoff with jitter.

The delay before attempt ``n`` (counting from 0) is ``min(cap, initial * factor**n)`` scaled by a
random factor in ``[1 - jitter, 1]``: twenty cameras that lose their switch at the same moment do
not reconnect in lockstep, and no delay exceeds the cap. This is the "equal jitter" variant of
M. Brooker, "Exponential Backoff and Jitter", AWS Architecture Blog (2015).
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive failures; :meth:`reset` after a healthy period."""

    def __init__(self, initial: float, cap: float, *, factor: float = 2.0, jitter: float = 0.5,
                 rng: random.Random | None = None):
        if not 0 < initial <= cap:
            raise ValueError(f"need 0 < initial ({initial}) <= cap ({cap})")
        if factor < 1 or not 0 <= jitter <= 1:
            raise ValueError(f"need factor >= 1 ({factor}) and 0 <= jitter <= 1 ({jitter})")
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rng = rng or random.Random()
        self.attempt = 0

    def ceiling(self, attempt: int) -> float:
        """The delay before jitter for ``attempt`` (0-based)."""
        # factor**attempt overflows floats for very long outages; the cap is reached long before
        exponent = min(attempt, 64)
        return min(self.cap, self.initial * self.factor**exponent)

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failure."""
        top = self.ceiling(self.attempt)
        self.attempt += 1
        return top * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0
