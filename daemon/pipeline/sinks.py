"""Where results go: sinks, isolated from each other.

A :class:`Result` is one processed frame's detections. :class:`SinkSet` hands it to every sink;
one that raises is logged (at most once per ``log_interval_s`` per sink, so a full disk does not
flood the journal) and counted in ``duskwatch_sink_failures_total{sink}``, and the others go on.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol, Sequence

from daemon.config import SinkConfig

log = logging.getLogger("duskwatch.sinks")


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original frame
    score: float
    class_id: int
    class_name: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "class": self.class_name,
            "class_id": int(self.class_id),
        }


@dataclass(frozen=True)
class Result:
    camera: str
    seq: int
    captured_wall: float
    enhanced: bool
    detections: tuple[Detection, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        when = datetime.fromtimestamp(self.captured_wall, tz=timezone.utc)
        return {
            "camera": self.camera,
            "time": when.isoformat(timespec="milliseconds"),
            "epoch": round(self.captured_wall, 3),
            "seq": self.seq,
            "enhanced": self.enhanced,
            "detections": [d.to_dict() for d in self.detections],
        }


class Sink(Protocol):
    name: str

    def write(self, result: Result) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line, appended to a file, or to stdout for ``path: "-"``."""

    def __init__(self, path: str = "-", name: str | None = None):
        self.path = path
        self.name = name or ("jsonl:stdout" if path == "-" else f"jsonl:{path}")
        self._lock = threading.Lock()
        self._fh = None

    def _stream(self):
        if self.path == "-":
            return sys.stdout
        if self._fh is None:
            self._fh = open(self.path, "a", encoding="utf-8")
        return self._fh

    def write(self, result: Result) -> None:
        line = json.dumps(result.to_dict(), separators=(",", ":")) + "\n"
        with self._lock:
            stream = self._stream()
            stream.write(line)
            stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


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
        self._log_interval = log_interval_s
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def write(self, result: Result) -> None:
        for sink in self.sinks:
            try:
                sink.write(result)
            except Exception as exc:  # noqa: BLE001 - a sink must never stop the pipeline
                self._on_failure(sink.name)
                self._log_failure(sink.name, exc)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("sink %s: close failed: %s", sink.name, exc)

    def _log_failure(self, name: str, exc: Exception) -> None:
        now = time.monotonic()
        last = self._last_log.get(name)
        if last is not None and now - last < self._log_interval:
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return
        more = self._suppressed.pop(name, 0)
        extra = f" ({more} more failures since the last message)" if more else ""
        log.error("sink %s: write failed: %s: %s%s", name, type(exc).__name__, exc, extra)
        self._last_log[name] = now
