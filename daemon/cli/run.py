"""duskwatch run --config PATH: the daemon (SIGTERM/SIGINT stop it, SIGHUP reloads the config)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from engines.errors import UserError

HELP = "run the daemon: cameras -> low-light enhancer -> detector -> metrics and sinks"

log = logging.getLogger("duskwatch")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", required=True, help="YAML config file")
    p.add_argument("--listen", help="override http.listen (host:port)")


def install_signals(stop: threading.Event, reload: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``; SIGHUP sets ``reload`` (handled by the main loop)."""

    def on_stop(signum, _frame):
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    def on_hup(_signum, _frame):
        log.info("received SIGHUP; reloading the config")
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def run(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_config
    from daemon.service.secrets import SecretsFilter
    from daemon.service.service import Service, check_runtime

    secrets = SecretsFilter()
    secrets.install()
    try:
        cfg = load_config(args.config)
        if args.listen:
            cfg = cfg.model_copy(update={"http": cfg.http.model_validate({"listen": args.listen})})
        check_runtime(cfg)
    except (ConfigError, ValueError) as exc:
        raise UserError(str(exc), exit_code=2) from None
    stop, reload = threading.Event(), threading.Event()
    install_signals(stop, reload)
    svc = Service(cfg, config_path=args.config, secrets_filter=secrets)
    try:
        svc.start()
    except OSError as exc:
        svc.stop()
        raise UserError(f"cannot start: {exc}", exit_code=1) from None
    except Exception as exc:
        svc.stop()
        raise UserError(f"cannot start: {type(exc).__name__}: {exc}", exit_code=1) from None
    try:
        svc.serve(stop, reload)
    finally:
        svc.stop()
    return 0
