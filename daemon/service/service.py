"""The service: wires config, camera sources, gates, engines, scheduler, metrics, HTTP and systemd.

Life of a :class:`Service`::

    svc = Service(cfg)            # metrics registry, HTTP app; nothing started
    svc.start()                   # HTTP up, engines loaded + warmed, cameras started, READY=1
    svc.serve(stop, reload)       # main thread: watchdog pings, supervision, reloads
    svc.stop()                    # STOPPING=1, everything stopped within a few seconds

Every dependency with a real-world side is a constructor argument (the seams): the source
factory (:data:`daemon.pipeline.frames.SourceFactory`), the detector and enhancer factories, the sink
factory, the metrics registry and the systemd notifier. Tests inject fakes there.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping
from urllib.parse import unquote

from prometheus_client import CollectorRegistry

from engines.about import version
from engines.base import EngineError

from daemon.config import (
    CameraConfig,
    Config,
    ConfigError,
    SinkConfig,
    engine_name,
    secrets_of,
    sink_secret,
)
from daemon.events.homeassistant import HomeAssistant
from daemon.service import reload_plan as rp
from daemon.events.sinks import EventSinkSet, make_event_sink
from daemon.events.stage import EventStage
from daemon.metrics import CONTENT_TYPE, Metrics
from daemon.pipeline.frames import CameraSource, CameraState, SourceFactory, StateChange
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.process import Pipeline
from daemon.pipeline.scheduler import CameraSlot, Scheduler
from daemon.pipeline.seams import Detector, DetectorFactory, Enhancer, EnhancerFactory
from daemon.pipeline.sinks import SinkSet, make_sink
from daemon.service.auth import auth_secrets, resolve_auth
from daemon.service.engines import (  # noqa: F401 - the default factories, re-exported
    default_detector_factory, default_enhancer_factory, default_source_factory)
from daemon.service.http import HttpServer, SnapshotNotReady
from daemon.service.reloads import ReloadWorker
from daemon.service.secrets import SecretsFilter
from daemon.service.snapshot_cache import JpegCache, SingleFlight
from daemon.service.systemd import Notifier
from daemon.service.validation import validate

log = logging.getLogger("duskwatch.service")


class StartCancelled(Exception):
    """SIGTERM arrived while the service was starting: it stops instead of becoming ready."""

RELOAD_SYNC_S = 5.0  # a reload waits this long for the scheduler to apply it


def check_runtime(cfg: Config, environ: dict[str, str] | None = None) -> None:
    """What validation cannot see without opening engines: every credential (camera passwords,
    event sinks' secrets) resolves. (:func:`daemon.service.validation.validate` does all checks.)"""
    for cam in cfg.cameras:
        cam.resolved_url(environ)
    for sink in cfg.sinks:
        sink_secret(sink, environ)


# -- source events ----------------------------------------------------------------------------------
class _CameraEvents:
    """SourceEvents for one source instance; events of a replaced instance are ignored."""

    def __init__(self, service: "Service", camera: str, token: int):
        self._svc, self._camera, self._token = service, camera, token

    def _current(self) -> bool:
        return self._svc._tokens.get(self._camera) == self._token

    def on_state(self, change: StateChange) -> None:
        if not self._current():
            return
        self._svc.metrics.set_state(self._camera, change.new)
        level = logging.WARNING if change.new in (CameraState.STALLED, CameraState.BACKING_OFF) else logging.INFO
        log.log(level, "camera %s: %s -> %s%s", self._camera, change.old.value, change.new.value,
                f" ({change.reason})" if change.reason else "")

    def on_frame_skipped(self, camera: str, count: int) -> None:
        if self._current() and self._svc.count_source_skips:
            self._svc.metrics.count_frames(self._camera, "dropped", count)

    def on_reconnect(self, camera: str) -> None:
        if self._current():
            self._svc.metrics.count_reconnect(self._camera)

    def on_decoder_killed(self, camera: str) -> None:
        if self._current():
            self._svc.metrics.count_decoder_kill(self._camera)


@dataclass(frozen=True)
class _Camera:
    cfg: CameraConfig
    source: CameraSource
    slot: CameraSlot


@dataclass(frozen=True)
class Published:
    """What readers (HTTP threads, the status line) see: the running config and its cameras,
    replaced as a whole once a start-up or a reload is applied, never changed in place."""

    cfg: Config
    cameras: Mapping[str, _Camera] = field(default_factory=lambda: MappingProxyType({}))


# -- the service ------------------------------------------------------------------------------------
class Service:
    """One running duskwatch: see the module docstring."""

    def __init__(
        self,
        cfg: Config,
        *,
        source_factory: SourceFactory | None = None,
        detector_factory: DetectorFactory | None = None,
        enhancer_factory: EnhancerFactory | None = None,
        sink_factory: Callable = make_sink,
        event_sink_factory: Callable = make_event_sink,
        registry: CollectorRegistry | None = None,
        notifier: Notifier | None = None,
        secrets_filter: SecretsFilter | None = None,
        config_path: str | Path | None = None,
        serve_http: bool = True,
        count_source_skips: bool = True,
        count_seq_gaps: bool = False,
        listen: str | None = None,
    ):
        self._published = Published(cfg)
        self._listen = listen
        self.config_path = Path(config_path) if config_path else None
        self.source_factory = source_factory or default_source_factory
        self.detector_factory = detector_factory or default_detector_factory
        self.enhancer_factory = enhancer_factory or default_enhancer_factory
        self.sink_factory = sink_factory
        self.event_sink_factory = event_sink_factory
        self.events: EventStage | None = None
        self.home_assistant: HomeAssistant | None = None
        self.metrics = Metrics(registry)
        self.notifier = notifier or Notifier()
        self.secrets_filter = secrets_filter
        self.count_source_skips = count_source_skips
        self._count_seq_gaps = count_seq_gaps
        self._serve_http = serve_http
        self.http: HttpServer | None = None
        self.detector: Detector | None = None
        self.enhancer: Enhancer | None = None
        self.pipeline: Pipeline | None = None
        self.scheduler: Scheduler | None = None
        self._cameras: dict[str, _Camera] = {}  # the owner's working table (see _publish)
        self._restarted: dict[str, float] = {}  # supervisor restarts (main thread)
        self._tokens: dict[str, int] = {}
        self._next_token = 0
        self._lock = threading.RLock()
        self._ready = False
        self._started_at = time.monotonic()
        self._last_watchdog = 0.0
        self._last_status = ""
        self._cancelled = threading.Event()
        self._engine_names: dict[str, str | None] = {}
        self._reload_status: dict[str, Any] = {"status": "none"}
        self._reloads = ReloadWorker(self._validate_file, self._describe_failure)
        self._auth = resolve_auth(cfg.http.auth)
        self.snapshots = JpegCache(self._render_snapshot, cfg.http.snapshot_interval_s)
        self._exposition = SingleFlight(lambda: (self.metrics.render(), CONTENT_TYPE))
        self._update_secrets(cfg)

    @property
    def cfg(self) -> Config:
        """The running config (immutable; replaced as a whole by a reload)."""
        return self._published.cfg

    @property
    def published(self) -> Published:
        """The running config and cameras, one consistent snapshot."""
        return self._published

    def _publish(self, cfg: Config) -> None:
        """Make ``cfg`` and the current cameras what readers see, in one assignment."""
        with self._lock:
            cameras = MappingProxyType(dict(self._cameras))
        self._published = Published(cfg, cameras)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Serve HTTP, load and warm the engines, start the cameras, then tell systemd READY=1."""
        if self._serve_http:
            self.http = HttpServer(self, self.cfg.http.host, self.cfg.http.port,
                                   settings=self.cfg.http, auth=self._auth, metrics=self.metrics)
            self.http.start()
            log.info("HTTP on %s:%d (%s)", *self.http.address,
                     "authentication required" if self._auth else "no authentication")
        self._checkpoint()
        self.notifier.status("loading engines")
        with _StartupPings(self.notifier):
            self._load_engines()
        self._checkpoint()
        sinks = self._build_sinks(self.cfg)
        self.events = EventStage(self.cfg.events, self.metrics, self._build_event_sinks(self.cfg),
                                 self.detector.names.values())
        self.events.start()
        self.pipeline = Pipeline(self.detector, self.metrics, sinks, enhancer=self.enhancer,
                                 events=self.events)
        self.scheduler = Scheduler(self.pipeline, self.cfg.scheduler, self.metrics,
                                   count_seq_gaps=self._count_seq_gaps)
        self.metrics.heartbeat_gauge("scheduler", self.scheduler.heartbeat)
        for cam in self.cfg.cameras:
            self._checkpoint()
            self._add_camera(cam, self.cfg)
        self._publish(self.cfg)
        self.scheduler.sync(0)  # not running yet: the cameras' units are applied here
        self.scheduler.start()
        self.home_assistant = HomeAssistant(self.metrics.registry, self._latest_snapshot, version())
        self.home_assistant.apply(self.cfg.sinks, self.cfg.cameras)
        with self._lock:  # cancel_start() takes this lock too: READY=1 never follows SIGTERM
            self._checkpoint()
            self._ready = True
            self.notifier.ready(self._status_line())
        self.metrics.ready.set(1)
        self.metrics.reload_success_time.set(time.time())
        log.info("ready: %d cameras", len(self._cameras))

    def cancel_start(self) -> None:
        """SIGTERM during :meth:`start`: it stops at its next step and never sends READY=1."""
        with self._lock:
            self._cancelled.set()

    def _checkpoint(self) -> None:
        if self._cancelled.is_set():
            raise StartCancelled("stop requested during start-up")

    def adopt_engines(self, detector: Detector | None, enhancer: Enhancer | None) -> None:
        """Use engines already opened (by validation at start-up) instead of opening them."""
        self.detector, self.enhancer = detector, enhancer

    def stop(self, timeout: float = 3.5) -> None:
        """STOPPING=1, then stop the scheduler, the cameras (in parallel), HTTP, sinks, engines."""
        self.cancel_start()
        self.notifier.stopping("stopping")
        self._ready = False
        self.metrics.ready.set(0)
        deadline = time.monotonic() + timeout
        loop_ended = self.scheduler is None or self.scheduler.stop(timeout / 2)
        if not loop_ended:
            log.warning("scheduler did not stop within %.1f s (an engine call in progress); its "
                        "engines and sinks are left open for the process exit", timeout / 2)
        with self._lock:
            sources = [c.source for c in self._cameras.values()]
            self._cameras.clear()
            self._tokens.clear()
        self._publish(self.cfg)
        _stop_all(sources, max(0.5, deadline - time.monotonic()))
        if self.http is not None:
            self.http.stop()
        if self.home_assistant is not None:
            self.home_assistant.stop()  # "offline" on the availability topic
        if loop_ended:
            self._close_pipeline()
        self.notifier.close()
        log.info("stopped")

    def _close_pipeline(self) -> None:
        """Close sinks and engines; only once the scheduler loop (their owner) has ended."""
        if self.scheduler is not None:
            self.scheduler.apply_commands()  # sinks replaced by a last reload get closed too
        if self.pipeline is not None:
            self.pipeline.sinks.close()
        if self.events is not None:
            self.events.close(timeout=1.5)  # queued events get 1.5 s; the rest count as dropped
        for engine in (self.detector, self.enhancer):
            if engine is None:
                continue
            try:
                engine.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing engine failed: %s", exc)

    def serve(self, stop: threading.Event, reload: threading.Event | None = None,
              tick_s: float = 0.5) -> None:
        """Main-thread loop until ``stop`` is set: reloads on ``reload``, watchdog, supervision."""
        while not stop.is_set():
            if reload is not None and reload.is_set():
                reload.clear()
                self._request_reload()
            self._finish_reload()
            self.tick()
            interval = tick_s if self.notifier.watchdog_s is None else min(tick_s, self.notifier.watchdog_s / 2)
            stop.wait(interval)

    def tick(self) -> None:
        """Watchdog ping (only while healthy), status line, restart of stuck readers."""
        healthy, info = self.health()
        now = time.monotonic()
        wd = self.notifier.watchdog_s
        if healthy and wd is not None and now - self._last_watchdog >= wd:
            self.notifier.watchdog()
            self._last_watchdog = now
        status = self._status_line() if healthy else "unhealthy: " + "; ".join(info["reasons"])
        if status != self._last_status:
            self.notifier.status(status)
            self._last_status = status
        self._supervise(info)

    # -- engines ------------------------------------------------------------------------------
    def _load_engines(self) -> None:
        ecfg = self.cfg.engines
        t0 = time.monotonic()
        if self.detector is None:
            self.detector = self.detector_factory(ecfg, self.cfg.scheduler.max_batch)
            self.enhancer = self.enhancer_factory(ecfg)
        self._engine_names = {"detector": engine_name(ecfg.detector),
                              "enhancer": engine_name(ecfg.enhancer) if ecfg.enhancer else None}
        self._checkpoint()
        if self.enhancer is None:
            log.info("no enhancer configured: low-light frames are detected as they are")
        self.notifier.status("warming up engines")
        _warm(self.detector, lambda d: d.warmup(self.cfg.scheduler.max_batch))
        if self.enhancer is not None:
            _warm(self.enhancer, lambda e: e.warmup())
        self.metrics.set_classes(self.detector.names.values())
        self.metrics.set_build_info(
            version(), self.detector.backend,
            engine_name(ecfg.detector), engine_name(ecfg.enhancer) if ecfg.enhancer else "")
        self._report_placement()
        log.info("engines loaded and warmed in %.1f s", time.monotonic() - t0)

    def _report_placement(self) -> None:
        """Log and export (``duskwatch_engine_info``) where each engine really runs."""
        asked = self.cfg.engines.device
        for role, wrapper in (("detector", self.detector), ("enhancer", self.enhancer)):
            placement = getattr(getattr(wrapper, "engine", None), "placement", None)
            if placement is None:
                continue
            place = placement()
            self.metrics.set_engine_info(role, place["device"], place["provider"])
            log.info("%s engine: %s on %s (provider %s; device %s asked for)", role,
                     place["backend"], place["device"], place["provider"], asked)

    # -- cameras ------------------------------------------------------------------------------
    def _add_camera(self, cam: CameraConfig, cfg: Config) -> None:
        """Start the camera's source, then hand the camera to the scheduler: its metric
        series, events settings and slot are created there, as one unit."""
        with self._lock:
            self._next_token += 1
            self._tokens[cam.name] = self._next_token
            token = self._next_token
        source = self.source_factory(cam, _CameraEvents(self, cam.name, token))
        gate = LowLightGate(cfg.lowlight, cam.enhance, cam.picture)
        slot = CameraSlot(cam.name, source, gate, cam.fps)
        with self._lock:
            self._cameras[cam.name] = _Camera(cam, source, slot)
        source.start()

        def series() -> None:  # scheduler thread
            self.metrics.add_camera(cam.name, _state_of(source))
            self.metrics.heartbeat_gauge(f"camera:{cam.name}", source.heartbeat)

        self.scheduler.add_camera(slot, cam, on_added=series)
        log.info("camera %s: added (%s, %.3g fps, enhance %s)", cam.name, cam.display_url,
                 cam.fps, cam.enhance)

    def _remove_camera(self, name: str, timeout: float = 3.0, keep_metrics: bool = False) -> None:
        """Stop the camera's source; the scheduler drops its slot, state and (unless
        ``keep_metrics``: a supervisor restart, whose counters carry on) its metric series,
        as one unit between two batches."""
        with self._lock:
            entry = self._cameras.pop(name, None)
            self._tokens.pop(name, None)
        if entry is None:
            return

        def drop_series() -> None:  # scheduler thread, after the slot and state are gone
            self.metrics.remove_camera(name)
            self.metrics.remove_heartbeat(f"camera:{name}")

        self.scheduler.remove_camera(name, None if keep_metrics else drop_series)
        _stop_all([entry.source], timeout)
        self.snapshots.forget(name)
        if not keep_metrics:
            log.info("camera %s: removed", name)

    def _supervise(self, info: dict[str, Any]) -> None:
        """Restart a camera reader whose heartbeat went stale, at most once per timeout."""
        timeout = self.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        restarted = False
        for name in info.get("stale_cameras", []):
            entry = self._cameras.get(name)
            if entry is None or now - self._restarted.get(name, 0.0) < timeout:
                continue
            log.error("camera %s: reader silent for more than %.0f s; restarting it", name, timeout)
            self._remove_camera(name, timeout=1.0, keep_metrics=True)
            self._add_camera(entry.cfg, self.cfg)
            self._restarted[name] = now
            restarted = True
        if restarted:
            self._publish(self.cfg)

    # -- reload --------------------------------------------------------------------------------
    def reload_from_file(self) -> bool:
        """Read, validate and apply the config file now (the caller's thread); on any failure
        keep the running config and engines. :meth:`serve` does the same with the reading and
        validating on a worker thread."""
        if self.config_path is None:
            log.warning("reload requested but the service has no config file")
            return False
        self._notify_reloading()
        try:
            new = self._validate_file()
        except BaseException as exc:  # noqa: BLE001 - a bad file never stops the daemon
            return self._reload_failed(self._describe_failure(exc))
        return self._apply_reload(new)

    def _request_reload(self) -> None:
        if self.config_path is None:
            log.warning("reload requested but the service has no config file")
            return
        log.info("reload requested (SIGHUP): reading %s", self.config_path)
        self._notify_reloading()
        self._reloads.request()

    def _finish_reload(self) -> None:
        outcome = self._reloads.poll()
        if outcome is None:
            return
        if outcome.error is not None:
            self._reload_failed(outcome.error)
        else:
            self._apply_reload(outcome.cfg)

    def _notify_reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def _validate_file(self) -> Config:
        """The one validation (:func:`daemon.service.validation.validate`) with this service's
        engine factories and its ``--listen`` override: engines are opened (not warmed) and
        closed again."""
        return validate(self.config_path, detector_factory=self.detector_factory,
                        enhancer_factory=self.enhancer_factory, listen=self._listen).cfg

    def _describe_failure(self, exc: BaseException) -> str:
        text = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _apply_reload(self, new: Config) -> bool:
        try:
            self.reload(new)
        except Exception as exc:  # noqa: BLE001
            log.exception("reload: applying the new config failed")
            return self._reload_failed(f"applying it failed: {self._describe_failure(exc)}")
        self.metrics.reload_success_time.set(time.time())
        self._reload_status = {"status": "ok", "at": round(time.time(), 3)}
        self.notifier.ready(self._status_line())
        return True

    def _reload_failed(self, reason: str) -> bool:
        log.error("reload: %s; keeping the running config", reason)
        self.metrics.reload_failures.inc()
        self._reload_status = {"status": "failed", "at": round(time.time(), 3), "error": reason}
        self.notifier.ready(self._status_line())
        return False

    def reload(self, new: Config) -> None:
        """Apply ``new`` (the plan of :mod:`daemon.service.reload_plan`): cameras added,
        removed, changed; unchanged cameras are not touched; readers see the new config once
        all of it is applied. An unchanged config changes nothing."""
        ops = rp.plan(self.cfg, new)
        if not ops:
            log.info("reload: the config is unchanged; nothing to do")
            return
        for op in ops:
            self._apply(op, new)
        if not self.scheduler.sync(RELOAD_SYNC_S):
            log.warning("reload: the scheduler has not applied the changes within %.0f s (an "
                        "engine call in progress); they apply after it", RELOAD_SYNC_S)
        if self.home_assistant is not None:  # removed cameras, zones, lines leave Home Assistant
            self.home_assistant.apply(new.sinks, new.cameras)
        log.info("reload: done, %d cameras", len(self._cameras))

    def _apply(self, op: rp.Operation, new: Config) -> None:
        """One operation of a reload plan (main thread; the scheduler's part as commands)."""
        if isinstance(op, rp.RestartNeeded):
            log.warning("reload: '%s' changed; restart the service to apply it", op.section)
        elif isinstance(op, rp.SetScheduler):
            self.scheduler.set_config(op.cfg)
        elif isinstance(op, rp.SetSnapshotInterval):
            self.snapshots.interval_s = op.seconds
        elif isinstance(op, rp.ReplaceFrameSinks):
            self.scheduler.replace_sinks(self._build_sinks(op.cfg))
        elif isinstance(op, rp.ReplaceEventSinks):
            self.scheduler.replace_event_sinks(self._build_event_sinks(op.cfg), op.events)
            log.info("reload: event sinks and events settings replaced")
        elif isinstance(op, rp.RemoveCamera):
            self._remove_camera(op.name)
        elif isinstance(op, rp.AddCamera):
            self._add_camera(op.cam, new)
        elif isinstance(op, rp.ReconnectCamera):
            log.info("camera %s: changed; reconnecting", op.cam.name)
            self._remove_camera(op.cam.name)
            self._add_camera(op.cam, new)
        elif isinstance(op, rp.UpdateCamera):
            self._update_in_place(op, new)
        elif isinstance(op, rp.Publish):
            self._update_secrets(op.cfg)
            self._publish(op.cfg)
        else:  # pragma: no cover - a new operation type without its case here
            raise TypeError(f"unknown reload operation {op!r}")

    def _update_in_place(self, op: rp.UpdateCamera, cfg: Config) -> None:
        cam = op.cam
        self.scheduler.update_camera(cam.name, cam.fps, cfg.lowlight, cam.enhance, cam.picture)
        if op.events:
            self.scheduler.configure_events(cam)
            log.info("camera %s: tracking, zones and lines updated (%d zones, %d lines)",
                     cam.name, len(cam.zones), len(cam.lines))
        with self._lock:
            entry = self._cameras[cam.name]
            self._cameras[cam.name] = _Camera(cam, entry.source, entry.slot)
        log.info("camera %s: settings updated (%.3g fps, enhance %s)", cam.name, cam.fps, cam.enhance)

    def _latest_snapshot(self, camera: str) -> str | None:
        """The snapshot file of the camera's newest event that has one (Home Assistant's image)."""
        if self.events is None:
            return None
        for event in self.events.recent.list(camera, None, 20):
            if event.get("snapshot"):
                return event["snapshot"]
        return None

    def _build_sinks(self, cfg: Config) -> SinkSet:
        sinks = [self.sink_factory(s, i) for i, s in enumerate(cfg.sinks) if isinstance(s, SinkConfig)]
        for s in sinks:
            self.metrics.add_sink(s.name)
        return SinkSet(sinks, on_failure=lambda name: self.metrics.sink_failures.labels(name).inc())

    def _build_event_sinks(self, cfg: Config) -> EventSinkSet:
        """Event sinks (events_jsonl, mqtt, webhook), not started; their drop series at zero."""
        on_drop = self.metrics.sink_events_dropped.labels
        sinks = [self.event_sink_factory(s, lambda name: on_drop(name).inc())
                 for s in rp.event_sinks(cfg)]
        for s in sinks:
            self.metrics.add_event_sink(s.name)
        return EventSinkSet(sinks)

    def _update_secrets(self, cfg: Config) -> None:
        found = secrets_of(cfg)  # as they appear in URLs (percent-encoded) ...
        found += auth_secrets(self._auth)
        self._secrets = sorted(set(found) | {unquote(s) for s in found})  # ... and as typed
        if self.secrets_filter is not None:
            self.secrets_filter.set_secrets(self._secrets)

    # -- what HTTP asks (daemon.service.http.App) --------------------------------------------------------
    def metrics_payload(self) -> tuple[bytes, str]:
        """The exposition; parallel scrapes share one render (:class:`SingleFlight`)."""
        return self._exposition.get()

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready once warmed; names the engines *running* (a reload never swaps them) and how
        the last reload went (``config_reload``: none, ok, or failed with the reason)."""
        names = self._engine_names or {"detector": None, "enhancer": None}
        inference = self._inference_status()
        ready = self._ready and all(v == "available" for v in inference.values())
        info = {"ready": ready, **names, "config_reload": dict(self._reload_status)}
        if inference:
            info["inference"] = inference
        return ready, info

    def _inference_status(self) -> dict[str, str]:
        """``{role: "available" | "unavailable: reason"}`` of the engines that run on a server
        (a Triton URL); local engines are always available and are not listed. Not ready while
        one is unavailable: a load balancer sends its cameras elsewhere until it is back."""
        out = {}
        for role, wrapper in (("detector", self.detector), ("enhancer", self.enhancer)):
            status = getattr(getattr(wrapper, "engine", None), "status", None)
            if callable(status):
                out[role] = status()
        return out

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the scheduler loop and every camera reader have a fresh heartbeat."""
        state = self._published
        timeout = state.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        reasons: list[str] = []
        stale: list[str] = []
        if self.scheduler is None:
            reasons.append("starting: engines not loaded yet")
        else:
            age = now - self.scheduler.heartbeat()
            if age > timeout:
                reasons.append(f"scheduler loop silent for {age:.1f} s (limit {timeout:g} s)")
        for name, entry in state.cameras.items():
            try:
                age = now - entry.source.heartbeat()
            except Exception as exc:  # noqa: BLE001
                age, why = float("inf"), type(exc).__name__
            else:
                why = ""
            if age > timeout:
                stale.append(name)
                reasons.append(f"camera {name} reader silent for {age:.1f} s{' ' + why if why else ''}")
        return not reasons, {"healthy": not reasons, "reasons": reasons, "stale_cameras": stale}

    def camera_names(self) -> list[str]:
        return sorted(self._published.cameras)

    def cameras_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, entry in self._published.cameras.items():
            try:
                status = dict(entry.source.status())
            except Exception as exc:  # noqa: BLE001
                status = {"error": f"status unavailable: {type(exc).__name__}"}
            gate = self.pipeline.snapshots.gate(name) if self.pipeline else None
            status.update({
                "name": name,
                "url": entry.cfg.display_url,
                "fps_limit": entry.cfg.fps,
                "enhance": entry.cfg.enhance,
                "lowlight": gate.lowlight if gate else False,
                "luma": None if gate is None or gate.luma is None else round(gate.luma, 1),
                "frames_taken": gate.frames_taken if gate else 0,
            })
            status.update(_shapes(entry.cfg))
            status["frames_processed"] = self.metrics.registry.get_sample_value(
                "duskwatch_frames_total", {"camera": name, "outcome": "processed"}) or 0
            snap = self.pipeline.snapshots.get(name) if self.pipeline else None
            if snap is not None:
                status["last_result"] = snap.result.to_dict()
            out[name] = status
        # Defence in depth: a source's status must not carry a password; mask any that does.
        text = json.dumps({"cameras": out}, default=str)
        for secret in self._secrets:
            text = text.replace(json.dumps(secret)[1:-1], "***")
        return json.loads(text)

    def snapshot_jpeg(self, camera: str, picture: str = "shown") -> bytes | None:
        """The camera's latest annotated frame as JPEG (``picture``: the one people see, enhanced
        for a low-light camera, or ``raw``: the decoded frame), from the encoded cache: however
        many viewers poll, a camera's frame is drawn and encoded at most once per
        ``http.snapshot_interval_s`` (viewers cannot slow detection)."""
        if camera not in self.camera_names():
            return None
        jpeg = self.snapshots.get(camera if picture != "raw" else f"{camera}:raw")
        if jpeg is None:
            raise SnapshotNotReady(f"camera {camera} has no processed frame yet")
        return jpeg

    def _render_snapshot(self, key: str):
        """(version, JPEG bytes) of a camera's latest snapshot, or None (the cache's source);
        ``key`` is the camera's name, or ``<name>:raw`` for its decoded frame (':' is never in a
        camera's name)."""
        from daemon.pipeline.snapshots import annotate, encode_jpeg

        camera, _, picture = key.partition(":")
        snap = self.pipeline.snapshots.get(camera) if self.pipeline else None
        if snap is None:
            return None
        return snap.result.seq, lambda: encode_jpeg(annotate(snap, picture or "shown"))

    def events_list(self, camera: str | None = None, type_: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        """Recent events, newest first (/events)."""
        return self.events.recent.list(camera, type_, limit) if self.events else []

    def events_page(self, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        """Recent events filtered and paged (/events?class=&since=&until=&offset=), and how
        many matched (the keywords of :meth:`RecentEvents.page`)."""
        return self.events.recent.page(**filters) if self.events else ([], 0)

    def event_file(self, event_id: str, kind: str) -> Path | None:
        """An event's file ('snapshot', 'snapshot_raw', 'clip') as its record names it: a
        regular file inside the evidence folder, never through a symbolic link
        (/events/<id>/snapshot.jpg[?picture=raw], /events/<id>/clip.mp4)."""
        return self.events.file_of(event_id, kind) if self.events is not None else None

    def _status_line(self) -> str:
        cams = list(self._published.cameras.values())
        up = sum(1 for c in cams if _state_of(c.source) == CameraState.STREAMING)
        return f"{up}/{len(cams)} cameras streaming"


# -- helpers ----------------------------------------------------------------------------------------
def _shapes(cam: CameraConfig) -> dict[str, Any]:
    """A camera's zones and lines for /cameras (points as fractions of the frame)."""
    return {"zones": [{"name": z.name, "points": z.points, "coords": z.coords} for z in cam.zones],
            "lines": [{"name": ln.name, "points": ln.points, "coords": ln.coords}
                      for ln in cam.lines]}


def _state_of(source: CameraSource) -> CameraState | None:
    try:
        return source.state
    except Exception:  # noqa: BLE001
        return None


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


class _StartupPings:
    """While engines load (a TensorRT engine may take a minute), tell systemd the process is
    alive: WATCHDOG=1 at the watchdog interval, so the start-up is judged by TimeoutStartSec."""

    def __init__(self, notifier: Notifier):
        self._notifier = notifier
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "_StartupPings":
        if self._notifier.watchdog_s is not None:
            self._thread = threading.Thread(target=self._run, name="duskwatch-startup-pings",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._done.wait(self._notifier.watchdog_s):
            self._notifier.watchdog()

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(1.0)


def _stop_all(sources: list[CameraSource], timeout: float) -> None:
    """Stop sources in parallel, each within ``timeout``; a failing stop is logged."""

    def stop_one(src: CameraSource) -> None:
        try:
            src.stop(timeout=timeout)
        except Exception as exc:  # noqa: BLE001
            log.warning("camera %s: stop failed: %s", getattr(src, "name", "?"), exc)

    threads = [threading.Thread(target=stop_one, args=(s,), daemon=True) for s in sources]
    for t in threads:
        t.start()
    end = time.monotonic() + timeout + 0.5
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
