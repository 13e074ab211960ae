"""The ``duskwatch`` command line.

Each package contributes its subcommands through the ``duskwatch.commands`` entry-point group
(``daemon.commands:register``, ``export.commands:register``), so the daemon never imports the
export tools, and a CPU install without the ``export`` extra still has every daemon command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from daemon import __version__


class CommandError(Exception):
    """A command failed for a reason the user can fix; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def register_table(sub: argparse._SubParsersAction, commands: dict[str, str]) -> None:
    """Add one subcommand per ``{name: module}``; the module has HELP, configure(p), run(args)."""
    for name, module_name in commands.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # this checkout does not have the command
            raise
        parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(parser)
        parser.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="duskwatch",
        description="Night-time video analytics: RTSP cameras -> low-light enhancer -> YOLO -> Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"duskwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for ep in sorted(entry_points(group="duskwatch.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # an optional package's import failed: say so, go on
            logging.getLogger("duskwatch").debug("commands from %s unavailable: %s", ep.name, exc)
            continue
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"duskwatch {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Under `python -m daemon.cli` this module is __main__, a different module object from the
    # daemon.cli the commands import CommandError from: run the imported one so it is caught.
    from daemon.cli import main as _main

    sys.exit(_main())
