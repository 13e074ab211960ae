"""Signals for ``duskwatch run`` from the process's first moments.

Importing the command line (every command's module, the engines package) takes a while; a
SIGTERM or SIGHUP in that time would hit the default action (death). ``daemon/cli/__init__.py``
calls :func:`install_if_run` before anything else is imported: for ``duskwatch run`` the
handlers then only set :data:`STOP` / :data:`RELOAD`, which :mod:`daemon.cli.run` reads.
Only the interpreter's own start-up (before any duskwatch code runs) remains uncovered.
"""

from __future__ import annotations

import signal
import sys
import threading

STOP, RELOAD = threading.Event(), threading.Event()


def install(stop: threading.Event = STOP, reload: threading.Event = RELOAD) -> None:
    """SIGTERM/SIGINT set ``stop``; SIGHUP sets ``reload``."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())


def install_if_run(argv: list[str] | None = None) -> bool:
    """Install the handlers when the command is ``run`` and nobody installed others."""
    words = [w for w in (sys.argv[1:] if argv is None else argv) if not w.startswith("-")]
    if words[:1] != ["run"] or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False
    install()
    return True
