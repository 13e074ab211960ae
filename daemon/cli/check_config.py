"""duskwatch check-config PATH: exit 0 when valid, 2 with a readable reason when not.

It runs the same validation as start-up and reload (:func:`daemon.service.validation.validate`):
credentials resolved, the listen address checked, the engines opened (not warmed).
"""

from __future__ import annotations

import argparse
import sys

from engines.errors import UserError

HELP = "validate a config file like start-up and reload do (exit 0 valid, 2 invalid with the reason)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="YAML config file")
    p.add_argument("--no-engines", action="store_true",
                   help="do not open the engines (on a machine other than the one that runs them)")


def run(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError
    from daemon.service.validation import validate
    from engines.base import EngineUnavailable

    try:
        validated = validate(args.path, open_engines=not args.no_engines)
    except ConfigError as exc:
        raise UserError(str(exc), exit_code=2) from None
    except EngineUnavailable as exc:  # the config may be right: the server is down
        raise UserError(f"cannot check the engines now: {exc}", exit_code=1) from None
    for warning in validated.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.path}: valid ({len(validated.cfg.cameras)} cameras)")
    return 0
