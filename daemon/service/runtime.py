"""The composition: what a service runs, built from a config and its seams, and the reload
operations (:mod:`daemon.service.reload_plan`) applied to it.

:func:`load_engines` opens (unless adopted) and warms the detector and enhancer.
:class:`Runtime` builds, from the engines, the frame sinks, the event stage, the pipeline, the
scheduler and the :class:`~daemon.pipeline.cameras.CameraManager`; :meth:`Runtime.apply` turns
one reload operation into commands for their owner, the scheduler thread (the caller waits for
them with :meth:`Runtime.settle`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from engines.about import version
from engines.base import EngineError

from daemon.config import Config, SinkConfig, engine_name
from daemon.events.sinks import EventSinkSet
from daemon.events.stage import EventStage
from daemon.metrics import Metrics
from daemon.pipeline.cameras import CameraManager
from daemon.pipeline.process import Pipeline
from daemon.pipeline.scheduler import Scheduler
from daemon.pipeline.seams import Detector, DetectorFactory, Enhancer, EnhancerFactory
from daemon.pipeline.frames import SourceFactory
from daemon.pipeline.sinks import SinkSet
from daemon.service import reload_plan as rp
from daemon.service.snapshot_cache import JpegCache

log = logging.getLogger("duskwatch.service")


# -- engines ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engines:
    detector: Detector
    enhancer: Enhancer | None
    names: dict[str, str | None]  # role -> engine name, as /readyz reports them
    inference: tuple[tuple[str, Callable[[], str]], ...]  # (role, status()) on a server


def load_engines(cfg: Config, metrics: Metrics, *, detector: Detector | None,
                 enhancer: Enhancer | None, detector_factory: DetectorFactory,
                 enhancer_factory: EnhancerFactory, checkpoint: Callable[[], None],
                 status: Callable[[str], None], detector_path: Any = None,
                 open_enhancer: bool | None = None) -> Engines:
    """Open the engines (unless ``detector`` was adopted), warm them, export what they are.
    ``detector_path``: open this file instead of ``engines.detector`` (the checked int8 IR of
    :mod:`daemon.int8`); ``open_enhancer``: open the enhancer too (default: when the detector
    was not adopted)."""
    ecfg = cfg.engines
    t0 = time.monotonic()
    det_cfg = ecfg if detector_path is None else ecfg.model_copy(update={"detector": detector_path})
    if open_enhancer is None:
        open_enhancer = detector is None
    if detector is None:
        detector = detector_factory(det_cfg, cfg.scheduler.max_batch)
    if open_enhancer:
        enhancer = enhancer_factory(ecfg)
    names = {"detector": engine_name(det_cfg.detector),
             "enhancer": engine_name(ecfg.enhancer) if ecfg.enhancer else None}
    checkpoint()
    if enhancer is None:
        log.info("no enhancer configured: low-light frames are detected as they are")
    status("warming up engines")
    _warm(detector, lambda d: d.warmup(cfg.scheduler.max_batch))
    if enhancer is not None:
        _warm(enhancer, lambda e: e.warmup())
    metrics.set_classes(detector.names.values())
    metrics.set_build_info(version(), detector.backend, names["detector"], names["enhancer"] or "")
    report_placement(cfg, metrics, detector, enhancer)
    log.info("engines loaded and warmed in %.1f s", time.monotonic() - t0)
    return Engines(detector, enhancer, names, _inference(detector, enhancer))


def _inference(detector: Any, enhancer: Any) -> tuple[tuple[str, Callable[[], str]], ...]:
    """The engines that run on a server (a Triton URL): their ``status()``; local engines are
    always available and are not listed."""
    out = []
    for role, wrapper in (("detector", detector), ("enhancer", enhancer)):
        status = getattr(getattr(wrapper, "engine", None), "status", None)
        if callable(status):
            out.append((role, status))
    return tuple(out)


def report_placement(cfg: Config, metrics: Metrics, detector: Any, enhancer: Any) -> None:
    """Log and export (``duskwatch_engine_info``) where each engine really runs."""
    for role, wrapper in (("detector", detector), ("enhancer", enhancer)):
        placement = getattr(getattr(wrapper, "engine", None), "placement", None)
        if placement is None:
            continue
        place = placement()
        metrics.set_engine_info(role, place["device"], place["provider"])
        log.info("%s engine: %s on %s (provider %s; device %s asked for)", role,
                 place["backend"], place["device"], place["provider"], cfg.engines.device)


def _warm(wrapper: Any, warmup: Callable[[Any], None]) -> None:
    """Warm an engine. One on an inference server (it has ``status``: Triton) that fails its
    warm-up does not stop the start: it is unavailable (/readyz says so, its frames count as
    failed) until the server answers, as if the server had gone away a moment later."""
    try:
        warmup(wrapper)
    except EngineError as exc:
        if not callable(getattr(getattr(wrapper, "engine", None), "status", None)):
            raise
        log.warning("warm-up on the inference server failed (%s); starting anyway: frames fail "
                    "until it answers", exc)


# -- the running parts ------------------------------------------------------------------------
@dataclass(frozen=True)
class Seams:
    """The factories of the parts with a real-world side (tests inject fakes)."""

    source: SourceFactory
    sink: Callable
    event_sink: Callable


class Runtime:
    """Sinks, event stage, pipeline, scheduler and cameras of one service, built from ``cfg``
    and the engines; the cameras join on the scheduler's thread (:meth:`settle` before the
    loop starts applies them on the caller's)."""

    def __init__(self, cfg: Config, engines: Engines, metrics: Metrics, seams: Seams,
                 jpegs: JpegCache, *, count_source_skips: bool = True,
                 count_seq_gaps: bool = False):
        self.metrics = metrics
        self.seams = seams
        self.jpegs = jpegs
        self.events = EventStage(cfg.events, metrics, self.event_sinks(cfg),
                                 engines.detector.names.values())
        self.events.start()
        self.pipeline = Pipeline(engines.detector, metrics, self.frame_sinks(cfg),
                                 enhancer=engines.enhancer, events=self.events)
        self.scheduler = Scheduler(self.pipeline, cfg.scheduler, metrics,
                                   count_seq_gaps=count_seq_gaps)
        metrics.heartbeat_gauge("scheduler", self.scheduler.heartbeat)
        self.cameras = CameraManager(self.scheduler, metrics, seams.source,
                                     count_source_skips=count_source_skips)

    def frame_sinks(self, cfg: Config) -> SinkSet:
        sinks = [self.seams.sink(s, i) for i, s in enumerate(cfg.sinks) if isinstance(s, SinkConfig)]
        for s in sinks:
            self.metrics.add_sink(s.name)
        return SinkSet(sinks, on_failure=lambda name: self.metrics.sink_failures.labels(name).inc())

    def event_sinks(self, cfg: Config) -> EventSinkSet:
        """Event sinks (events_jsonl, mqtt, webhook), not started; their drop series at zero."""
        on_drop = self.metrics.sink_events_dropped.labels
        sinks = [self.seams.event_sink(s, lambda name: on_drop(name).inc())
                 for s in rp.event_sinks(cfg)]
        for s in sinks:
            self.metrics.add_event_sink(s.name)
        return EventSinkSet(sinks)

    # -- cameras ------------------------------------------------------------------------------
    def add_camera(self, cam: Any, cfg: Config) -> None:
        self.cameras.add(cam, cfg.lowlight)
        log.info("camera %s: added (%s, %.3g fps, enhance %s)", cam.name, cam.display_url,
                 cam.fps, cam.enhance)

    def remove_camera(self, name: str, *, keep_metrics: bool = False,
                      timeout: float = 3.0) -> None:
        self.cameras.remove(name, keep_metrics=keep_metrics, timeout=timeout)
        self.jpegs.forget(name)
        if not keep_metrics:
            log.info("camera %s: removed", name)

    def settle(self, timeout: float) -> bool:
        """Wait until the scheduler applied every command so far, and the sources that
        removals stop have stopped; True when both happened within ``timeout``."""
        end = time.monotonic() + timeout
        applied = self.scheduler.sync(timeout)
        return self.cameras.wait_stopped(max(0.0, end - time.monotonic())) and applied

    # -- reload operations ----------------------------------------------------------------------
    def apply(self, op: rp.Operation, new: Config) -> None:
        """One operation of a reload plan (the caller's thread; the scheduler's part as
        commands). :class:`~daemon.service.reload_plan.Publish` is the service's."""
        if isinstance(op, rp.RestartNeeded):
            log.warning("reload: '%s' changed; restart the service to apply it", op.section)
        elif isinstance(op, rp.SetScheduler):
            self.scheduler.set_config(op.cfg)
        elif isinstance(op, rp.SetSnapshotInterval):
            self.jpegs.interval_s = op.seconds
        elif isinstance(op, rp.ReplaceFrameSinks):
            self.scheduler.replace_sinks(self.frame_sinks(op.cfg))
        elif isinstance(op, rp.ReplaceEventSinks):
            self.scheduler.replace_event_sinks(self.event_sinks(op.cfg), op.events)
            log.info("reload: event sinks and events settings replaced")
        elif isinstance(op, rp.RemoveCamera):
            self.remove_camera(op.name)
        elif isinstance(op, rp.AddCamera):
            self.add_camera(op.cam, new)
        elif isinstance(op, rp.ReconnectCamera):
            log.info("camera %s: changed; reconnecting", op.cam.name)
            self.remove_camera(op.cam.name)
            self.add_camera(op.cam, new)
        elif isinstance(op, rp.UpdateCamera):
            self._update_in_place(op, new)
        else:  # pragma: no cover - a new operation type without its case here
            raise TypeError(f"unknown reload operation {op!r}")

    def _update_in_place(self, op: rp.UpdateCamera, cfg: Config) -> None:
        cam = op.cam
        self.cameras.update(cam, cfg.lowlight)
        if op.events:
            self.scheduler.configure_events(cam)
            log.info("camera %s: tracking, zones and lines updated (%d zones, %d lines)",
                     cam.name, len(cam.zones), len(cam.lines))
        log.info("camera %s: settings updated (%.3g fps, enhance %s)", cam.name, cam.fps, cam.enhance)

    # -- closing --------------------------------------------------------------------------------
    def close(self, engines: tuple[Any, ...]) -> None:
        """Close sinks, events and engines; only once the scheduler loop (their owner) ended."""
        self.scheduler.apply_commands()  # sinks replaced by a last reload get closed too
        self.pipeline.sinks.close()
        self.events.close(timeout=1.5)  # queued events get 1.5 s; the rest count as dropped
        for engine in engines:
            if engine is None:
                continue
            try:
                engine.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing engine failed: %s", exc)
