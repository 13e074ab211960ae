"""duskwatch enhance --engine PATH --out DIR IMAGE...: writes DIR/<same stem>.png per image."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from engines.errors import UserError

HELP = "brighten and denoise low-light images with an exported enhancer engine"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", required=True, help="enhancer engine from `duskwatch export denoiser`, or "
                   "triton://HOST:PORT/MODEL")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="input images (any format OpenCV reads)")


def run(args: argparse.Namespace) -> int:
    import cv2

    from engines.base import EngineError
    from engines.enhancer import Enhancer

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_unique_stems(args.images)
    try:
        enhancer = Enhancer(args.engine, device=args.device)
    except EngineError as exc:
        raise UserError(str(exc)) from None
    failed = 0
    with enhancer:
        for path in args.images:
            img = cv2.imread(path, cv2.IMREAD_COLOR)
            if img is None:
                print(f"{path}: cannot read this image, skipped")
                failed += 1
                continue
            t0 = time.perf_counter()
            (result,) = enhancer([img])
            dest = out_dir / (Path(path).stem + ".png")
            if not cv2.imwrite(str(dest), result):
                raise UserError(f"{dest}: could not write the PNG (disk full or no permission?)")
            print(f"{path} -> {dest} ({img.shape[1]}x{img.shape[0]}, {1000 * (time.perf_counter() - t0):.0f} ms)")
    if failed:
        raise UserError(f"{failed} of {len(args.images)} images could not be read")
    return 0


def _check_unique_stems(images: list[str]) -> None:
    seen: dict[str, str] = {}
    for p in images:
        stem = Path(p).stem
        if stem in seen:
            raise UserError(f"{seen[stem]} and {p} would both be written as {stem}.png; "
                               "enhance them into different --out folders")
        seen[stem] = p
