"""systemd's notify protocol, without a dependency (see ``sd_notify(3)``, ``sd_watchdog_enabled(3)``).

A notification is one datagram of ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a leading ``@`` names a socket in the abstract namespace). Without that
variable (not started by systemd) every call is a no-op.

The service sends ``READY=1`` once its engines are loaded and warmed, ``WATCHDOG=1`` every half
``$WATCHDOG_USEC`` *only while every heartbeat is fresh* (a hung worker then gets the service
restarted), ``STATUS=...`` lines for ``systemctl status``, and ``STOPPING=1`` on shutdown.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

log = logging.getLogger("duskwatch.systemd")


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), or None when disabled.

    As ``sd_watchdog_enabled(3)``: ignored when ``$WATCHDOG_PID`` names another process.
    """
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1e6 / 2.0


class Notifier:
    """Sends notifications to ``$NOTIFY_SOCKET``; a no-op when there is none."""

    def __init__(self, socket_path: str | None = None, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET") or None
        self.watchdog_s = watchdog_interval(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram with ``lines``; True when it was sent."""
        if not self.path:
            return False
        payload = "\n".join(lines).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, _address(self.path))
            return True
        except OSError as exc:
            if not self._warned:  # once: a vanished manager must not flood the log
                log.warning("cannot notify systemd at %s: %s", self.path, exc)
                self._warned = True
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
