"""duskwatch check-config PATH: exit 0 when valid, 2 with a readable reason when not.

It runs the same validation as start-up and reload (:func:`daemon.service.validation.validate`):
credentials resolved, the listen address checked, the engines opened (not warmed). It also
warns (exit status still 0) when a configured engine is not this box's fastest kind
(:mod:`daemon.install.engine_choice`), or when the detector is an f32 OpenVINO IR with
``engines.int8: off`` on a box whose choice is int8; with ``--no-engines`` (another box runs
them) it does not.
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
    """Configured engines that are not the fastest kind on this box, and an f32 OpenVINO
    detector with ``engines.int8: off`` where the box's choice is int8 (warnings, not errors)."""
    from daemon.install.engine_choice import int8_warnings, kind_warnings, probe_box

    ecfg = cfg.engines
    device = "cpu" if ecfg.device == "cpu" else "auto"
    facts = probe_box()
    return (kind_warnings(ecfg.detector, ecfg.enhancer, facts, device)
            + int8_warnings(ecfg.detector, ecfg.int8, facts, device))
