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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from prometheus_client import CollectorRegistry

from engines.about import version

from daemon.config import (
    CameraConfig,
    Config,
    ConfigError,
    SinkConfig,
    secrets_of,
    sink_secret,
)
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

# Fields of a camera whose change needs a new connection; the others are applied in place.
_IN_PLACE_FIELDS = {"fps", "enhance", "picture", "tracking", "zones", "lines"}
_EVENT_FIELDS = ("tracking", "zones", "lines", "fps")


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


@dataclass
class _Camera:
    cfg: CameraConfig
    source: CameraSource
    slot: CameraSlot
    restarted_at: float = 0.0


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
    ):
        self.cfg = cfg
        self.config_path = Path(config_path) if config_path else None
        self.source_factory = source_factory or default_source_factory
        self.detector_factory = detector_factory or default_detector_factory
        self.enhancer_factory = enhancer_factory or default_enhancer_factory
        self.sink_factory = sink_factory
        self.event_sink_factory = event_sink_factory
        self.events: EventStage | None = None
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
        self._cameras: dict[str, _Camera] = {}
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
        self._update_secrets()

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
            self._add_camera(cam)
        self.scheduler.start()
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
        _stop_all(sources, max(0.5, deadline - time.monotonic()))
        if self.http is not None:
            self.http.stop()
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
        self._engine_names = {"detector": Path(ecfg.detector).name,
                              "enhancer": Path(ecfg.enhancer).name if ecfg.enhancer else None}
        self._checkpoint()
        if self.enhancer is None:
            log.info("no enhancer configured: low-light frames are detected as they are")
        self.notifier.status("warming up engines")
        self.detector.warmup(self.cfg.scheduler.max_batch)
        if self.enhancer is not None:
            self.enhancer.warmup()
        self.metrics.set_classes(self.detector.names.values())
        self.metrics.set_build_info(
            version(), self.detector.backend,
            Path(ecfg.detector).name, Path(ecfg.enhancer).name if ecfg.enhancer else "")
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
    def _add_camera(self, cam: CameraConfig) -> None:
        with self._lock:
            self._next_token += 1
            self._tokens[cam.name] = self._next_token
            token = self._next_token
        self.metrics.add_camera(cam.name)
        source = self.source_factory(cam, _CameraEvents(self, cam.name, token))
        gate = LowLightGate(self.cfg.lowlight, cam.enhance, cam.picture)
        slot = CameraSlot(cam.name, source, gate, cam.fps)
        with self._lock:
            self._cameras[cam.name] = _Camera(cam, source, slot)
        self.metrics.heartbeat_gauge(f"camera:{cam.name}", source.heartbeat)
        source.start()
        self.scheduler.configure_events(cam)
        self.scheduler.add_camera(slot)
        log.info("camera %s: added (%s, %.3g fps, enhance %s)", cam.name, cam.display_url,
                 cam.fps, cam.enhance)

    def _remove_camera(self, name: str, timeout: float = 3.0, keep_metrics: bool = False) -> None:
        with self._lock:
            entry = self._cameras.pop(name, None)
            self._tokens.pop(name, None)
        if entry is None:
            return
        self.scheduler.remove_camera(name)  # the loop drops the slot and the camera's state
        _stop_all([entry.source], timeout)
        self.snapshots.forget(name)
        if keep_metrics:  # a supervisor restart: the camera's counters carry on
            return
        self.metrics.remove_camera(name)
        self.metrics.remove_heartbeat(f"camera:{name}")
        log.info("camera %s: removed", name)

    def _supervise(self, info: dict[str, Any]) -> None:
        """Restart a camera reader whose heartbeat went stale, at most once per timeout."""
        timeout = self.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        for name in info.get("stale_cameras", []):
            with self._lock:
                entry = self._cameras.get(name)
            if entry is None or now - entry.restarted_at < timeout:
                continue
            log.error("camera %s: reader silent for more than %.0f s; restarting it", name, timeout)
            self._remove_camera(name, timeout=1.0, keep_metrics=True)
            self._add_camera(entry.cfg)
            with self._lock:
                if name in self._cameras:
                    self._cameras[name].restarted_at = now

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
        engine factories: engines are opened (not warmed) and closed again."""
        return validate(self.config_path, detector_factory=self.detector_factory,
                        enhancer_factory=self.enhancer_factory).cfg

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
        """Apply ``new``: cameras added, removed, changed; unchanged cameras are not touched."""
        old = self.cfg
        for section in ("engines", "http"):
            if getattr(old, section) != getattr(new, section):
                log.warning("reload: '%s' changed; restart the service to apply it", section)
        self.cfg = new
        self._update_secrets()
        self.snapshots.interval_s = new.http.snapshot_interval_s
        if old.scheduler != new.scheduler:
            self.scheduler.set_config(new.scheduler)
        if _frame_sinks(old) != _frame_sinks(new):
            self.scheduler.replace_sinks(self._build_sinks(new))
        if _event_sinks(old) != _event_sinks(new) or old.events != new.events:
            self.scheduler.replace_event_sinks(self._build_event_sinks(new), new.events)
            log.info("reload: event sinks and events settings replaced")
        self._reload_cameras(old, new)
        log.info("reload: done, %d cameras", len(self._cameras))

    def _reload_cameras(self, old: Config, new: Config) -> None:
        new_by_name = {c.name: c for c in new.cameras}
        with self._lock:
            current = {n: e.cfg for n, e in self._cameras.items()}
        for name in current:
            if name not in new_by_name:
                self._remove_camera(name)
        for cam in new.cameras:
            prev = current.get(cam.name)
            if prev is None:
                self._add_camera(cam)
            elif _needs_reconnect(prev, cam):
                log.info("camera %s: changed; reconnecting", cam.name)
                self._remove_camera(cam.name)
                self._add_camera(cam)
            else:
                self._update_in_place(cam, lowlight_changed=old.lowlight != new.lowlight)

    def _update_in_place(self, cam: CameraConfig, lowlight_changed: bool) -> None:
        with self._lock:
            entry = self._cameras[cam.name]
        if entry.cfg == cam and not lowlight_changed:
            return
        self.scheduler.update_camera(cam.name, cam.fps, self.cfg.lowlight, cam.enhance, cam.picture)
        if any(getattr(entry.cfg, f) != getattr(cam, f) for f in _EVENT_FIELDS):
            self.scheduler.configure_events(cam)
            log.info("camera %s: tracking, zones and lines updated (%d zones, %d lines)",
                     cam.name, len(cam.zones), len(cam.lines))
        with self._lock:
            entry.cfg = cam
        log.info("camera %s: settings updated (%.3g fps, enhance %s)", cam.name, cam.fps, cam.enhance)

    def _build_sinks(self, cfg: Config) -> SinkSet:
        sinks = [self.sink_factory(s, i) for i, s in enumerate(cfg.sinks) if isinstance(s, SinkConfig)]
        for s in sinks:
            self.metrics.add_sink(s.name)
        return SinkSet(sinks, on_failure=lambda name: self.metrics.sink_failures.labels(name).inc())

    def _build_event_sinks(self, cfg: Config) -> EventSinkSet:
        """Event sinks (events_jsonl, mqtt, webhook), not started; their drop series at zero."""
        on_drop = self.metrics.sink_events_dropped.labels
        sinks = [self.event_sink_factory(s, lambda name: on_drop(name).inc())
                 for s in _event_sinks(cfg)]
        for s in sinks:
            self.metrics.add_event_sink(s.name)
        return EventSinkSet(sinks)

    def _update_secrets(self) -> None:
        found = secrets_of(self.cfg)  # as they appear in URLs (percent-encoded) ...
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
        return self._ready, {"ready": self._ready, **names,
                             "config_reload": dict(self._reload_status)}

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the scheduler loop and every camera reader have a fresh heartbeat."""
        timeout = self.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        reasons: list[str] = []
        stale: list[str] = []
        if self.scheduler is None:
            reasons.append("starting: engines not loaded yet")
        else:
            age = now - self.scheduler.heartbeat()
            if age > timeout:
                reasons.append(f"scheduler loop silent for {age:.1f} s (limit {timeout:g} s)")
        with self._lock:
            cams = list(self._cameras.items())
        for name, entry in cams:
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
        with self._lock:
            return sorted(self._cameras)

    def cameras_status(self) -> dict[str, Any]:
        with self._lock:
            cams = list(self._cameras.items())
        out: dict[str, Any] = {}
        for name, entry in cams:
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

    def snapshot_jpeg(self, camera: str) -> bytes | None:
        """The camera's latest annotated frame as JPEG, from the encoded cache: however many
        viewers poll, a camera's frame is drawn and encoded at most once per
        ``http.snapshot_interval_s`` (viewers cannot slow detection)."""
        if camera not in self.camera_names():
            return None
        jpeg = self.snapshots.get(camera)
        if jpeg is None:
            raise SnapshotNotReady(f"camera {camera} has no processed frame yet")
        return jpeg

    def _render_snapshot(self, camera: str):
        """(version, JPEG bytes) of the camera's latest snapshot, or None (the cache's source)."""
        from daemon.pipeline.snapshots import annotate, encode_jpeg

        snap = self.pipeline.snapshots.get(camera) if self.pipeline else None
        if snap is None:
            return None
        return snap.result.seq, lambda: encode_jpeg(annotate(snap))

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
        with self._lock:
            cams = list(self._cameras.values())
        up = sum(1 for c in cams if _state_of(c.source) == CameraState.STREAMING)
        return f"{up}/{len(cams)} cameras streaming"


# -- helpers ----------------------------------------------------------------------------------------
def _shapes(cam: CameraConfig) -> dict[str, Any]:
    """A camera's zones and lines for /cameras (points as fractions of the frame)."""
    return {"zones": [{"name": z.name, "points": z.points, "coords": z.coords} for z in cam.zones],
            "lines": [{"name": ln.name, "points": ln.points, "coords": ln.coords}
                      for ln in cam.lines]}


def _needs_reconnect(prev: CameraConfig, new: CameraConfig) -> bool:
    a = prev.model_dump(exclude=_IN_PLACE_FIELDS)
    b = new.model_dump(exclude=_IN_PLACE_FIELDS)
    a["url"], b["url"] = prev.url.get_secret_value(), new.url.get_secret_value()
    return a != b


def _frame_sinks(cfg: Config) -> list:
    return [s for s in cfg.sinks if isinstance(s, SinkConfig)]


def _event_sinks(cfg: Config) -> list:
    return [s for s in cfg.sinks if not isinstance(s, SinkConfig)]


def _state_of(source: CameraSource) -> CameraState | None:
    try:
        return source.state
    except Exception:  # noqa: BLE001
        return None


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
