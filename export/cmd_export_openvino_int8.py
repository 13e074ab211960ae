"""duskwatch export openvino-int8: the int8 version of an f32 OpenVINO IR (NNCF), calibrated on
a folder of frames, with a sidecar that names the f32 IR it came from (its SHA-256).

This is what the daemon runs, as a low-priority subprocess, once it has collected frames of its
cameras (:mod:`daemon.int8`), and what ``install-service --calib-dir`` runs at once. It needs
no weights: only the f32 IR (``export yolo --format openvino``) and its sidecar.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engines.errors import UserError

HELP = "quantise an f32 OpenVINO detector IR to int8 (NNCF) on a folder of camera frames"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ir", type=Path, required=True, help="the f32 IR (.xml, with its .bin)")
    p.add_argument("--calib-dir", type=Path, required=True,
                   help="folder of frames of the cameras (images or clips)")
    p.add_argument("--out", type=Path, default=None,
                   help="the int8 IR (default: <ir stem>.int8.xml beside it)")
    p.add_argument("--calib-frames", type=int, default=300, help="most frames to calibrate on")


def default_out(ir: Path) -> Path:
    return ir.with_name(ir.stem + ".int8.xml")


def run(args: argparse.Namespace) -> int:
    from engines.base import read_sidecar, write_sidecar
    from engines.ir_files import ir_sha256
    from export.errors import ExportError
    from export.openvino_int8 import count_fake_quantize, quantize_ir

    ir, out = args.ir, args.out or default_out(args.ir)
    if ir.suffix != ".xml" or out.suffix != ".xml":
        raise UserError(f"--ir {ir} / --out {out}: both must be OpenVINO IRs (.xml)", exit_code=2)
    if not ir.is_file():
        raise UserError(f"--ir {ir}: no such file; build it with `duskwatch export yolo "
                        "--format openvino --out NAME.xml`", exit_code=2)
    meta = read_sidecar(ir)
    if meta.get("precision") == "int8":
        raise UserError(f"--ir {ir} is already int8; give the f32 IR", exit_code=2)
    imgsz = int((meta.get("imgsz") or [640])[0])
    stride = int(meta["stride"]) if meta.get("rect") and meta.get("stride") else None
    digest = ir_sha256(ir)
    tmp = out.with_name(out.stem + ".partial.xml")
    try:
        extra = quantize_ir(ir, tmp, args.calib_dir, imgsz, stride, args.calib_frames,
                            progress=_progress)
        import openvino as ov

        if count_fake_quantize(ov.Core().read_model(str(tmp))) == 0:
            raise ExportError(f"{ir}: NNCF inserted no int8 operation; is it a YOLO detector IR?")
        for src, dst in ((tmp, out), (tmp.with_suffix(".bin"), out.with_suffix(".bin"))):
            src.replace(dst)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    finally:
        for leftover in (tmp, tmp.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)
    write_sidecar(out, {**meta, **extra, "precision": "int8", "format": "openvino",
                        "source_ir": {"file": ir.name, "sha256": digest}})
    _progress(f"wrote {out} and {out.name}.json (from {ir.name}, sha256 {digest[:12]})")
    print(out)
    return 0


def _progress(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)
