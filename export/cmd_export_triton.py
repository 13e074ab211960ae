"""duskwatch export triton: a Triton model repository for the detector and the enhancer."""

from __future__ import annotations

import argparse
from pathlib import Path

from engines.errors import UserError

HELP = "write a Triton model repository (config.pbtxt, model files) from .onnx exports"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="the model repository folder")
    p.add_argument("--detector", type=Path, default=None,
                   help="detector .onnx (`duskwatch export yolo --format onnx --dynamic`)")
    p.add_argument("--enhancer", type=Path, default=None,
                   help="enhancer .onnx (`duskwatch export denoiser --format onnx`)")
    p.add_argument("--detector-name", default="yolo", help="model name of the detector")
    p.add_argument("--enhancer-name", default="enhancer", help="model name of the enhancer")
    p.add_argument("--server", choices=["cpu", "gpu"], default="gpu",
                   help="gpu: Triton's ONNX Runtime backend on the GPU; cpu: a Python-backend "
                   "model running ONNX Runtime or OpenVINO (what a CPU-only Triton can run)")
    p.add_argument("--runtime", default=None,
                   help="gpu: onnxruntime (default) or tensorrt (plan built on the server); "
                   "cpu: onnxruntime (default) or openvino")
    p.add_argument("--max-batch", type=int, default=8, help="max_batch_size of each model")
    p.add_argument("--instances", type=int, default=1, help="instances of each model")
    p.add_argument("--queue-delay-us", type=int, default=2000,
                   help="how long the dynamic batcher waits to fill a batch (microseconds)")
    p.add_argument("--wire", choices=["uint8", "float32"], default="uint8",
                   help="what frames travel as (uint8: a quarter of the bytes, same results)")
    p.add_argument("--outputs", choices=["fp32", "fp16"], default="fp32",
                   help="what results travel back as (fp16: half the bytes, scores rounded)")
    p.add_argument("--candidates", type=int, default=0,
                   help="detector: send back only the K best anchors of each image (e.g. 1000; "
                   "the same detections while an image has at most K above the threshold; "
                   "0: every anchor)")
    p.add_argument("--device", default="cpu",
                   help="cpu server (Python backend): cpu, or cuda:N for ONNX Runtime's CUDA "
                   "provider inside it (onnxruntime-gpu in the server's environment)")
    p.add_argument("--threads", type=int, default=0,
                   help="cpu server: intra-op threads per instance (0: the runtime's default)")


def run(args: argparse.Namespace) -> int:
    from export.triton_repo import RepoOptions, write_repository

    models = {}
    if args.detector is not None:
        models[args.detector_name] = ("detector", args.detector)
    if args.enhancer is not None:
        models[args.enhancer_name] = ("enhancer", args.enhancer)
    if not models:
        raise UserError("export triton: give --detector and/or --enhancer (.onnx exports)",
                        exit_code=2)
    for path in (p for _, p in models.values()):
        if not path.is_file():
            raise UserError(f"{path}: no such file; export it first (`duskwatch export yolo "
                            "--format onnx --dynamic --out ...`)", exit_code=2)
    runtime = args.runtime or "onnxruntime"
    opts = RepoOptions(server=args.server, runtime=runtime, max_batch=args.max_batch,
                       instances=args.instances, queue_delay_us=args.queue_delay_us,
                       wire=args.wire, outputs=args.outputs, threads=args.threads,
                       device=args.device, candidates=args.candidates)
    for config in write_repository(args.out, models, opts):
        name = config.parent.name
        print(f"{config}  ->  engines.{models[name][0]}: triton://TRITON_HOST:8001/{name}")
    return 0
