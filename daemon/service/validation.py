"""The one decision "is this config good enough to run?", shared by check-config, reload and start.

:func:`validate` reads the file with its bounds (:mod:`daemon.config_yaml`), validates it
(:mod:`daemon.config`), then checks what the schema alone cannot see:

- every credential resolves: each camera's ``password_env``/``password_credential``, each event
  sink's password or token, and the
  HTTP auth secrets (:mod:`daemon.service.auth`);
- ``http.listen`` names an address of this machine (resolvable, and bindable on some port);
- the engines *open* on the configured device (missing, empty, truncated, garbage or swapped
  files; ``cuda:0`` without a GPU), without being warmed up. ``keep_engines=True`` hands the
  opened engines to the caller (start-up uses them instead of opening them twice); otherwise
  they are closed before returning.

Every failure is a :class:`~daemon.config.ConfigError` whose message names the key and the fix
and carries no secret. Nothing else escapes: an unexpected exception from an engine runtime is
reported by its type and (secret-masked) message under the key that caused it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from daemon.config import Config, ConfigError, load_config, sink_secret
from daemon.textsafe import one_line, shown
from daemon.pipeline.seams import Detector, DetectorFactory, Enhancer, EnhancerFactory
from daemon.service.auth import resolve_auth


@dataclass
class Validated:
    """A config that passed every check, and the engines when ``keep_engines`` was asked."""

    cfg: Config
    detector: Detector | None = None
    enhancer: Enhancer | None = None
    warnings: list[str] = field(default_factory=list)

    def close_engines(self) -> None:
        for engine in (self.detector, self.enhancer):
            if engine is not None:
                try:
                    engine.close()
                except Exception:  # noqa: BLE001 - closing a half-opened engine is best effort
                    pass
        self.detector = self.enhancer = None


def validate(source: str | Path | Config, *, environ: Mapping[str, str] | None = None,
             detector_factory: DetectorFactory | None = None,
             enhancer_factory: EnhancerFactory | None = None,
             open_engines: bool = True, keep_engines: bool = False,
             listen: str | None = None) -> Validated:
    """Check ``source`` (a path, or an already parsed config) as described in the module
    docstring; ``listen`` overrides ``http.listen`` (``run --listen``)."""
    cfg = load_config(source) if not isinstance(source, Config) else source
    if listen:
        try:
            cfg = cfg.model_copy(update={"http": cfg.http.model_validate(
                {**cfg.http.model_dump(), "listen": listen})})
        except ValueError as exc:
            raise ConfigError(f"--listen: {exc}") from None
    env = dict(environ) if environ is not None else None
    for cam in cfg.cameras:
        cam.resolved_url(env)
    for sink in cfg.sinks:
        sink_secret(sink, env)
    resolve_auth(cfg.http.auth, env)
    check_listen(cfg.http.host, cfg.http.port)
    out = Validated(cfg, warnings=exposure_warnings(cfg))
    if open_engines:
        _open_engines(out, detector_factory, enhancer_factory)
        if not keep_engines:
            out.close_engines()
    return out


def check_listen(host: str, port: int) -> None:
    """``host`` resolves and is an address of this machine (binding port 0 on it works)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"http.listen: host {shown(host)} does not resolve ({exc}); use an IP "
                          "address of this machine, 127.0.0.1 or 0.0.0.0") from None
    family, _, _, _, addr = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((addr[0], 0))
    except OSError as exc:
        raise ConfigError(f"http.listen: cannot listen on {host} ({exc.strerror}); it is not an "
                          "address of this machine: use one of its addresses, 127.0.0.1 or "
                          "0.0.0.0") from None


def exposure_warnings(cfg: Config) -> list[str]:
    """What an operator should know but that is not an error: HTTP reachable without auth."""
    http = cfg.http
    if http.auth is None and not _is_loopback(http.host):
        return [f"http.listen {http.listen} is reachable from the network and http.auth is not "
                "set: anyone who can reach it reads /metrics, /cameras and the snapshots "
                "(deploy/README.md, 'Authentication')"]
    return []


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _open_engines(out: Validated, detector_factory: DetectorFactory | None,
                  enhancer_factory: EnhancerFactory | None) -> None:
    from daemon.service.engines import default_detector_factory, default_enhancer_factory

    ecfg = out.cfg.engines
    make_det = detector_factory or default_detector_factory
    make_enh = enhancer_factory or default_enhancer_factory
    out.detector = _opening("engines.detector", lambda: make_det(ecfg, out.cfg.scheduler.max_batch))
    try:
        out.enhancer = _opening("engines.enhancer", lambda: make_enh(ecfg))
    except ConfigError:
        out.close_engines()
        raise


def _opening(key: str, open_one: Callable[[], Any]) -> Any:
    from engines.base import EngineUnavailable

    try:
        return open_one()
    except (ConfigError, EngineUnavailable):  # an unreachable server is not a bad config: the
        raise  # service exits 1 and systemd starts it again (deploy/README.md, "Many boxes")
    except Exception as exc:  # noqa: BLE001 - any runtime's failure becomes one readable line
        text = one_line(str(exc))
        raise ConfigError(f"{key}: cannot open the engine: {type(exc).__name__}: {text}") from None
