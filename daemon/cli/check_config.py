"""duskwatch check-config PATH: exit 0 when valid, 2 with a readable reason when not."""

from __future__ import annotations

import argparse

from engines.errors import UserError

HELP = "validate a config file (exit 0 valid, 2 invalid with the reason)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="YAML config file")


def run(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError, load_config

    try:
        cfg = load_config(args.path)
    except ConfigError as exc:
        raise UserError(str(exc), exit_code=2) from None
    print(f"{args.path}: valid ({len(cfg.cameras)} cameras)")
    return 0
