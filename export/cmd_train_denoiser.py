"""duskwatch train denoiser --data DIR --out CKPT: train the diffusion teacher."""

from __future__ import annotations

import argparse

from export.training_cli import add_run_arguments, start_torch

HELP = "train the low-light diffusion teacher on clean photos darkened by the degradation model"


def configure(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, seed=0, out_help="checkpoint to write (curves go to the same name .png)",
                      resume_help="checkpoint to continue from (usually the same as --out)")
    p.add_argument("--steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--epochs", type=int, help="passes over the training photos (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the provisional CPU teacher used 2e-3 and had one loss spike)")
    p.add_argument("--widths", help="U-Net widths, comma separated (default 16,32,64,96)")
    p.add_argument("--head", choices=["curve", "residual"], default="curve",
                   help="curve: bounded local gain curve + denoising blend, smooth, identity at start "
                        "(default); residual: the first model's unbounded per-block correction")
    p.add_argument("--unshuffle", type=int, help="the network's input reduction (default 8 for curve, 4 for residual)")


def run(args: argparse.Namespace) -> int:
    from engines.errors import UserError

    start_torch(args, "training")
    from export.denoiser.train import TrainConfig, train_teacher

    net = _net_config(args)
    cfg = TrainConfig(
        data=args.data, out=args.out, steps=args.steps, epochs=args.epochs, batch=args.batch,
        crop=args.crop, lr=args.lr, device=args.device, resume=args.resume, val_every=args.val_every,
        save_every=args.save_every, seed=args.seed, time_limit=args.time_limit, net=net.to_dict(),
        log_file=args.log_file, progress=args.progress, degradation=args.degradation,
    )
    try:
        out = train_teacher(cfg)
    except (FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise UserError(str(exc)) from None
    print(f"teacher checkpoint: {out}")
    return 0


def _net_config(args: argparse.Namespace):
    from export.denoiser.net import NetConfig

    kw = {"head": args.head, "unshuffle": args.unshuffle or (8 if args.head == "curve" else 4),
          "upsample": "bilinear" if args.head == "curve" else "shuffle"}
    if args.widths:
        kw["widths"] = tuple(int(w) for w in args.widths.split(","))
    return NetConfig(**kw)
