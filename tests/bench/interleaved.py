"""Engines timed in turn on one input, so that all see the same load (a shared machine's load
drifts): ``LABEL=PATH[:BACKEND]`` each, ``BACKEND`` ``openvino`` to run an ``.onnx`` file on
OpenVINO instead of ONNX Runtime. Used for the engine choice in docs/BENCHMARKS.md::

    python tests/bench/interleaved.py --batch 4 --height 384 --width 640 --seconds 30 \\
        ort=yolo11n.onnx openvino=yolo11n.xml
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from engines.base import open_engine


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("engines", nargs="+", metavar="LABEL=PATH[:BACKEND]")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    engines = {}
    for spec in args.engines:
        label, _, rest = spec.partition("=")
        path, _, backend = rest.partition(":")
        engines[label] = open_engine(path, device="cpu", backend=backend or None)
    x = np.random.default_rng(0).random((args.batch, 3, args.height, args.width), dtype=np.float32)
    feeds = {k: {e.inputs[0].name: x} for k, e in engines.items()}
    for k, e in engines.items():
        for _ in range(3):
            e.infer(feeds[k])
    times: dict[str, list[float]] = {k: [] for k in engines}
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for k, e in engines.items():
            t0 = time.perf_counter()
            e.infer(feeds[k])
            times[k].append(time.perf_counter() - t0)
    for k, t in times.items():
        med = float(np.median(t))
        print(f"{k} ({engines[k].provider}): {len(t)} calls, median {1000 * med:.1f} ms per "
              f"batch of {args.batch}, {args.batch / med:.1f} images/s")


if __name__ == "__main__":
    main()
