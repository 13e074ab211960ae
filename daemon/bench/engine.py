"""duskwatch bench engine: throughput and latency of engines, optionally beside the bare model.

Each engine is fed a fixed random batch for ``--seconds`` after a warm-up (on CUDA the torch and
TensorRT backends get a device tensor, so host copies are not timed; CUDA graph capture happens
in the warm-up). ``--compare-bare yolo11n.yaml`` times the same model's plain PyTorch forward in
the same run: eager, and on CUDA fp16 channels-last replayed from a CUDA graph, the ceiling an
engine should reach. Progress goes to stderr; the last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Callable

from engines.errors import UserError

HELP = "time engines (images/s, latency p50/p99), optionally against the bare PyTorch model"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", action="append", required=True, metavar="PATH",
                   help="engine file; repeat to compare several")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--imgsz", type=int, default=None,
                   help="input size for engines with a dynamic size (default: from the engine)")
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per engine")
    p.add_argument("--warmup", type=float, default=2.0, help="untimed seconds first")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for ONNX Runtime and torch (default: all cores)")
    p.add_argument("--compare-bare", metavar="YAML_OR_PT", default=None,
                   help="also time this model's bare PyTorch forward (e.g. yolo11n.yaml)")


def run(args: argparse.Namespace) -> int:
    from engines.base import EngineError

    if args.batch < 1 or args.seconds <= 0:
        raise UserError("--batch must be >= 1 and --seconds > 0", exit_code=2)
    threads = args.threads or os.cpu_count() or 1
    _set_torch_threads(threads)
    results, imgsz = [], None
    try:
        for path in args.engine:
            res, size = bench_engine_file(path, args.batch, args.imgsz, args, threads)
            results.append(res)
            imgsz = imgsz or size
    except EngineError as exc:
        raise UserError(str(exc)) from None
    summary: dict[str, Any] = {"bench": "engine", "batch": args.batch, "engines": results}
    if args.compare_bare:
        summary["bare"] = bench_bare(args.compare_bare, args.batch, imgsz, args)
        summary["ratios"] = ratios(results, summary["bare"])
    print(json.dumps(summary), flush=True)
    return 0


# -- engines ---------------------------------------------------------------------------------
def bench_engine_file(path: str, batch: int, imgsz: int | None, args: argparse.Namespace,
                      threads: int) -> tuple[dict, tuple[int, int]]:
    from engines.base import EngineError, open_engine

    opts = {"threads": threads} if path.endswith(".onnx") else {}
    with open_engine(path, device=args.device, **opts) as eng:
        spec = eng.inputs[0]
        if eng.max_batch is not None and batch != eng.max_batch:
            raise EngineError(f"{path}: --batch {batch} but the engine has a static batch of "
                              f"{eng.max_batch}; use --batch {eng.max_batch}, or re-export with "
                              f"--batch {batch} (or --dynamic)")
        size = _input_hw(eng, spec, imgsz)
        feed = {spec.name: _random_input(eng, (batch, spec.shape[1] or 3, *size))}
        device = str(getattr(eng, "device", "cpu"))
        _log(f"{path}: {eng.backend} on {device}, batch {batch}, {size[0]}x{size[1]}")
        stats = time_calls(lambda: eng.infer(feed), _sync_for(device), args.warmup, args.seconds)
    res = {"engine": path, "backend": eng.backend, "device": device, **_rates(stats, batch)}
    _log(f"  {res['images_per_s']:.1f} images/s, p50 {res['latency_ms_p50']:.2f} ms, "
         f"p99 {res['latency_ms_p99']:.2f} ms")
    return res, size


def _input_hw(eng: Any, spec: Any, imgsz: int | None) -> tuple[int, int]:
    if spec.shape[2] is not None and spec.shape[3] is not None:
        return int(spec.shape[2]), int(spec.shape[3])
    size = imgsz or eng.metadata.get("imgsz") or 640
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _random_input(eng: Any, shape: tuple) -> Any:
    import numpy as np

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    device = str(getattr(eng, "device", "cpu"))
    if device.startswith("cuda") and eng.backend in ("torch", "tensorrt"):
        import torch

        return torch.from_numpy(x).to(device)  # time the engine, not the host upload
    return x


# -- bare model ------------------------------------------------------------------------------
def bench_bare(weights: str, batch: int, imgsz: tuple[int, int] | None,
               args: argparse.Namespace) -> list[dict]:
    """The model's own forward: eager, plus a CUDA graph replay on CUDA."""
    import torch

    size = imgsz or (args.imgsz or 640,) * 2
    model, device = _bare_model(weights, args.device)
    half = device.type == "cuda"
    x = torch.rand(batch, 3, *size, device=device)
    if half:
        x = x.half().contiguous(memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        sync = _sync_for(str(device))
        _log(f"bare {weights}: eager on {device}{' fp16 channels-last' if half else ''}")
        stats = time_calls(lambda: model(x), sync, args.warmup, args.seconds)
        out.append({"model": weights, "mode": "eager", "device": str(device), **_rates(stats, batch)})
        if device.type == "cuda":
            replay = _capture_graph(model, x)
            _log(f"bare {weights}: CUDA graph replay")
            stats = time_calls(replay, sync, args.warmup, args.seconds)
            out.append({"model": weights, "mode": "cuda_graph", "device": str(device),
                        **_rates(stats, batch)})
    for r in out:
        _log(f"  {r['mode']}: {r['images_per_s']:.1f} images/s, p50 {r['latency_ms_p50']:.2f} ms")
    return out


def _bare_model(weights: str, device: str) -> tuple[Any, Any]:
    import logging

    import torch
    from ultralytics import YOLO

    from engines.device import resolve_device

    dev = resolve_device(device, weights)
    logging.getLogger("ultralytics").setLevel(logging.WARNING)
    torch.manual_seed(0)
    model = YOLO(weights).model.fuse().eval().to(dev)
    if dev.type == "cuda":
        model = model.half().to(memory_format=torch.channels_last)
    return model, dev


def _capture_graph(model: Any, x: Any) -> Callable[[], Any]:
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return graph.replay


# -- timing ----------------------------------------------------------------------------------
def time_calls(fn: Callable[[], Any], sync: Callable[[], None], warmup_s: float,
               seconds: float) -> list[float]:
    """Per-call latencies (s) of ``fn`` over ``seconds``, after ``warmup_s`` (at least 2 calls)."""
    end = time.perf_counter() + warmup_s
    calls = 0
    while calls < 2 or time.perf_counter() < end:
        fn()
        calls += 1
    sync()
    lat = []
    end = time.perf_counter() + seconds
    while not lat or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        sync()
        lat.append(time.perf_counter() - t0)
    return lat


def _rates(lat: list[float], batch: int) -> dict[str, float]:
    import numpy as np

    a = np.asarray(lat)
    return {"images_per_s": round(batch * len(a) / float(a.sum()), 2),
            "latency_ms_p50": round(float(np.percentile(a, 50)) * 1e3, 3),
            "latency_ms_p99": round(float(np.percentile(a, 99)) * 1e3, 3),
            "iterations": int(len(a))}


def ratios(engines: list[dict], bare: list[dict]) -> dict[str, float]:
    """Engine throughput over each bare mode's: ``{"<engine> / <mode>": ratio}``."""
    return {f"{e['engine']} / bare {b['mode']}": round(e["images_per_s"] / b["images_per_s"], 3)
            for e in engines for b in bare}


def _sync_for(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
