"""duskwatch train denoiser --data DIR --out CKPT: train the diffusion teacher."""

from __future__ import annotations

import argparse

from export.training_cli import add_run_arguments, run_config_kwargs, start_torch

HELP = "train the low-light diffusion teacher on clean photos darkened by the degradation model"


def configure(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, seed=0, out_help="checkpoint to write (curves go to the same name .png)",
                      resume_help="checkpoint to continue from (usually the same as --out)")
    p.add_argument("--steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--epochs", type=int, help="passes over the training photos (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the provisional CPU teacher used 2e-3 and had one loss spike)")
    p.add_argument("--widths", help="U-Net widths, comma separated (default 16,32,64,96)")
    p.add_argument("--head", choices=["curve", "guided", "residual"], default="curve",
                   help="curve: bounded local gain curve + denoising blend, smooth, identity at start "
                        "(default); guided: the same curve after an edge-aware (guided-filter) denoiser "
                        "whose strength the network sets (for real captures); residual: the first "
                        "model's unbounded per-block correction")
    p.add_argument("--max-gain", type=float, help="largest shadow gain of a curve head (default 8; real LOL "
                   "pairs need about 30)")
    p.add_argument("--unshuffle", type=int, help="the network's input reduction (default 8 for curve, 4 for residual)")
    p.add_argument("--headroom", type=float, default=0.0,
                   help="curve/guided heads: the output keeps at least this share of each pixel's "
                        "distance to white (a highlight roll-off: lamps keep their halo's gradation; 0: none)")
    p.add_argument("--work-scale", type=int, choices=[1, 2, 4], default=1,
                   help="curve/guided heads: run the sampler on the frame averaged down this many times "
                        "and give the full-resolution picture by a guided upsampling (cheaper; 2 is the "
                        "shipped enhancer's). --crop stays in full-resolution pixels")
    p.add_argument("--edge-aware", action="store_true",
                   help="guided head: bring the gain maps to full resolution along the frame's edges "
                        "(no halo around lamps) instead of bilinearly")


def run(args: argparse.Namespace) -> int:
    from engines.errors import UserError

    start_torch(args, "training")
    from export.denoiser.train import TrainConfig, train_teacher

    net = _net_config(args)
    cfg = TrainConfig(steps=args.steps, epochs=args.epochs, lr=args.lr, net=net.to_dict(), **run_config_kwargs(args))
    try:
        out = train_teacher(cfg)
    except (FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise UserError(str(exc)) from None
    print(f"teacher checkpoint: {out}")
    return 0


def _net_config(args: argparse.Namespace):
    from export.denoiser.net import NetConfig

    curve = args.head != "residual"
    kw = {"head": args.head, "unshuffle": args.unshuffle or (8 if curve else 4),
          "upsample": "bilinear" if curve else "shuffle"}
    if args.max_gain:
        kw["max_gain"] = args.max_gain
    if args.work_scale > 1:
        kw["work"] = args.work_scale
    if args.edge_aware:
        kw["edge_aware"] = True
    if args.headroom:
        kw["headroom"] = args.headroom
    if args.widths:
        kw["widths"] = tuple(int(w) for w in args.widths.split(","))
    return NetConfig(**kw)
