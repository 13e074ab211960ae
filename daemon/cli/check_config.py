"""duskwatch check-config PATH: exit 0 when valid, 2 with a readable reason when not.

It runs the same validation as start-up and reload (:func:`daemon.service.validation.validate`):
credentials resolved, the listen address checked, the engines opened (not warmed). It also
warns (exit status still 0) when a configured engine is not this box's fastest kind
(:mod:`daemon.install.engine_choice`); with ``--no-engines`` (another box runs them) it does not.
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
    warnings = list(validated.warnings)
    if not args.no_engines:
        warnings += engine_kind_warnings(validated.cfg)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"{args.path}: valid ({len(validated.cfg.cameras)} cameras)")
    return 0


def engine_kind_warnings(cfg) -> list[str]:
    """Configured engines that are not the fastest kind on this box (a warning, not an error)."""
    from daemon.install.engine_choice import kind_warnings, probe_box

    ecfg = cfg.engines
    device = "cpu" if ecfg.device == "cpu" else "auto"
    return kind_warnings(ecfg.detector, ecfg.enhancer, probe_box(), device)
