"""duskwatch run --config PATH: the daemon (SIGTERM/SIGINT stop it, SIGHUP reloads the config).

Signals are handled from the first line, so SIGTERM at any moment (config reading, engine
load, warm-up, camera connection) stops the process within :data:`STOP_DEADLINE_S` with status
0 and never sends READY=1 after it. Start-up runs on a starter thread while the main thread
waits for it or for a signal; a SIGHUP before the service is ready is answered by one reload
once it is.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from daemon.cli import early
from engines.errors import UserError

HELP = "run the daemon: cameras -> low-light enhancer -> detector -> metrics and sinks"

log = logging.getLogger("duskwatch")

STOP_DEADLINE_S = 4.0  # SIGTERM to exit, under systemd's and the 5 s


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.add_argument("--listen", help="override http.listen (host:port)")


def install_signals(stop: threading.Event, reload: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``; SIGHUP sets ``reload`` (handled by the main loop)."""
    early.install(stop, reload)


class _Starter:
    """Validates the config (opening the engines), builds and starts the service on a thread."""

    def __init__(self, args: argparse.Namespace, secrets):
        self.args, self.secrets = args, secrets
        self.service = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._cancelled = False
        self.thread = threading.Thread(target=self._run, name="duskwatch-start", daemon=True)

    def _run(self) -> None:
        from daemon.service.service import Service
        from daemon.service.validation import validate

        try:
            validated = validate(self.args.config, listen=self.args.listen, keep_engines=True)
            for warning in validated.warnings:
                log.warning("%s", warning)
            svc = Service(validated.cfg, config_path=self.args.config,
                          secrets_filter=self.secrets, listen=self.args.listen)
            svc.adopt_engines(validated.detector, validated.enhancer)
            with self._lock:
                self.service = svc
                if self._cancelled:
                    svc.cancel_start()
            svc.start()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.done.set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self.service is not None:
                self.service.cancel_start()


def run(args: argparse.Namespace) -> int:
    stop, reload = early.STOP, early.RELOAD  # set since daemon.cli was imported
    install_signals(stop, reload)
    from daemon.service.secrets import SecretsFilter

    secrets = SecretsFilter()
    secrets.install()
    starter = _Starter(args, secrets)
    starter.thread.start()
    while not (starter.done.wait(0.1) or stop.is_set()):
        pass
    if stop.is_set() and not starter.done.is_set():
        log.info("stop requested during start-up; stopping")
        starter.cancel()
        return _stop_and_exit(starter, 0)
    if starter.error is not None:
        return _start_failed(starter)
    svc = starter.service
    try:
        if reload.is_set() and not stop.is_set():
            log.info("SIGHUP during start-up: reloading now")
        svc.serve(stop, reload)
    finally:
        log.info("stopping")
        svc.stop()
    return _exit_past_native_threads(0)


def _start_failed(starter: _Starter) -> int:
    from daemon.config import ConfigError
    from daemon.service.service import StartCancelled

    exc = starter.error
    if isinstance(exc, StartCancelled):
        return _stop_and_exit(starter, 0)
    if starter.service is not None:
        starter.service.stop()
    if isinstance(exc, ConfigError):
        raise UserError(str(exc), exit_code=2) from None
    if isinstance(exc, OSError):
        raise UserError(f"cannot start: {exc}", exit_code=1) from None
    raise UserError(f"cannot start: {type(exc).__name__}: {exc}", exit_code=1) from None


def _stop_and_exit(starter: _Starter, code: int) -> int:
    """Stop whatever the starter built, within the deadline; if a thread is still inside native
    code (an engine load, a camera connecting), end the process at once rather than let the
    interpreter's shutdown run into it (that aborted with SIGABRT)."""
    starter.thread.join(STOP_DEADLINE_S / 4)
    if starter.service is not None:
        starter.service.stop(timeout=STOP_DEADLINE_S / 2)
    return _exit_past_native_threads(code)


def _exit_past_native_threads(code: int) -> int:
    """Return ``code``, or end the process with it at once when one of the daemon's threads is
    still inside native code (OpenCV opening a stream, an engine loading): the interpreter's
    own shutdown would run into that thread (it aborted with SIGABRT)."""
    lingering = [t.name for t in threading.enumerate()
                 if t is not threading.current_thread() and t.is_alive()
                 and t.name.startswith("duskwatch-")]
    if lingering:
        log.info("stopped (exiting past %s)", ", ".join(sorted(lingering)))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    log.info("stopped")
    return code
