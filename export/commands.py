"""Subcommands contributed by the export package: export, train, distill.

``duskwatch export yolo|denoiser``, ``duskwatch train denoiser``, ``duskwatch distill denoiser``.
Each leaf lives in its own module exposing ``HELP``, ``configure(parser)`` and ``run(args)``,
which imports torch and ultralytics only inside ``run``.
"""

from __future__ import annotations

import argparse

from daemon.cli import register_table

# group -> {leaf -> module}
GROUPS = {
    "export": {"yolo": "export.cmd_export_yolo", "denoiser": "export.cmd_export_denoiser"},
    "train": {"denoiser": "export.cmd_train_denoiser"},
    "distill": {"denoiser": "export.cmd_distill_denoiser"},
}


def register(sub: argparse._SubParsersAction) -> None:
    for group, leaves in GROUPS.items():
        gp = sub.add_parser(group, help=f"{group} a model ({', '.join(leaves)})")
        gsub = gp.add_subparsers(dest=f"{group}_what", metavar="WHAT")
        gsub.required = True
        register_table(gsub, leaves)
