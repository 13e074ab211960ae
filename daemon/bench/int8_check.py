"""duskwatch bench int8-check: the daemon's int8 check (:mod:`daemon.int8.check`) on any f32 /
int8 pair and folder of frames (images, or a clip sampled evenly), to measure where its
threshold should be. Prints the box agreement of the int8 detections with the f32 ones as JSON."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

HELP = "score an int8 detector against its f32 one on frames, as the daemon's int8 check does"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--f32", type=Path, required=True, help="the reference detector engine")
    p.add_argument("--int8", type=Path, required=True, nargs="+", help="detector engine(s) to judge")
    p.add_argument("--frames", type=Path, required=True,
                   help="folder of frames (images or clips); clips are sampled evenly")
    p.add_argument("--count", type=int, default=40, help="frames to judge on")
    p.add_argument("--conf", type=float, default=0.25, help="the reference detector's confidence")


def run(args: argparse.Namespace) -> int:
    import cv2

    from daemon.int8.check import MIN_AGREEMENT, MIN_BOXES, SCORE_BAND, check
    from daemon.int8.offline import folder_frames
    from engines.yolo import Detector

    out = {"f32": str(args.f32), "min_agreement": MIN_AGREEMENT, "min_boxes": MIN_BOXES, "results": []}
    with tempfile.TemporaryDirectory(prefix="duskwatch-int8-check-") as tmp:
        images = []
        for n, (name, frame) in enumerate(folder_frames(args.frames, args.count)):
            images.append(Path(tmp) / f"{n:04d}-{name}.jpg")
            cv2.imwrite(str(images[-1]), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
        low = args.conf * SCORE_BAND
        with Detector(args.f32, conf=low) as ref:
            for path in args.int8:
                with Detector(path, conf=low) as cand:
                    res = check(images, ref, cand, args.conf)
                print(f"{path}: {res.reason}", flush=True)
                out["results"].append({"int8": str(path), **res.to_json()})
    print(json.dumps(out))
    return 0
