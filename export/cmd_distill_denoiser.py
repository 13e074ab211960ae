"""duskwatch distill denoiser --teacher CKPT --steps K --data DIR --out CKPT."""

from __future__ import annotations

import argparse

HELP = "distil the diffusion teacher into a K-step student (trajectory distillation)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher checkpoint from `duskwatch train denoiser`")
    p.add_argument("--steps", type=int, required=True, help="student sampling steps K (1, 2, 4, ...; must divide the teacher's T)")
    p.add_argument("--data", required=True, help="folder of clean, well-lit photos")
    p.add_argument("--out", required=True, help="student checkpoint to write (curves: same name .png)")
    p.add_argument("--iters", type=int, default=2000, help="optimiser steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--pool", type=int, default=192, help="crops per pool of teacher trajectories")
    p.add_argument("--refresh", type=int, default=200, help="regenerate the pool every N steps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", help="student checkpoint to continue from")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--weights-out", help="also write small fp16 inference weights here (what ships in export/weights/)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--time-limit", type=float, help="stop and save after this many seconds")
    p.add_argument("--noise", choices=["zero", "random"], default="zero",
                   help="starting noise of the teacher trajectories (zero: the path the exported graph takes)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--skip-enc", default="", help="comma-separated levels (0 = 1/4 resolution) whose encoder "
                   "block the student leaves out (a cheaper student; the rest starts from the teacher)")
    p.add_argument("--skip-dec", default="", help="the same for decoder blocks")
    p.add_argument("--clean-weight", type=float, default=0.0,
                   help="pull the last step's target towards the clean photo by this weight (0: pure distillation)")


def run(args: argparse.Namespace) -> int:
    from daemon.cli import CommandError

    try:
        import torch

        from export.denoiser.distill import DistillConfig, distill
    except ImportError as exc:
        raise CommandError(f"distillation needs the export extra ({exc}); pip install 'duskwatch[export]'") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = DistillConfig(
        teacher=args.teacher, steps=args.steps, data=args.data, out=args.out, iters=args.iters,
        batch=args.batch, crop=args.crop, lr=args.lr, pool=args.pool, refresh=args.refresh,
        device=args.device, resume=args.resume, val_every=args.val_every, seed=args.seed,
        time_limit=args.time_limit, weights_out=args.weights_out, noise=args.noise,
        skip_enc=_levels(args.skip_enc, "--skip-enc"), skip_dec=_levels(args.skip_dec, "--skip-dec"),
        clean_weight=args.clean_weight,
    )
    try:
        out = distill(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"student checkpoint: {out}")
    return 0


def _levels(text: str, flag: str) -> tuple[int, ...]:
    from daemon.cli import CommandError

    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise CommandError(f"{flag} {text!r}: expected comma-separated level numbers, e.g. 0 or 0,1") from None
