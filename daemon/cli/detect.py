"""duskwatch detect --engine PATH [--enhancer PATH] IMAGE...: one JSON line per image.

Each line is ``{"image", "width", "height", "detections": [{"box", "score", "class_id",
"class"}]}``. An image that cannot be read is reported on stderr, naming it; the others are
still processed and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from engines.errors import UserError

HELP = "run the YOLO detector on images and print one JSON line per image"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", required=True, help="detector engine (.onnx, .xml, .engine, .torchscript) or a model on a "
                   "Triton server: triton://HOST:PORT/MODEL")
    p.add_argument("--enhancer", default=None,
                   help="low-light enhancer engine to run on each image before detection")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (0..1)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (0..1)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("images", nargs="+", metavar="IMAGE")


def run(args: argparse.Namespace) -> int:
    from engines.base import EngineError
    from engines.yolo import Detector

    for name, v in (("--conf", args.conf), ("--iou", args.iou)):
        if not 0.0 <= v <= 1.0:
            raise UserError(f"{name} {v} must be between 0 and 1", exit_code=2)
    try:
        enhance = _enhancer(args.enhancer, args.device)
        try:
            with Detector(args.engine, conf=args.conf, iou=args.iou, device=args.device) as det:
                failed = _detect_all(det, enhance, args.images)
        finally:
            if enhance is not None:
                enhance.close()
    except EngineError as exc:
        raise UserError(str(exc)) from None
    if failed:
        raise UserError(f"{len(failed)} of {len(args.images)} images could not be read: "
                           f"{', '.join(failed)}")
    return 0


def _detect_all(det, enhance, paths: list[str]) -> list[str]:
    """Detect image by image (any sizes); return the paths that could not be read."""
    import cv2

    failed = []
    for path in paths:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            print(f"duskwatch detect: {path}: cannot read this image (missing, not an image, "
                  "or truncated); skipped", file=sys.stderr)
            failed.append(path)
            continue
        if enhance is not None:
            img = enhance([img])[0]
        found = det([img])[0]
        print(json.dumps({"image": path, "width": int(img.shape[1]), "height": int(img.shape[0]),
                          "detections": found.to_json()}), flush=True)
    return failed


def _enhancer(path: str | None, device: str):
    if path is None:
        return None
    try:
        from engines.enhancer import Enhancer
    except ImportError as exc:
        raise UserError(f"--enhancer {path}: the enhancer runtime is not available in this "
                           f"install ({exc})") from None
    return Enhancer(path, device=device)
