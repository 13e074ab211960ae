"""Subcommands contributed by the daemon package.

Each command lives in its own module exposing ``HELP``, ``configure(parser)`` and ``run(args)``.
Command modules import only the standard library at module level and load heavy dependencies
(torch, ultralytics, onnxruntime) inside ``run``: ``duskwatch --help`` stays fast and a command
whose optional dependencies are missing fails alone, with a clear message.
"""

from __future__ import annotations

import argparse

from daemon.cli import CommandError, register_table

# command name -> module implementing it
COMMANDS = {
    "check-config": "daemon.cmd_check_config",
    "run": "daemon.cmd_run",
    "demo": "daemon.cmd_demo",
    "detect": "daemon.cmd_detect",
    "enhance": "daemon.cmd_enhance",
    "bench": "daemon.cmd_bench",
    "install-service": "daemon.cmd_install_service",
}


def register(sub: argparse._SubParsersAction) -> None:
    register_table(sub, COMMANDS)


__all__ = ["register", "COMMANDS", "CommandError"]
