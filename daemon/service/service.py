"""The service's lifecycle: start, serve (watchdog, supervision, reloads), stop.

Life of a :class:`Service`::

    svc = Service(cfg)            # metrics registry, the read-only view; nothing started
    svc.start()                   # HTTP up, engines loaded + warmed, cameras started, READY=1
    svc.serve(stop, reload)       # main thread: watchdog pings, supervision, reloads
    svc.stop()                    # STOPPING=1, everything stopped within a few seconds

Who does what: :mod:`daemon.service.runtime` composes the running parts (engines, sinks, event
stage, pipeline, scheduler) and applies a reload's operations; the cameras are
:class:`~daemon.pipeline.cameras.CameraManager`'s, changed on the scheduler's thread;
:mod:`daemon.service.reload_plan` plans a reload; :class:`~daemon.service.view.ServiceView` is
all that HTTP calls (``svc.view``), reading the :class:`~daemon.service.view.Published` state
this class replaces as a whole.

Every dependency with a real-world side is a constructor argument (the seams): the source
factory (:data:`daemon.pipeline.frames.SourceFactory`), the detector and enhancer factories, the sink
factory, the metrics registry and the systemd notifier. Tests inject fakes there.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable
from urllib.parse import unquote

from prometheus_client import CollectorRegistry

from engines.about import version

from daemon.config import Config, ConfigError, secrets_of, sink_secret
from daemon.events.homeassistant import HomeAssistant
from daemon.events.sinks import make_event_sink
from daemon.int8 import upgrader as int8
from daemon.metrics import Metrics
from daemon.pipeline.cameras import state_of, stop_sources
from daemon.pipeline.frames import CameraState, SourceFactory
from daemon.pipeline.seams import Detector, DetectorFactory, Enhancer, EnhancerFactory
from daemon.pipeline.sinks import make_sink
from daemon.service import reload_plan as rp
from daemon.service.auth import auth_secrets, resolve_auth
from daemon.service.engines import (  # noqa: F401 - the default factories, re-exported
    default_detector_factory, default_enhancer_factory, default_source_factory)
from daemon.service.http import HttpServer
from daemon.service.reloads import ReloadWorker
from daemon.service.runtime import Runtime, Seams, load_engines, report_placement
from daemon.service.secrets import SecretsFilter
from daemon.service.systemd import Notifier
from daemon.service.validation import validate
from daemon.service.view import Published, ServiceView

log = logging.getLogger("duskwatch.service")
#: how much longer a stop waits for an engine call in progress, after the rest has stopped
ENGINE_CALL_GRACE_S = 10.0


class StartCancelled(Exception):
    """SIGTERM arrived while the service was starting: it stops instead of becoming ready."""

RELOAD_SYNC_S = 5.0  # a reload waits this long for the scheduler to apply it
RESTART_SYNC_S = 2.0  # a supervisor restart waits this long for the same


def check_runtime(cfg: Config, environ: dict[str, str] | None = None) -> None:
    """What validation cannot see without opening engines: every credential (camera passwords,
    event sinks' secrets) resolves. (:func:`daemon.service.validation.validate` does all checks.)"""
    for cam in cfg.cameras:
        cam.resolved_url(environ)
    for sink in cfg.sinks:
        sink_secret(sink, environ)


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
        int8_settings: int8.Settings | None = None,
    ):
        self._published = Published(cfg)
        self._listen = listen
        self.config_path = Path(config_path) if config_path else None
        self._seams = Seams(source_factory or default_source_factory, sink_factory,
                            event_sink_factory)
        self.detector_factory = detector_factory or default_detector_factory
        self.enhancer_factory = enhancer_factory or default_enhancer_factory
        self.metrics = Metrics(registry)
        self.int8_settings = int8_settings or int8.Settings()
        self.int8_metrics = int8.Int8Metrics(self.metrics.registry)
        self.int8: int8.Upgrader | None = None  # running while the detector may go int8
        self._swap_lock = threading.Lock()
        self._swaps_closed = False  # set by stop(): no detector swap applies after it
        self.notifier = notifier or Notifier()
        self.secrets_filter = secrets_filter
        self._count_source_skips = count_source_skips
        self._count_seq_gaps = count_seq_gaps
        self._serve_http = serve_http
        self.http: HttpServer | None = None
        self.detector: Detector | None = None
        self.enhancer: Enhancer | None = None
        self.runtime: Runtime | None = None
        self.home_assistant: HomeAssistant | None = None
        self._restarted: dict[str, float] = {}  # supervisor restarts (main thread)
        self._lock = threading.RLock()
        self._last_watchdog = 0.0
        self._last_status = ""
        self._cancelled = threading.Event()
        self._reloads = ReloadWorker(self._validate_file, self._describe_failure)
        self._auth = resolve_auth(cfg.http.auth)
        self.view = ServiceView(lambda: self._published, self.metrics,
                                cfg.http.snapshot_interval_s)
        self._publish(secrets=self._secrets_of(cfg))

    @property
    def cfg(self) -> Config:
        """The running config (immutable; replaced as a whole by a reload)."""
        return self._published.cfg

    @property
    def published(self) -> Published:
        """What readers see: the running config, cameras and status, one consistent snapshot."""
        return self._published

    # the running parts, for tests and benchmarks (None before start)
    @property
    def scheduler(self):
        return self.runtime.scheduler if self.runtime else None

    @property
    def pipeline(self):
        return self.runtime.pipeline if self.runtime else None

    @property
    def events(self):
        return self.runtime.events if self.runtime else None

    @property
    def snapshots(self):
        return self.view.jpegs

    def _publish(self, **changes: Any) -> None:
        """Replace what readers see in one assignment: ``changes`` plus the cameras as the
        camera manager last applied them."""
        with self._lock:
            if self.runtime is not None and "cameras" not in changes:
                changes["cameras"] = self.runtime.cameras.units()
            self._published = dataclasses.replace(self._published, **changes)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Serve HTTP, load and warm the engines, start the cameras, then tell systemd READY=1."""
        if self._serve_http:
            self.http = HttpServer(self.view, self.cfg.http.host, self.cfg.http.port,
                                   settings=self.cfg.http, auth=self._auth, metrics=self.metrics)
            self.http.start()
            log.info("HTTP on %s:%d (%s)", *self.http.address,
                     "authentication required" if self._auth else "no authentication")
        self._checkpoint()
        self.notifier.status("loading engines")
        adopted = self.detector is not None
        int8_plan = self._int8_plan()
        with _StartupPings(self.notifier):
            if int8_plan.use_int8:
                int8_plan = self._open_int8(int8_plan)
            engines = load_engines(
                self.cfg, self.metrics, detector=self.detector, enhancer=self.enhancer,
                detector_factory=self.detector_factory, enhancer_factory=self.enhancer_factory,
                checkpoint=self._checkpoint, status=self.notifier.status,
                detector_path=int8_plan.sibling.int8 if int8_plan.use_int8 else None,
                open_enhancer=not adopted)
        self.detector, self.enhancer = engines.detector, engines.enhancer
        self._publish(engines=MappingProxyType(engines.names), inference=engines.inference)
        self._checkpoint()
        rt = self.runtime = Runtime(self.cfg, engines, self.metrics, self._seams, self.view.jpegs,
                                    count_source_skips=self._count_source_skips,
                                    count_seq_gaps=self._count_seq_gaps)
        for cam in self.cfg.cameras:
            self._checkpoint()
            rt.add_camera(cam, self.cfg)
        rt.settle(RELOAD_SYNC_S)  # the loop is not running yet: the units are applied here
        self._publish(heartbeat=rt.scheduler.heartbeat, frames=rt.pipeline.snapshots,
                      events=rt.events)
        rt.scheduler.start()
        self._start_int8(int8_plan)
        self.home_assistant = HomeAssistant(self.metrics.registry, self._latest_snapshot, version())
        self.home_assistant.apply(self.cfg.sinks, self.cfg.cameras)
        with self._lock:  # cancel_start() takes this lock too: READY=1 never follows SIGTERM
            self._checkpoint()
            self._publish(ready=True)
            self.notifier.ready(self._status_line())
        self.metrics.ready.set(1)
        self.metrics.reload_success_time.set(time.time())
        count = len(self._published.cameras)
        log.info("ready: %d camera%s", count, "" if count == 1 else "s")

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

    def stop(self, timeout: float = 3.5, engine_grace: float = ENGINE_CALL_GRACE_S) -> None:
        """STOPPING=1, then stop the scheduler, the cameras (in parallel), HTTP, sinks, engines.
        A scheduler inside an engine call is waited for ``engine_grace`` s more, after the rest."""
        self.cancel_start()
        if self.int8 is not None:
            self.int8.request_stop()  # a build subprocess ends while the rest stops
        self.notifier.stopping("stopping")
        self._publish(ready=False)
        self.metrics.ready.set(0)
        deadline = time.monotonic() + timeout
        rt = self.runtime
        loop_ended = rt is None or rt.scheduler.stop(timeout / 2)
        if not loop_ended:
            log.warning("scheduler did not stop within %.1f s (an engine call in progress); "
                        "stopping the rest first", timeout / 2)
        sources = [u.source for u in self._published.cameras.values()]
        if rt is not None:
            sources += [u.source for u in rt.cameras.units().values() if u.source not in sources]
        self._publish(cameras=MappingProxyType({}))
        if rt is not None:
            rt.cameras.close()  # a stopping reader's last events change nothing
        stop_sources(sources, max(0.5, deadline - time.monotonic()))
        if self.http is not None:
            self.http.stop()
        if self.home_assistant is not None:
            self.home_assistant.stop()  # "offline" on the availability topic
        if not loop_ended and rt is not None:
            # an engine call is finite: wait for it rather than leave the process to exit under a
            # running ONNX Runtime / OpenVINO call (their worker threads abort the process then)
            loop_ended = rt.scheduler.stop(engine_grace)
            log.warning("scheduler %s", "stopped after its engine call" if loop_ended else
                        f"still in an engine call after {engine_grace:.1f} s more; engines left open")
        self._stop_int8(engine_grace)
        if loop_ended and rt is not None:
            rt.close((self.detector, self.enhancer))
        self.notifier.close()
        log.info("stopped")

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
        healthy, info = self.view.health()
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

    def _supervise(self, info: dict[str, Any]) -> None:
        """Restart a camera reader whose heartbeat went stale, at most once per timeout."""
        if self.runtime is None:
            return
        timeout = self.cfg.supervision.heartbeat_timeout_s
        now = time.monotonic()
        restarted = False
        units = self._published.cameras
        for name in info.get("stale_cameras", []):
            unit = units.get(name)
            if unit is None or now - self._restarted.get(name, 0.0) < timeout:
                continue
            log.error("camera %s: reader silent for more than %.0f s; restarting it", name, timeout)
            self.runtime.remove_camera(name, keep_metrics=True, timeout=1.0)
            self.runtime.add_camera(unit.cfg, self.cfg)
            self._restarted[name] = now
            restarted = True
        if restarted:
            if not self.runtime.settle(RESTART_SYNC_S):
                log.warning("supervisor: the restart is not applied within %.0f s (an engine "
                            "call in progress); it applies after it", RESTART_SYNC_S)
            self._publish()

    # -- int8 ----------------------------------------------------------------------------------
    def _int8_plan(self) -> int8.Plan:
        """Whether the detector goes int8 (:mod:`daemon.int8`); a probe that fails means no."""
        ecfg = self.cfg.engines
        try:
            found = int8.plan(ecfg, self.int8_settings)
        except Exception as exc:  # noqa: BLE001 - the f32 detector runs whatever happens here
            log.warning("int8: cannot decide about the int8 detector (%s); keeping %s", exc,
                        ecfg.detector)
            self.int8_metrics.failures.labels("load").inc()
            return int8.Plan(None, False, str(exc))
        if found.use_int8:
            log.info("detector: %s instead of %s: %s", found.sibling.int8, ecfg.detector,
                     found.reason)
        return found

    def _open_int8(self, found: int8.Plan) -> int8.Plan:
        """Open the checked int8 sibling in place of the f32 detector (closing the one that
        validation opened); one that will not open leaves the f32 one, logged and counted."""
        try:
            detector = self._open_detector(found.sibling.int8, None)
        except Exception as exc:  # noqa: BLE001 - f32 is there: the daemon starts with it
            log.error("int8: cannot open %s (%s: %s); starting with the f32 detector %s",
                      found.sibling.int8, type(exc).__name__, exc, self.cfg.engines.detector)
            self.int8_metrics.failures.labels("load").inc()
            return int8.Plan(found.sibling, False, f"the int8 IR would not open: {exc}")
        if self.detector is not None:
            _close_quietly(self.detector)
        self.detector = detector
        return found

    def _start_int8(self, found: int8.Plan) -> None:
        if found.use_int8:
            self.int8_metrics.set_state("active")
            return
        if found.sibling is None:
            if str(self.cfg.engines.detector).endswith(".xml"):
                log.info("int8: the detector stays as configured: %s", found.reason)
            return
        log.info("int8: the detector %s runs in f32 until the int8 one is built from these "
                 "cameras' frames and checked (%s)", self.cfg.engines.detector,
                 self.int8_settings.describe(len(self.cfg.cameras)))
        self.int8 = int8.Upgrader(found.sibling, self.int8_settings, self.int8_metrics,
                                  self._open_detector, self._int8_frames, self._swap_detector,
                                  max_batch=self.cfg.scheduler.max_batch,
                                  cameras=lambda: len(self._published.cameras))
        self.int8.start()

    def _stop_int8(self, timeout: float) -> None:
        """End the upgrade thread (it kills a build subprocess); no swap applies after this."""
        with self._swap_lock:
            self._swaps_closed = True
        if self.int8 is not None and not self.int8.stop(timeout):
            log.warning("int8: the upgrade thread did not end within %.1f s", timeout)

    def _open_detector(self, path: Path, conf: float | None) -> Detector:
        update: dict[str, Any] = {"detector": path}
        if conf is not None:
            update["conf"] = conf
        return self.detector_factory(self.cfg.engines.model_copy(update=update),
                                     self.cfg.scheduler.max_batch)

    def _int8_frames(self):
        """(camera, seq, decoded frame) of each camera's newest processed frame."""
        rt = self.runtime
        if rt is None:
            return
        for name in list(self._published.cameras):
            snap = rt.pipeline.snapshots.get(name)
            if snap is not None:
                yield name, snap.result.seq, snap.picture("raw")

    def _swap_detector(self, new: Detector, path: Path, stop: threading.Event) -> bool:
        """Put ``new`` in the running detector's place between two batches (a scheduler
        command: no engine call is interrupted, no frame lost), then close the old one. False
        (nothing changed) when the service stops first or the classes differ."""
        rt = self.runtime
        if rt is None or dict(new.names) != dict(self.detector.names):
            log.error("int8: the int8 detector's classes differ from the running one's; keeping it")
            self.int8_metrics.failures.labels("load").inc()
            return False
        swapped: list[Detector] = []
        done = threading.Event()

        def swap() -> None:
            with self._swap_lock:
                if self._swaps_closed:
                    return
                swapped.append(rt.pipeline.detector)
                rt.pipeline.detector = self.detector = new
                done.set()

        rt.scheduler.submit(swap)
        while not done.wait(0.2):  # the scheduler may be inside an engine call: it comes back
            if stop.is_set() or self._swaps_closed:  # stopping: the command must not apply later
                with self._swap_lock:
                    self._swaps_closed = True
                    if not done.is_set():
                        return False
        _close_quietly(swapped[0])
        self._detector_swapped(new, path)
        return True

    def _detector_swapped(self, new: Detector, path: Path) -> None:
        from daemon.config import engine_name

        name = engine_name(path)
        names = dict(self._published.engines or {})
        names["detector"] = name
        self._publish(engines=MappingProxyType(names))
        enhancer = names.get("enhancer") or ""
        self.metrics.set_build_info(version(), new.backend, name, enhancer)
        report_placement(self.cfg, self.metrics, new, None)
        log.info("detector: switched to the int8 IR %s without a restart (the f32 one is closed)",
                 path)

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
        for secret in self._published.secrets:
            text = text.replace(secret, "***")
        return text

    def _apply_reload(self, new: Config) -> bool:
        try:
            self.reload(new)
        except Exception as exc:  # noqa: BLE001
            log.exception("reload: applying the new config failed")
            return self._reload_failed(f"applying it failed: {self._describe_failure(exc)}")
        self.metrics.reload_success_time.set(time.time())
        self._publish(reload=MappingProxyType({"status": "ok", "at": round(time.time(), 3)}))
        self.notifier.ready(self._status_line())
        return True

    def _reload_failed(self, reason: str) -> bool:
        log.error("reload: %s; keeping the running config", reason)
        self.metrics.reload_failures.inc()
        self._publish(reload=MappingProxyType(
            {"status": "failed", "at": round(time.time(), 3), "error": reason}))
        self.notifier.ready(self._status_line())
        return False

    def reload(self, new: Config) -> None:
        """Apply ``new`` (the plan of :mod:`daemon.service.reload_plan`): cameras added,
        removed, changed; unchanged cameras are not touched; readers see the new config, with
        its cameras, once all of it is applied. An unchanged config changes nothing."""
        ops = rp.plan(self.cfg, new)
        if not ops:
            log.info("reload: the config is unchanged; nothing to do")
            return
        for op in ops:
            if not isinstance(op, rp.Publish):
                self.runtime.apply(op, new)
        if not self.runtime.settle(RELOAD_SYNC_S):
            log.warning("reload: the scheduler has not applied the changes within %.0f s (an "
                        "engine call in progress); they apply after it", RELOAD_SYNC_S)
        self._publish(cfg=new, secrets=self._secrets_of(new))  # rp.Publish: one assignment
        if self.home_assistant is not None:  # removed cameras, zones, lines leave Home Assistant
            self.home_assistant.apply(new.sinks, new.cameras)
        log.info("reload: done, %d cameras", len(self._published.cameras))

    def _latest_snapshot(self, camera: str) -> str | None:
        """The snapshot file of the camera's newest event that has one (Home Assistant's image)."""
        for event in self.view.events_list(camera, None, 20):
            if event.get("snapshot"):
                return event["snapshot"]
        return None

    def _secrets_of(self, cfg: Config) -> tuple[str, ...]:
        """The config's secrets, handed to the log filter now (masked in /cameras once
        published)."""
        found = secrets_of(cfg)  # as they appear in URLs (percent-encoded) ...
        found += auth_secrets(self._auth)
        secrets = tuple(sorted(set(found) | {unquote(s) for s in found}))  # ... and as typed
        if self.secrets_filter is not None:
            self.secrets_filter.set_secrets(list(secrets))
        return secrets

    def _status_line(self) -> str:
        cams = list(self._published.cameras.values())
        up = sum(1 for c in cams if state_of(c.source) == CameraState.STREAMING)
        return f"{up}/{len(cams)} cameras streaming"


def _close_quietly(engine: Any) -> None:
    try:
        engine.close()
    except Exception as exc:  # noqa: BLE001
        log.warning("closing engine failed: %s", exc)


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



