"""Command-line flags and start-up shared by `duskwatch train denoiser` and `distill denoiser`.

Standard library only at import time: torch loads in :func:`start_torch`, when a command runs.
"""

from __future__ import annotations

import argparse
import re

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = r"(\d+(?:\.\d+)?)\s*([hms])"


def add_run_arguments(p: argparse.ArgumentParser, *, seed: int, out_help: str,
                      resume_help: str) -> None:
    """The flags every training run takes: data, output, batch shape, device, resume, schedule."""
    p.add_argument("--data", required=True, help="folder of clean, well-lit photos (darkened by the degradation "
                   "model), or of real pairs: low/ and high/ sub-folders with files of the same name (LOL)")
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="training crop size in pixels")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", help=resume_help)
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--save-every", type=int, default=250, help="write the checkpoint every N steps")
    p.add_argument("--time-budget", "--time-limit", dest="time_limit", type=parse_duration, metavar="DURATION",
                   help="stop and save when this much time has passed (2h, 90m, 1h30m, 45s or seconds); "
                        "continue later with --resume")
    p.add_argument("--log-file", help="append progress lines (loss, validation, checkpoints) to this file")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm bar")
    p.add_argument("--degradation", choices=["night", "global"], default="night",
                   help="night: lit pools, lamps with glare, colour casts (export.degrade.degrade_night); "
                        "global: one exposure scale for the whole photo (the first model)")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--ssim-weight", type=float, default=0.0,
                   help="add this weight times (1 - SSIM) to the MSE loss (0: MSE only)")
    p.add_argument("--max-side", type=int, default=512, help="scale photos so their longest side is at most this")
    p.add_argument("--val-size", type=int, default=256, help="side of the validation centre crops")


def run_config_kwargs(args: argparse.Namespace) -> dict:
    """The :class:`export.denoiser.common.RunConfig` fields taken from the shared flags."""
    return dict(data=args.data, out=args.out, batch=args.batch, crop=args.crop, device=args.device,
                resume=args.resume, val_every=args.val_every, save_every=args.save_every, seed=args.seed,
                time_limit=args.time_limit, log_file=args.log_file, progress=args.progress,
                degradation=args.degradation, ssim_weight=args.ssim_weight, max_side=args.max_side,
                val_size=args.val_size)


def parse_duration(text: str) -> float:
    """``"2h"``, ``"90m"``, ``"1h30m"``, ``"45s"`` or a number of seconds -> seconds."""
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(_PART, s)
    if not parts or re.sub(_PART, "", s).strip():
        raise ValueError(f"time budget {text!r}: expected e.g. 2h, 90m, 1h30m, 45s or seconds")
    return sum(float(v) * _UNITS[u] for v, u in parts)


def start_torch(args: argparse.Namespace, what: str) -> None:
    """Import torch (a clear error without the export extra) and apply ``--threads``."""
    from engines.errors import UserError

    try:
        import torch
    except ImportError as exc:
        raise UserError(f"{what} needs the export extra ({exc}); "
                           "pip install 'duskwatch[export]'") from None
    if args.threads:
        torch.set_num_threads(args.threads)
