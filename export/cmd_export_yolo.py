"""duskwatch export yolo: a YOLO detector to ONNX, OpenVINO, TorchScript or TensorRT, with a JSON sidecar."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.errors import UserError

HELP = ("export a YOLO detector (.pt weights or .yaml definition) to onnx, openvino, engine or "
        "torchscript")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True,
                   help="trained .pt (e.g. yolo11n.pt) or a .yaml definition (random weights)")
    p.add_argument("--imgsz", type=int, default=640, help="square input size, multiple of 32")
    p.add_argument("--format", dest="fmt", choices=["onnx", "openvino", "engine", "torchscript"],
                   default="onnx", help="onnx (ONNX Runtime), openvino (.xml IR: the fastest on a "
                   "CPU), engine (TensorRT), torchscript (PyTorch)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: <weights stem>.<format suffix>)")
    p.add_argument("--batch", type=int, default=None,
                       help="static batch size (default 1; with --dynamic: the profile's max)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch (and ONNX spatial) size")
    p.add_argument("--half", action="store_true", help="fp16 (TensorRT, or ONNX/TorchScript on GPU)")
    p.add_argument("--int8", action="store_true",
                   help="int8: NNCF post-training quantisation (openvino), ONNX Runtime static QDQ "
                        "(onnx) or TensorRT entropy calibration (engine); needs --calib-dir")
    p.add_argument("--calib-dir", type=Path, default=None,
                   help="folder of representative frames (images or camera clips) for --int8")
    p.add_argument("--calib-frames", type=int, default=128,
                   help="most frames to calibrate --int8 onnx/openvino on (videos and photos are "
                        "sampled evenly)")
    p.add_argument("--workspace", type=float, default=4.0, help="TensorRT workspace in GiB")
    p.add_argument("--seed", type=int, default=0, help="seed for .yaml random weights")


def run(args: argparse.Namespace) -> int:
    from export.yolo import SUFFIX, ExportError, ExportOptions, export_yolo, load_yolo

    suffix = SUFFIX[args.fmt]
    out = args.out or Path(Path(args.weights).stem + suffix)
    if out.suffix != suffix:
        raise UserError(f"--out {out}: a {args.fmt} export must end in {suffix} (the suffix "
                        "picks the runtime when the engine is opened)", exit_code=2)
    batch = args.batch if args.batch is not None else (32 if args.dynamic else 1)
    opts = ExportOptions(fmt=args.fmt, imgsz=args.imgsz, batch=batch, dynamic=args.dynamic,
                         half=args.half, int8=args.int8, calib_dir=args.calib_dir,
                         calib_frames=args.calib_frames, workspace_gb=args.workspace,
                         seed=args.seed)
    try:
        opts.check()
        model = load_yolo(args.weights, seed=args.seed)
        path = export_yolo(model, out, opts, weights=args.weights, progress=_progress)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    print(path)
    return 0


def _progress(message: str) -> None:
    import sys

    print(f"[export] {message}", file=sys.stderr, flush=True)
