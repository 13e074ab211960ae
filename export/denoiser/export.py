"""Export a K-step enhancer graph to ONNX, a PyTorch ``.pt2`` program, or a TensorRT engine.

The graph has one input ``image`` (float32 ``[N,3,H,W]`` RGB in [0,1]; N, H, W dynamic, H and W
multiples of the net's ``multiple``) and one output ``enhanced`` of the same shape. A JSON
sidecar (:func:`engines.base.write_sidecar`) records kind, steps, multiple, precision, the
checkpoint's hash and the duskwatch version; :class:`engines.enhancer.Enhancer` reads it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from engines.about import version
from engines.base import write_sidecar
from export.denoiser.fast import FastEnhancerGraph
from export.denoiser.model import DiffusionConfig, EnhancerGraph, file_sha256, load_checkpoint

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
INPUT, OUTPUT = "image", "enhanced"


def default_checkpoint(steps: int) -> Path:
    """The shipped student for ``steps`` (``export/weights/denoiser_k{steps}.pt``)."""
    path = WEIGHTS_DIR / f"denoiser_k{steps}.pt"
    if not path.is_file():
        shipped = sorted(p.name for p in WEIGHTS_DIR.glob("denoiser_k*.pt"))
        raise FileNotFoundError(
            f"no shipped denoiser weights for --steps {steps} (shipped: {shipped or 'none'}); "
            "pass --checkpoint CKPT, or distil one with `duskwatch distill denoiser --steps K`"
        )
    return path


def build_graph(checkpoint: str | Path, steps: int) -> tuple[EnhancerGraph, dict]:
    net, meta = load_checkpoint(checkpoint)
    if meta.get("kind") == "student" and meta.get("steps") != steps:
        raise ValueError(
            f"{checkpoint}: this student was distilled for {meta.get('steps')} steps, not --steps {steps}; "
            f"use --steps {meta.get('steps')} or a checkpoint distilled for {steps} steps (or the teacher)"
        )
    graph = EnhancerGraph(net, DiffusionConfig(**meta["diffusion"]), steps).eval()
    for p in graph.parameters():
        p.requires_grad_(False)
    return graph, meta


def sidecar_meta(graph: EnhancerGraph, checkpoint: str | Path, precision: str, fmt: str) -> dict:
    return {
        "kind": "enhancer", "steps": graph.steps, "multiple": graph.multiple, "precision": precision,
        "min_size": graph.multiple * (2 if fmt == "pt2" else 1),
        "format": fmt, "input": INPUT, "output": OUTPUT, "layout": "NCHW RGB float32 [0,1]",
        "inputs": [{"name": INPUT, "shape": [None, 3, None, None], "dtype": "float32"}],
        "outputs": [{"name": OUTPUT, "shape": [None, 3, None, None], "dtype": "float32"}],
        "checkpoint": Path(checkpoint).name, "checkpoint_sha256": file_sha256(checkpoint),
        "kappa": graph.kappa, "etas": graph.etas, "noise": graph.noise_mode, "duskwatch_version": version(),
    }


def export_onnx(graph: EnhancerGraph, out: str | Path, opset: int = 18, example: int = 64) -> Path:
    """Dynamic batch/height/width ONNX (TorchScript exporter: dynamic axes, constant folding),
    traced on an ``example``-sided image (rounded up to the graph's frame multiple)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = -(-example // graph.multiple) * graph.multiple
    x = torch.rand(1, 3, side, side)
    torch.onnx.export(
        graph, (x,), str(out), input_names=[INPUT], output_names=[OUTPUT], opset_version=opset,
        dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"}, OUTPUT: {0: "batch", 2: "height", 3: "width"}},
        do_constant_folding=True, dynamo=False,
    )
    return out


def export_pt2(graph: EnhancerGraph, out: str | Path) -> Path:
    """``torch.export`` program with symbolic batch and spatial sizes (multiples of the net's multiple)."""
    from torch.export import Dim

    m = graph.multiple
    # min 2 blocks: torch.export specialises a size-1 bottleneck, so the program guards against it
    hm, wm = Dim("h_blocks", min=2, max=8192 // m), Dim("w_blocks", min=2, max=8192 // m)
    dyn = {"image": {0: Dim("batch", min=1, max=256), 2: m * hm, 3: m * wm}}
    prog = torch.export.export(graph, (torch.rand(2, 3, 2 * m, 3 * m),), dynamic_shapes=dyn)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(prog, str(out))
    return out


def export_engine(onnx_path: Path, out: str | Path, imgsz: int = 640, max_batch: int = 8) -> dict:
    """Build a TensorRT fp16 engine from the ONNX file with ``export.trt_build`` (imported lazily).

    The engine's profile has a fixed ``imgsz x imgsz`` frame and batch 1..``max_batch``;
    :class:`engines.enhancer.Enhancer` resizes frames to fit it. Returns extra sidecar fields.
    """
    try:
        from export import trt_build
    except ImportError as exc:
        raise RuntimeError(
            f"--format engine needs export.trt_build and TensorRT ({exc}); install TensorRT "
            "(`pip install duskwatch[trt]` on a machine with an NVIDIA GPU) or use --format onnx"
        ) from None
    opts = trt_build.BuildOptions(fp16=True, dynamic=True, batch=max_batch, imgsz=imgsz)
    try:
        return dict(trt_build.build_engine(Path(onnx_path), Path(out), opts) or {})
    except Exception as exc:  # ExportError from trt_build: TensorRT or CUDA missing, parse failure
        raise RuntimeError(f"--format engine: {exc}") from None


def export_denoiser(checkpoint: str | Path | None, steps: int, fmt: str, out: str | Path) -> Path:
    """Build the K-step graph from ``checkpoint`` (default: shipped weights) and write ``out``."""
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint(steps)
    graph, _ = build_graph(checkpoint, steps)
    # the same function, cheaper to run (export/denoiser/fast.py); the curve head is already
    # cheap at full resolution and is exported as it is
    fast = FastEnhancerGraph(graph).eval() if graph.net.cfg.head == "residual" else graph
    out, extra = Path(out), {}
    if fmt == "onnx":
        export_onnx(fast, out)
        precision = "fp32"
    elif fmt == "pt2":
        export_pt2(fast, out)
        precision = "fp32"
    elif fmt == "openvino":  # the CPU engine of choice: ONNX, then OpenVINO IR (.xml + .bin)
        from export.openvino_ir import onnx_to_openvino

        onnx_path = out.with_name(out.stem + ".to-openvino.onnx")  # never an .onnx engine beside it
        export_onnx(fast, onnx_path)
        onnx_to_openvino(onnx_path, out, {"kind": "enhancer", "steps": steps, "multiple": graph.multiple})
        onnx_path.unlink()
        precision = "fp32"
    elif fmt == "engine":
        onnx_path = out.with_suffix(".onnx")
        export_onnx(fast, onnx_path)
        extra = export_engine(onnx_path, out)
        precision = "fp16"
    else:
        raise ValueError(f"unknown --format {fmt!r}; use onnx, openvino, engine or pt2")
    write_sidecar(out, {**sidecar_meta(graph, checkpoint, precision, fmt), **extra})
    return out


def parity(graph: EnhancerGraph, onnx_path: str | Path, images: np.ndarray) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime outputs on ``images``."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run([OUTPUT], {INPUT: images.astype(np.float32)})[0]
    with torch.no_grad():
        want = graph(torch.from_numpy(images.astype(np.float32))).numpy()
    return float(np.abs(got - want).max())
