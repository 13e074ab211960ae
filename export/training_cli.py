"""Command-line flags and start-up shared by `duskwatch train denoiser` and `distill denoiser`.

Standard library only at import time: torch loads in :func:`start_torch`, when a command runs.
"""

from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser, *, seed: int, out_help: str,
                      resume_help: str) -> None:
    """The flags every training run takes: data, output, batch shape, device, resume, schedule."""
    p.add_argument("--data", required=True, help="folder of clean, well-lit photos")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="training crop size in pixels")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", help=resume_help)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--time-limit", type=float, help="stop and save after this many seconds")
    p.add_argument("--seed", type=int, default=seed)


def start_torch(args: argparse.Namespace, what: str) -> None:
    """Import torch (a clear error without the export extra) and apply ``--threads``."""
    from daemon.cli import CommandError

    try:
        import torch
    except ImportError as exc:
        raise CommandError(f"{what} needs the export extra ({exc}); "
                           "pip install 'duskwatch[export]'") from None
    if args.threads:
        torch.set_num_threads(args.threads)
