"""duskwatch distill denoiser --teacher CKPT --steps K --data DIR --out CKPT."""

from __future__ import annotations

import argparse

from export.training_cli import add_run_arguments, run_config_kwargs, start_torch

HELP = "distil the diffusion teacher into a K-step student (trajectory distillation)"


def configure(p: argparse.ArgumentParser) -> None:
    add_run_arguments(p, seed=1, out_help="student checkpoint to write (curves: same name .png)",
                      resume_help="student checkpoint to continue from")
    p.add_argument("--teacher", required=True, help="teacher checkpoint from `duskwatch train denoiser`")
    p.add_argument("--steps", type=int, required=True, help="student sampling steps K (1, 2, 4, ...; must divide the teacher's T)")
    p.add_argument("--iters", type=int, default=2000, help="optimiser steps")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--pool", type=int, default=192, help="crops per pool of teacher trajectories")
    p.add_argument("--refresh", type=int, default=200, help="regenerate the pool every N steps")
    p.add_argument("--weights-out", help="also write small fp16 inference weights here (what ships in export/weights/) when the "
                   "run ends or stops at its time budget: the best EMA by --det-val AP50 if given, else the last")
    p.add_argument("--noise", choices=["zero", "random"], default="zero",
                   help="starting noise of the teacher trajectories (zero: the path the exported graph takes)")
    p.add_argument("--skip-enc", default="", help="comma-separated levels (0 = 1/4 resolution) whose encoder "
                   "block the student leaves out (a cheaper student; the rest starts from the teacher)")
    p.add_argument("--skip-dec", default="", help="the same for decoder blocks")
    p.add_argument("--headroom", type=float, default=None,
                   help="the student's highlight roll-off: its output keeps at least this share of each "
                        "pixel's distance to white (0.3 ships; default: the teacher's)")
    p.add_argument("--work-scale", type=int, choices=[1, 2, 4], default=None,
                   help="the student's working scale (its sampler runs on the frame averaged down this "
                        "many times; default: the teacher's). A scale other than the teacher's makes the "
                        "teacher's trajectories the wrong size: train it with --distill-weight 0")
    p.add_argument("--clean-weight", type=float, default=0.0,
                   help="pull the last step's target towards the clean photo by this weight (0: pure distillation)")
    p.add_argument("--init", choices=["teacher", "identity"], default="teacher",
                   help="identity: the teacher's trunk with a zeroed curve head (starts as the identity)")
    p.add_argument("--distill-weight", type=float, default=1.0, help="weight of the trajectory-matching loss")
    p.add_argument("--pair-weight", type=float, default=0.0,
                   help="weight of the K-step graph's own output against the target (end to end through "
                        "every step; 0: off). With real pairs (--data with low/ and high/) it trains the "
                        "picture that is exported on what people compare it with")
    det = p.add_argument_group("detection-aware training (a frozen YOLO's loss on enhanced real night photos)")
    det.add_argument("--detector", help="ultralytics YOLO .pt, e.g. ../shared/data/weights/yolo11n_coco_fp32.pt")
    det.add_argument("--det-data", help="labelled night photos to train on (exdark_dev/train; never its val)")
    det.add_argument("--det-weight", type=float, default=0.0, help="weight of the detection loss (0: off)")
    det.add_argument("--det-batch", type=int, default=4)
    det.add_argument("--det-crop", type=int, default=320, help="crop size of the detection photos")
    det.add_argument("--det-val", help="labelled photos scored (AP50) at each validation; the best EMA "
                     "goes to <out>.best.pt and to --weights-out")
    det.add_argument("--det-val-limit", type=int, default=100, help="score only the first N of --det-val")
    det.add_argument("--feat-weight", type=float, default=0.0, help="weight of the detector-feature distance "
                     "between enhanced synthetic night crops (of --data) and their targets (0: off)")
    det.add_argument("--feat-batch", type=int, default=4)


def run(args: argparse.Namespace) -> int:
    from engines.errors import UserError

    start_torch(args, "distillation")
    from export.denoiser.distill import DistillConfig, distill

    cfg = DistillConfig(
        teacher=args.teacher, steps=args.steps, iters=args.iters, lr=args.lr, pool=args.pool,
        refresh=args.refresh, weights_out=args.weights_out, noise=args.noise,
        skip_enc=_levels(args.skip_enc, "--skip-enc"), skip_dec=_levels(args.skip_dec, "--skip-dec"),
        clean_weight=args.clean_weight, headroom=args.headroom, work=args.work_scale, init=args.init, pair_weight=args.pair_weight,
        distill_weight=args.distill_weight, detector=args.detector, det_data=args.det_data,
        det_weight=args.det_weight, det_batch=args.det_batch, det_crop=args.det_crop, det_val=args.det_val,
        det_val_limit=args.det_val_limit, feat_weight=args.feat_weight, feat_batch=args.feat_batch,
        **run_config_kwargs(args),
    )
    try:
        out = distill(cfg)
    except (FileNotFoundError, ValueError, FloatingPointError) as exc:
        raise UserError(str(exc)) from None
    print(f"student checkpoint: {out}")
    return 0


def _levels(text: str, flag: str) -> tuple[int, ...]:
    from engines.errors import UserError

    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected comma-separated level numbers, e.g. 0 or 0,1") from None
