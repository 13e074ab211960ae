"""What the enhanced picture costs per frame, against one detector pass (docs/BENCHMARKS.md,
"Day and night"): the per-stream temporal filter (run on every frame of a picture camera), the
enhancer's network (run only for the pictures somebody looks at) and the detector, interleaved
frame by frame on darkened frames of a clip, medians in milliseconds of wall time::

    python tests/bench/picture_cost.py --clip runs/foot/h264_30.mkv --enhancer runs/k2.onnx \\
        --detector runs/yolo11n.xml --frames 40

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import cv2
import numpy as np

from engines.enhancer import Enhancer, TemporalFilter
from engines.yolo import Detector


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", required=True)
    p.add_argument("--enhancer", required=True)
    p.add_argument("--detector", required=True)
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--darken", type=float, default=0.15, help="frames scaled by this (night)")
    args = p.parse_args()
    cap = cv2.VideoCapture(args.clip)
    frames = []
    while len(frames) < 40:
        ok, img = cap.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray((img * args.darken).astype(np.uint8)))
    if not frames:
        raise SystemExit(f"{args.clip}: no frame could be read")
    enhancer = Enhancer(args.enhancer, device="cpu")
    detector = Detector(args.detector, device="cpu")
    enhancer.warmup(frames[0].shape[:2])
    detector.warmup(1)
    flt = TemporalFilter()
    times: dict[str, list[float]] = {"filter": [], "network": [], "detect": []}
    for i in range(args.frames):
        frame = frames[i % len(frames)]
        t0 = time.perf_counter()
        filtered = flt(frame)
        t1 = time.perf_counter()
        enhancer.network([filtered])
        t2 = time.perf_counter()
        detector([frame])
        t3 = time.perf_counter()
        for key, dt in (("filter", t1 - t0), ("network", t2 - t1), ("detect", t3 - t2)):
            times[key].append(dt)
    ms = {k: round(1000 * statistics.median(v), 2) for k, v in times.items()}
    print(json.dumps({**{f"{k}_ms": v for k, v in ms.items()},
                      "filter_over_detect": round(ms["filter"] / ms["detect"], 3),
                      "network_over_detect": round(ms["network"] / ms["detect"], 3),
                      "frame": list(frames[0].shape[:2]), "frames": args.frames}))


if __name__ == "__main__":
    main()
