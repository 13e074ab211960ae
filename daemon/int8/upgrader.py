"""The thread that upgrades a running f32 OpenVINO detector to int8, and the start-up decision.

At start (:func:`plan`): on a box whose engine choice is int8, with ``engines.int8: auto`` and
an f32 IR as the detector, either the int8 sibling on disk belongs to that IR and passed its
check (it is opened instead of the f32 one), or :class:`Upgrader` runs:

1. collect frames of the running cameras (:mod:`daemon.int8.collect`);
2. build the int8 IR in a niced subprocess (:mod:`daemon.int8.build`);
3. check it against f32 on the held-out frames (:mod:`daemon.int8.check`), and record the
   verdict in its sidecar;
4. open and warm it here (off the hot path), then hand it to ``swap`` (the service swaps it in
   between two batches and closes the f32 one).

Every failure leaves f32 running: it is logged, counted
(``duskwatch_int8_failures_total{stage}``) and retried after ``retry_after_s``. ``stop()``
ends a build subprocess within a few seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from daemon.install.engine_choice import BoxFacts, choose_engines, probe_box
from daemon.int8 import check as int8_check
from daemon.int8.build import NICE, BuildFailed, export_argv, run_build
from daemon.int8.collect import FrameCollector
from daemon.int8.sibling import Sibling, is_f32_ir

log = logging.getLogger("duskwatch.int8")

STATES = ("off", "collecting", "building", "checking", "active", "refused", "failed")
STAGES = ("collect", "build", "check", "load")


@dataclass(frozen=True)
class Settings:
    """How the upgrade runs (the service's defaults; tests and the demo pass their own)."""

    every_s: float = 3.0  # at most one frame per camera this often
    calib_frames: int = 160
    check_frames: int = 40
    min_agreement: float = int8_check.MIN_AGREEMENT
    min_boxes: int = int8_check.MIN_BOXES
    build_timeout_s: float = 3600.0
    retry_after_s: float = 6 * 3600.0  # after a failed build or a refused int8
    progress_every_s: float = 600.0  # a log line while collecting
    nice: int = NICE
    facts: BoxFacts | None = None  # None: this box (probed once)
    build_argv: Callable[[Path, Path, Path, int], list[str]] = export_argv

    def box(self) -> BoxFacts:
        return self.facts if self.facts is not None else probe_box()

    def describe(self, cameras: int) -> str:
        """How long collecting takes with ``cameras`` cameras (for logs and install-service)."""
        total = self.calib_frames + self.check_frames
        seconds = total * self.every_s / max(1, cameras)
        took = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
        return (f"{total} frames, one per camera every {self.every_s:g} s: about {took} with "
                f"{cameras} camera{'s' if cameras != 1 else ''}")


class Int8Metrics:
    """``duskwatch_int8_state{state}`` (1 for the current one), ``duskwatch_int8_frames``
    (collected), ``duskwatch_int8_check_agreement``, ``duskwatch_int8_failures_total{stage}``."""

    def __init__(self, registry: CollectorRegistry):
        self.state = Gauge("duskwatch_int8_state", "1 for the int8 upgrade's current state of "
                           "the detector (off: not applicable or engines.int8: off; active: the "
                           "int8 detector runs).", ["state"], registry=registry)
        self.frames = Gauge("duskwatch_int8_frames", "Calibration and check frames collected "
                            "for the int8 detector.", registry=registry)
        self.agreement = Gauge("duskwatch_int8_check_agreement", "Box agreement (F1, 0..1) of "
                               "the int8 detector with the f32 one on held-out frames at its "
                               "last check (NaN before).", registry=registry)
        self.failures = Counter("duskwatch_int8_failures_total", "int8 upgrade steps that failed "
                                "(f32 kept running).", ["stage"], registry=registry)
        for s in STATES:
            self.state.labels(s).set(0)
        for s in STAGES:
            self.failures.labels(s)
        self.agreement.set(float("nan"))
        self.set_state("off")

    def set_state(self, state: str) -> None:
        for s in STATES:
            self.state.labels(s).set(1 if s == state else 0)


@dataclass(frozen=True)
class Plan:
    """What start-up does: ``sibling`` is None when no upgrade applies (``reason`` says why);
    ``use_int8`` when the checked int8 sibling is opened at once."""

    sibling: Sibling | None
    use_int8: bool
    reason: str


def plan(ecfg: Any, settings: Settings) -> Plan:
    """Start-up decision for the detector in ``ecfg`` (:class:`daemon.config.EnginesConfig`)."""
    if ecfg.int8 == "off":
        return Plan(None, False, "engines.int8 is off")
    if not is_f32_ir(ecfg.detector):
        return Plan(None, False, "the detector is not an f32 OpenVINO IR")
    choice = choose_engines(settings.box(), "cpu" if ecfg.device == "cpu" else "auto")
    if not choice.int8:
        return Plan(None, False, "this box's engine choice is not int8: " + choice.reason)
    sib = Sibling(Path(ecfg.detector))
    if sib.usable():
        return Plan(sib, True, "its int8 sibling was built from it and passed its check ("
                    + str(sib.verdict().get("reason")) + ")")
    return Plan(sib, False, "this box's engine choice is int8: " + choice.reason)


Frames = Callable[[], Iterable[tuple[str, int, np.ndarray]]]  # (camera, seq, BGR image)
OpenDetector = Callable[[Path, float | None], Any]  # (engine path, conf or None) -> detector
Swap = Callable[[Any, Path, threading.Event], bool]  # (detector, its file, stop)


@dataclass
class Upgrader:
    """Runs the steps of the module docstring on its own thread."""

    sibling: Sibling
    settings: Settings
    metrics: Int8Metrics
    open_detector: OpenDetector
    frames: Frames
    swap: Swap
    max_batch: int = 1
    conf: float = 0.25  # the detector's threshold in the config: the check's operating point
    cameras: Callable[[], int] = lambda: 1
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    outcome: str = ""  # the last step's result, for tests and logs

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="duskwatch-int8", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> bool:
        """End the thread (and a build subprocess); True when it ended within ``timeout``."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the steps --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._wait_out_refusal() and self._attempt():
                    return
                if self._stop.wait(self.settings.retry_after_s):
                    return
        except Exception as exc:  # noqa: BLE001 - never takes the daemon down
            log.exception("int8: unexpected error (%s); the f32 detector keeps running", exc)
            self.metrics.failures.labels("load").inc()
            self.metrics.set_state("failed")

    def _wait_out_refusal(self) -> bool:
        """A refused int8 of this f32 IR, checked less than ``retry_after_s`` ago (a restart),
        waits out the rest before collecting again; False when stopped meanwhile."""
        verdict = self.sibling.verdict()
        if not verdict or verdict.get("passed"):
            return True
        left = self.settings.retry_after_s - (time.time() - float(verdict.get("at", 0)))
        if left <= 0:
            return True
        self.metrics.set_state("refused")
        log.warning("int8: %s was refused at its last check (%s); the f32 detector runs, next try "
                    "in %.0f min", self.sibling.int8.name, verdict.get("reason"), left / 60)
        return not self._stop.wait(left)

    def _attempt(self) -> bool:
        """collect -> build -> check -> swap; True when the int8 detector runs."""
        collector = self._collect()
        if collector is None:
            return False
        prebuilt = self.sibling.matches_f32() and self.sibling.verdict() is None
        if prebuilt:
            log.info("int8: %s was built from %s but never checked; checking it",
                     self.sibling.int8.name, self.sibling.f32.name)
        elif not self._build(collector):
            return False
        result = self._check(collector)
        if result is None or not result.passed:
            if result is not None:  # refused: start over on new frames after retry_after_s
                collector.clear()
            return False
        return self._swap_in(result)

    def _collect(self) -> FrameCollector | None:
        s = self.settings
        try:
            collector = FrameCollector(self.sibling.calib, self.sibling.check, s.calib_frames,
                                       s.check_frames, s.every_s)
        except OSError as exc:
            self._failed("collect", f"cannot create {self.sibling.frames} ({exc})")
            return None
        self.metrics.set_state("collecting")
        self.metrics.frames.set(collector.count)
        if not collector.complete:
            log.info("int8: collecting calibration frames of the cameras into %s (%s; %d there "
                     "already)", self.sibling.frames, s.describe(self.cameras()), collector.count)
        seen: dict[str, int] = {}
        last_note = time.monotonic()
        while not collector.complete:
            if self._stop.wait(min(1.0, s.every_s / 2)):
                return None
            try:
                self._offer(collector, seen)
            except OSError as exc:
                self._failed("collect", f"cannot save a frame: {exc}")
                return None
            self.metrics.frames.set(collector.count)
            if time.monotonic() - last_note >= s.progress_every_s:
                last_note = time.monotonic()
                log.info("int8: %d of %d frames collected", collector.count,
                         s.calib_frames + s.check_frames)
        log.info("int8: %d calibration and %d check frames collected in %s", collector.calib,
                 collector.checks, self.sibling.frames)
        return collector

    def _offer(self, collector: FrameCollector, seen: dict[str, int]) -> None:
        now = time.monotonic()
        for camera, seq, image in self.frames():
            if seen.get(camera) == seq or not collector.due(camera, now):
                continue  # the same frame again (a stalled camera) or too soon
            seen[camera] = seq
            collector.offer(camera, image, now)

    def _build(self, collector: FrameCollector) -> bool:
        s, sib = self.settings, self.sibling
        argv = s.build_argv(sib.f32, sib.calib, sib.int8, s.calib_frames)
        self.metrics.set_state("building")
        log.info("int8: building %s from %d frames (nice %d; output in %s): %s", sib.int8.name,
                 collector.calib, s.nice, sib.build_log, " ".join(argv[1:]))
        t0 = time.monotonic()
        try:
            run_build(argv, sib.build_log, self._stop, s.build_timeout_s, s.nice)
        except BuildFailed as exc:
            if self._stop.is_set():
                log.info("int8: build stopped (the daemon is stopping); it restarts next time")
                return False
            return self._failed("build", f"building {sib.int8.name} failed: {exc}")
        except OSError as exc:
            return self._failed("build", f"cannot start the build: {exc}")
        if not sib.matches_f32():
            return self._failed("build", f"the build wrote no {sib.int8.name} made from "
                                f"{sib.f32.name} (see {sib.build_log})")
        log.info("int8: built %s in %.0f s", sib.int8.name, time.monotonic() - t0)
        return True

    def _check(self, collector: FrameCollector) -> int8_check.CheckResult | None:
        s, sib = self.settings, self.sibling
        self.metrics.set_state("checking")
        opened = []
        try:
            low = self.conf * int8_check.SCORE_BAND  # boxes just under the threshold count
            f32 = self.open_detector(sib.f32, low)
            opened.append(f32)
            int8 = self.open_detector(sib.int8, low)
            opened.append(int8)
            result = int8_check.check(collector.check_images(), f32, int8, self.conf,
                                      s.min_agreement, s.min_boxes, cancelled=self._stop.is_set)
        except int8_check.Cancelled:
            return None
        except Exception as exc:  # noqa: BLE001 - a broken int8 IR: keep f32
            self._failed("check", f"checking {sib.int8.name} failed: {type(exc).__name__}: {exc}")
            return None
        finally:
            for det in opened:
                _close(det)
        try:
            sib.record_check({**result.to_json(), "at": round(time.time(), 3)})
        except OSError as exc:  # the verdict is not kept: the next start checks again
            log.warning("int8: cannot record the check in %s's sidecar (%s)", sib.int8.name, exc)
        if result.agreement is not None:
            self.metrics.agreement.set(result.agreement)
        if not result.passed:
            self.metrics.failures.labels("check").inc()
            self.metrics.set_state("refused")
            self.outcome = "refused"
            log.warning("int8: %s refused: %s; the f32 detector keeps running (next try on new "
                        "frames in %.0f min)", sib.int8.name, result.reason, s.retry_after_s / 60)
        else:
            log.info("int8: %s passed its check: %s", sib.int8.name, result.reason)
            sib.remove_frames()
        return result

    def _swap_in(self, result: int8_check.CheckResult) -> bool:
        sib = self.sibling
        try:
            new = self.open_detector(sib.int8, None)
        except Exception as exc:  # noqa: BLE001
            return self._failed("load", f"opening {sib.int8.name} failed: {exc}")
        try:
            new.warmup(self.max_batch)
        except Exception as exc:  # noqa: BLE001
            _close(new)
            return self._failed("load", f"warming {sib.int8.name} up failed: {exc}")
        if not self.swap(new, sib.int8, self._stop):
            _close(new)
            return False
        self.metrics.set_state("active")
        self.outcome = "active"
        return True

    def _failed(self, stage: str, why: str) -> bool:
        """Count, log and show a failed step; False (what the step returns)."""
        self.metrics.failures.labels(stage).inc()
        self.metrics.set_state("failed")
        self.outcome = f"failed:{stage}"
        log.error("int8: %s; the f32 detector keeps running (next try in %.0f min)", why,
                  self.settings.retry_after_s / 60)
        return False


def _close(detector: Any) -> None:
    try:
        detector.close()
    except Exception as exc:  # noqa: BLE001
        log.warning("int8: closing a detector failed: %s", exc)
