"""The ``duskwatch`` command line.

Each package contributes its subcommands as a table through the ``duskwatch.commands``
entry-point group (``daemon.cli.commands:COMMANDS``, ``export.commands:COMMANDS``): a table maps
a command name to the module implementing it, or to a nested table for a group of commands
(``export yolo``). A command module exposes ``HELP``, ``configure(parser)`` and ``run(args)``
and imports its heavy dependencies inside ``run``. So the daemon never imports the export tools,
the export tools never import the daemon, and a CPU install without the ``export`` extra still
has every daemon command.

Every failure a user can fix is an :class:`engines.errors.UserError`: printed on one line,
without a traceback, with its exit status.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points
from typing import Mapping, Union

from engines.about import version
from engines.errors import UserError

CommandTable = Mapping[str, Union[str, "CommandTable"]]


def add_commands(sub: argparse._SubParsersAction, table: CommandTable) -> None:
    """One subcommand per leaf module, one nested parser per group; a module this
    installation lacks is left out."""
    for name, target in table.items():
        if isinstance(target, Mapping):
            group = sub.add_parser(name, help=f"{name} ({', '.join(target)})")
            gsub = group.add_subparsers(dest=f"{name}_what", metavar="WHAT")
            gsub.required = True
            add_commands(gsub, target)
            continue
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name == target:
                continue
            raise
        parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        add_verbose(parser)
        module.configure(parser)
        parser.set_defaults(func=module.run)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``-v`` after the subcommand too (``duskwatch run -v``); it only ever turns debug on."""
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duskwatch",
        description="Night-time video analytics: RTSP cameras -> low-light enhancer -> YOLO -> Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"duskwatch {version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for ep in sorted(entry_points(group="duskwatch.commands"), key=lambda e: e.name):
        try:
            table = ep.load()
        except ImportError as exc:  # an optional package's import failed: say so, go on
            logging.getLogger("duskwatch").debug("commands from %s unavailable: %s", ep.name, exc)
            continue
        add_commands(sub, table)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:  # called in-process; from a shell daemon.cli's import did it
        from daemon.cli.early import install_if_run

        install_if_run(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"duskwatch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
