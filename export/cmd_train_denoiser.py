"""duskwatch train denoiser --data DIR --out CKPT: train the diffusion teacher."""

from __future__ import annotations

import argparse

HELP = "train the low-light diffusion teacher on clean photos darkened by the degradation model"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="folder of clean, well-lit photos")
    p.add_argument("--out", required=True, help="checkpoint to write (curves go to the same name .png)")
    p.add_argument("--steps", type=int, help="optimiser steps (overrides --epochs)")
    p.add_argument("--epochs", type=int, help="passes over the training photos (default 100)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=128, help="training crop size in pixels")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (the provisional CPU teacher used 2e-3 and had one loss spike)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--resume", help="checkpoint to continue from (usually the same as --out)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--widths", help="U-Net widths, comma separated (default 16,32,64,96)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--time-limit", type=float, help="stop and save after this many seconds")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from daemon.cli import CommandError

    try:
        import torch

        from export.denoiser.net import NetConfig
        from export.denoiser.train import TrainConfig, train_teacher
    except ImportError as exc:
        raise CommandError(f"training needs the export extra ({exc}); pip install 'duskwatch[export]'") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    net = NetConfig() if not args.widths else NetConfig(widths=tuple(int(w) for w in args.widths.split(",")))
    cfg = TrainConfig(
        data=args.data, out=args.out, steps=args.steps, epochs=args.epochs, batch=args.batch,
        crop=args.crop, lr=args.lr, device=args.device, resume=args.resume, val_every=args.val_every,
        save_every=args.save_every, seed=args.seed, time_limit=args.time_limit, net=net.to_dict(),
    )
    try:
        out = train_teacher(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"teacher checkpoint: {out}")
    return 0
