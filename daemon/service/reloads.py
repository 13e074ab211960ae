"""Reloads off the main thread: reading and validating a new config (which opens the engines
and may read a large file) runs on a worker thread, so the main loop keeps its watchdog pings.

The main thread calls :meth:`ReloadWorker.request` on SIGHUP and :meth:`ReloadWorker.poll`
every tick; ``poll`` returns the finished outcome once (the new config, or the reason it was
refused) and the main thread applies it. A SIGHUP during a validation runs one more after it,
so the last edit is always the one validated.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ReloadOutcome:
    """What one validation found: ``cfg`` when it passed, else ``error`` (a readable reason)."""

    cfg: Any = None
    error: str | None = None


class ReloadWorker:
    """Runs ``validate() -> cfg`` (raising on a bad config) on a worker thread per request."""

    def __init__(self, validate: Callable[[], Any], describe: Callable[[BaseException], str]):
        self._validate = validate
        self._describe = describe
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._outcome: ReloadOutcome | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def request(self) -> None:
        """Start a validation, or queue one more when one is running."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._start_locked()

    def _start_locked(self) -> None:
        self._thread = threading.Thread(target=self._run, name="duskwatch-reload", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            outcome = ReloadOutcome(cfg=self._validate())
        except BaseException as exc:  # noqa: BLE001 - whatever the file holds, the daemon lives
            outcome = ReloadOutcome(error=self._describe(exc))
        with self._lock:
            self._outcome = outcome

    def poll(self) -> ReloadOutcome | None:
        """The outcome of a finished validation (once), starting a queued one."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return None
            outcome, self._outcome = self._outcome, None
            if self._again:
                self._again = False
                self._start_locked()
                return None  # a newer edit is being validated: this outcome is stale
            return outcome

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
