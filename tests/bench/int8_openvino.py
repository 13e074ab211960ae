"""int8 OpenVINO IRs of a float YOLO IR by NNCF, for docs/BENCHMARKS.md's "Engine choice"::

    python tests/bench/int8_openvino.py plain  --src yolo11n_f32.xml --out yolo11n_int8.xml --calib-dir CALIB
    python tests/bench/int8_openvino.py plain  ... --keep-head-outputs
    python tests/bench/int8_openvino.py control --src yolo11n_f32.xml --out yolo11n_int8_ac.xml \\
        --calib-dir CALIB --val coco128=../shared/data/coco128 --val exdark_val=../shared/data/exdark_dev/val

``plain``: NNCF's post-training quantisation (MIXED preset, the head's decoding float).
``control``: NNCF's accuracy control; the metric is the worst AP50 change over the ``--val``
sets against the float IR (0 for the float IR), so ``--max-drop 0.005`` keeps every set within
0.005 AP50. Each output gets the float IR's sidecar with ``precision`` int8 and the calibration,
so ``duskwatch bench night`` / ``bench pipeline`` take it as an engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from engines.base import read_sidecar, write_sidecar
from engines.evaluation import read_labelled_set
from export import openvino_int8 as oi


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("plain", "control"))
    p.add_argument("--src", required=True, type=Path, help="float IR (export yolo --format openvino --dynamic)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--calib-dir", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--keep-head-outputs", action="store_true")
    p.add_argument("--quantize-stem", action="store_true",
                   help="quantise the first convolution too (float by default)")
    p.add_argument("--val", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--max-drop", type=float, default=0.005)
    p.add_argument("--ranking-subset", type=int, default=None)
    p.add_argument("--max-iterations", type=int, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    meta = read_sidecar(args.src)
    stride = int(meta.get("stride", 32))
    imgsz = int(meta["imgsz"][0])
    t0 = time.monotonic()
    if args.mode == "plain":
        extra = oi.quantize_ir(args.src, args.out, args.calib_dir, imgsz, stride, args.frames,
                               keep_head_outputs=args.keep_head_outputs,
                               keep_stem=not args.quantize_stem, progress=print)
    else:
        validation = _validation(args.src, args.val, imgsz, stride)
        extra = oi.quantize_with_ap_control(args.src, args.out, args.calib_dir, imgsz, stride,
                                            validation, args.max_drop, args.frames,
                                            args.ranking_subset, args.max_iterations,
                                            progress=print)
        print(json.dumps({"validations": validation.history}))
    write_sidecar(args.out, {**meta, "precision": "int8", **extra})
    print(json.dumps({"out": str(args.out), "seconds": round(time.monotonic() - t0, 1), **extra}))


def _validation(src: Path, specs: list[str], imgsz: int, stride: int) -> oi.APValidation:
    import openvino as ov

    if not specs:
        raise SystemExit("control needs at least one --val NAME=DIR")
    sets = {}
    for spec in specs:
        name, _, root = spec.partition("=")
        sets[name] = read_labelled_set(root, name)
    input_name = ov.Core().read_model(str(src)).inputs[0].get_any_name()
    return oi.APValidation(sets, input_name, stride, imgsz)


if __name__ == "__main__":
    main()
