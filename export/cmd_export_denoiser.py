"""duskwatch export denoiser [--checkpoint CKPT] --steps K --format onnx|openvino|engine|pt2 --out PATH."""

from __future__ import annotations

import argparse

HELP = "export the K-step low-light enhancer (default: the weights shipped with duskwatch)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="teacher or student checkpoint (default: export/weights/denoiser_k{K}.pt)")
    p.add_argument("--steps", type=int, default=2, help="sampling steps unrolled into the graph (default 2)")
    p.add_argument("--format", choices=["onnx", "openvino", "engine", "pt2"], default="onnx",
                   help="onnx (ONNX Runtime), openvino (.xml IR: the CPU engine of choice), engine "
                        "(TensorRT), pt2 (torch.export)")
    p.add_argument("--out", required=True, help="output file (.onnx, .engine or .pt2); a .json sidecar is written beside it")
    p.add_argument("--check", action="store_true", help="after an ONNX export, compare ONNX Runtime against PyTorch")
    p.add_argument("--if-changed", action="store_true",
                   help="do nothing when --out already holds this checkpoint's K-step export (its "
                   "sidecar's checkpoint_sha256, steps and format match)")


def run(args: argparse.Namespace) -> int:
    from engines.errors import UserError

    try:
        import torch

        from export.denoiser import export as dx
    except ImportError as exc:
        raise UserError(f"exporting needs the export extra ({exc}); pip install 'duskwatch[export]'") from None
    if args.if_changed and _up_to_date(dx, args):
        print(f"enhancer ({args.steps} steps, {args.format}): {args.out} is up to date")
        return 0
    with torch.no_grad():  # scoped: the command also runs in-process (tests, other tools)
        try:
            out = dx.export_denoiser(args.checkpoint, args.steps, args.format, args.out)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:
            raise UserError(str(exc)) from None
        print(f"enhancer ({args.steps} steps, {args.format}): {out}")
        if args.check and args.format == "onnx":
            import numpy as np

            graph, _ = dx.build_graph(args.checkpoint or dx.default_checkpoint(args.steps), args.steps)
            m = graph.multiple  # about 96x160 in multiples of the graph's: 128x192 for 64
            h, w = m * -(-96 // m), m * -(-160 // m)
            x = np.random.default_rng(0).random((2, 3, h, w), dtype=np.float32) * 0.3
            print(f"parity: max |ONNX Runtime - PyTorch| = {dx.parity(graph, out, x):.2e}")
    return 0


def _up_to_date(dx, args: argparse.Namespace) -> bool:
    """Whether ``--out`` and its sidecar already hold this checkpoint exported the same way."""
    from pathlib import Path

    from engines.base import read_sidecar

    out = Path(args.out)
    checkpoint = Path(args.checkpoint) if args.checkpoint else dx.default_checkpoint(args.steps)
    if not (out.is_file() and out.stat().st_size > 0 and checkpoint.is_file()):
        return False
    try:
        meta = read_sidecar(out) or {}
    except Exception:  # noqa: BLE001 - an unreadable sidecar means: export again
        return False
    return (meta.get("checkpoint_sha256") == dx.file_sha256(checkpoint)
            and meta.get("steps") == args.steps and meta.get("format") == args.format)
