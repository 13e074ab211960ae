"""Evidence retention on its own timer, in passes bounded in time.

The evidence folder (snapshots and clips, ``<dir>/<camera>/<day>/...``) must stay under
``max_age_days`` and ``max_bytes``. Scanning it costs in proportion to the files it holds (tens of
thousands after weeks), so that cost must not land on the thread that encodes clips, nor come
in one long stall. :class:`Retention` runs on a thread of its own and does its work in steps of
at most ``budget_s`` each: a step goes on scanning the tree where the last one stopped (a
resumable walk), and once a scan is complete, deletes what it found too old or over the quota,
again in budgeted steps. Between full cycles it sleeps ``interval_s``; :meth:`Retention.poke`
(a new file was written) starts the next cycle sooner, at most once per ``min_gap_s``.

:func:`scan` and :func:`victims` are the pure parts; :meth:`Retention.step` is one bounded step
with an injectable clock, so tests count the work of a step instead of timing it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

from daemon.pipeline.ratelog import RateLimitedLog

log = logging.getLogger("duskwatch.evidence")

EVIDENCE_SUFFIXES = (".jpg", ".mp4")
Entry = tuple[float, int, str]  # (mtime, size, path)


def scan(root: str | Path) -> Iterator[Entry]:
    """Every evidence file under ``root`` (``.jpg``, ``.mp4``; not ``.part`` files being written),
    lazily: the walk can be resumed between steps. Files that vanish meanwhile are skipped."""
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif e.name.endswith(EVIDENCE_SUFFIXES) and e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    yield st.st_mtime, st.st_size, e.path
            except OSError:
                continue


def victims(files: list[Entry], now: float, max_age_s: float, max_bytes: int) -> list[str]:
    """Paths to delete: those older than ``max_age_s``, then the oldest until the rest fits in
    ``max_bytes``."""
    files = sorted(files)
    total = sum(size for _, size, _ in files)
    out = []
    for mtime, size, path in files:
        if now - mtime <= max_age_s and total <= max_bytes:
            break
        total -= size
        out.append(path)
    return out


def remove_empty_parents(root: Path, paths: list[str]) -> None:
    """Remove the day and camera folders that ``paths`` emptied (never ``root`` itself)."""
    for d in sorted({Path(p).parent for p in paths}, reverse=True):
        for folder in (d, d.parent):
            try:
                if folder != root:
                    folder.rmdir()
            except OSError:
                pass


class Retention:
    """Keeps ``settings().dir`` within its age and size quota (see the module docstring)."""

    def __init__(self, settings: Callable[[], object], interval_s: float = 60.0,
                 budget_s: float = 0.05, min_gap_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self._settings = settings  # an EvidenceConfig: dir, max_age_days, max_bytes
        self.interval_s = interval_s
        self.budget_s = budget_s
        self.min_gap_s = min_gap_s
        self._clock, self._wall = clock, wall
        self._walk: Iterator[Entry] | None = None
        self._found: list[Entry] = []
        self._doomed: deque[str] = deque()
        self._deleted: list[str] = []
        self._root: Path | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = RateLimitedLog(log)
        self.cycles = 0  # full scans completed
        self.deleted = 0  # files deleted so far
        self.steps = 0

    # one bounded step ---------------------------------------------------------------------------
    def step(self) -> bool:
        """At most ``budget_s`` of work: deleting what the last complete scan doomed, else
        scanning on. True when a full cycle (scan, then its deletions) has just finished."""
        self.steps += 1
        deadline = self._clock() + self.budget_s
        if self._doomed:
            return self._delete_some(deadline)
        if self._walk is None:
            cfg = self._settings()
            self._root = Path(cfg.dir)
            self._walk, self._found = scan(self._root), []
        for entry in self._walk:
            self._found.append(entry)
            if self._clock() >= deadline:
                return False
        cfg = self._settings()
        doomed = victims(self._found, self._wall(), cfg.max_age_days * 86400, cfg.max_bytes)
        self._walk, self._found = None, []
        self._doomed.extend(doomed)
        return self._delete_some(deadline)

    def _delete_some(self, deadline: float) -> bool:
        while self._doomed:
            path = self._doomed.popleft()
            try:
                os.unlink(path)
                self.deleted += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._errors.error("retention", "evidence: cannot delete %s: %s", path, exc)
            self._deleted.append(path)
            if self._doomed and self._clock() >= deadline:
                return False
        if self._root is not None and self._deleted:
            remove_empty_parents(self._root, self._deleted)
        self._deleted = []
        self.cycles += 1
        return True

    def run_cycle(self) -> int:
        """Steps until one full cycle is done (tests, benchmarks); the steps it took."""
        n = 1
        while not self.step():
            n += 1
        return n

    # the thread ---------------------------------------------------------------------------------
    def poke(self) -> None:
        """A file was written: start a cycle soon (at most once per ``min_gap_s``)."""
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="duskwatch-retention", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self.step():  # a cycle in bounded steps, yielding between them
                    if self._stop.wait(self.budget_s):
                        return
            except Exception as exc:  # noqa: BLE001 - retention must never stop
                self._walk, self._found = None, []
                self._errors.error("retention", "evidence: retention failed: %s: %s",
                                   type(exc).__name__, exc)
            if self._stop.wait(self.min_gap_s):
                return
            self._wake.wait(max(0.0, self.interval_s - self.min_gap_s))
            self._wake.clear()
