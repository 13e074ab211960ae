"""Where results go: sinks, isolated from each other.

A :class:`~daemon.pipeline.frames.Result` is one processed frame's detections. :class:`SinkSet` hands it to every sink;
one that raises is logged (at most once per ``log_interval_s`` per sink, so a full disk does not
flood the journal) and counted in ``duskwatch_sink_failures_total{sink}``, and the others go on.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
import threading
from typing import Callable, Protocol, Sequence

from daemon.config import SinkConfig
from daemon.pipeline.frames import Result
from daemon.pipeline.ratelog import RateLimitedLog

log = logging.getLogger("duskwatch.sinks")


class Sink(Protocol):
    name: str

    def write(self, result: Result) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, appended to a file, or to stdout for ``path: "-"``.

    A file line is written with one ``write(2)`` on an ``O_APPEND`` descriptor; when the disk
    fills mid-line (a short write, or ENOSPC/EFBIG) the file is cut back to where the line
    began, so the file never ends in a truncated line, and the write fails (counted by the
    :class:`SinkSet`)."""

    def __init__(self, path: str = "-", name: str | None = None):
        self.path = path
        self.name = name or ("jsonl:stdout" if path == "-" else f"jsonl:{path}")
        self._lock = threading.Lock()
        self._fh = None
        if path != "-":  # create the file at start, so its path exists before the first result
            try:
                self._stream()
            except OSError as exc:  # a sink must not stop the service: writes retry the open
                log.error("sink %s: cannot open %s yet: %s", self.name, path, exc)

    def _stream(self):
        if self.path == "-":
            return sys.stdout
        if self._fh is None:
            self._fh = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o640)
        return self._fh

    def write(self, result: Result) -> None:
        line = json.dumps(result.to_dict(), separators=(",", ":")) + "\n"
        with self._lock:
            stream = self._stream()
            if self.path == "-":
                stream.write(line)
                stream.flush()
                return
            _append_whole_line(stream, line.encode())

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                os.close(self._fh)
                self._fh = None


def _append_whole_line(fd: int, data: bytes) -> None:
    """Append ``data`` in full or not at all (the file is cut back on a partial write)."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        written = os.write(fd, data)
    except OSError:
        _cut(fd, start)
        raise
    if written != len(data):
        _cut(fd, start)
        raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes); disk full?")


def _cut(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def make_sink(cfg: SinkConfig, index: int = 0) -> Sink:
    if cfg.type == "jsonl":
        return JsonlSink(cfg.path)
    raise ValueError(f"sinks[{index}].type '{cfg.type}' is not supported; use jsonl")


class SinkSet:
    """Fan a result out to every sink; a failing sink is logged (rate-limited) and counted."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        on_failure: Callable[[str], None] = lambda name: None,
        log_interval_s: float = 30.0,
    ):
        self.sinks = list(sinks)
        self._on_failure = on_failure
        self._errors = RateLimitedLog(log, log_interval_s)

    def write(self, result: Result) -> None:
        for sink in self.sinks:
            try:
                sink.write(result)
            except Exception as exc:  # noqa: BLE001 - a sink must never stop the pipeline
                self._on_failure(sink.name)
                self._errors.error(sink.name, "sink %s: write failed: %s: %s",
                                   sink.name, type(exc).__name__, exc)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("sink %s: close failed: %s", sink.name, exc)
