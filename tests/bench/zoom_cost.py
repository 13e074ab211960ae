"""What a zoom view costs, in detector passes: the median time of one detection of a photo at
``lowlight.zoom`` times the detector's size over the median at its own size (live detection's
geometry, batch 1, alternating runs).

    python tests/bench/zoom_cost.py runs/yolo11n.onnx ../shared/data/exdark_dev/val/images 0.65
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engines.yolo import Detector


def main(engine: str, folder: str, zoom: float, photos: int = 40, rounds: int = 2) -> int:
    images = [cv2.imread(str(p)) for p in sorted(Path(folder).glob("*.jpg"))[:photos]]
    with Detector(engine, conf=0.25, iou=0.45, device="cpu") as det:
        times: dict[float, list[float]] = {1.0: [], zoom: []}
        for scale in times:  # warm up both input sizes
            det(images[:2], scale=scale)
        for _ in range(rounds):
            for scale, out in times.items():
                for image in images:
                    t0 = time.perf_counter()
                    det([image], scale=scale)
                    out.append(time.perf_counter() - t0)
    med = {s: float(np.median(v)) for s, v in times.items()}
    print(f"{Path(engine).name}: {med[1.0] * 1e3:.1f} ms at 1x, {med[zoom] * 1e3:.1f} ms at {zoom:g}x: "
          f"a zoom view costs {med[zoom] / med[1.0]:.2f} of a pass ({len(images)} photos x {rounds})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
