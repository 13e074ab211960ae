"""A Triton model repository from our ONNX exports (``duskwatch export triton``).

::

    REPO/yolo/config.pbtxt          dynamic batching, instance group, the engine's sidecar
    REPO/yolo/1/model.onnx          the export, with its wire encoding folded in
    REPO/yolo/1/model.py            (CPU server only) runs model.onnx with ONNX Runtime/OpenVINO

Two kinds of server (``--server``):

* ``gpu``: Triton's own ONNX Runtime backend on the GPU (``KIND_GPU``); ``--runtime tensorrt``
  adds its TensorRT accelerator, which builds the TensorRT plan on that server at load time
  (a plan is tied to the GPU and TensorRT version it is built with).
* ``cpu``: Triton's Python backend running :mod:`export.triton_model` (``KIND_CPU``), which runs
  the same ONNX file with ONNX Runtime or OpenVINO (``--runtime openvino``). This is what the
  bundled server of ``nvidia-pytriton`` can run (it has no other backend).

The wire: ``--wire uint8`` (default) puts a ``Cast`` and a ``Mul(1/255)`` in front of the graph
so that frames travel as bytes (a quarter of float32) and the server computes the same floats
the local engine gets; ``--outputs fp16`` adds a ``Cast`` to float16 after it (half the bytes
back, at fp16's resolution of the scores). The engine (:mod:`engines.triton_backend`) reads
both from the ``duskwatch`` parameter and converts on its side.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.base import Engine, EngineError, open_engine
from export.errors import ExportError

_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16",
          np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.int64): "TYPE_INT64",
          np.dtype(np.int32): "TYPE_INT32"}
RUNTIMES = {"cpu": ("onnxruntime", "openvino"), "gpu": ("onnxruntime", "tensorrt")}
INPUT_SCALE = 255


@dataclass(frozen=True)
class RepoOptions:
    server: str = "cpu"  # cpu | gpu
    runtime: str = "onnxruntime"
    max_batch: int = 8
    instances: int = 1
    queue_delay_us: int = 2000
    wire: str = "uint8"  # uint8 | float32
    outputs: str = "fp32"  # fp32 | fp16
    threads: int = 0  # intra-op threads of each CPU instance (0: the runtime's default)
    candidates: int = 0  # detector: send only the K best anchors of each image (0: all)
    device: str = "cpu"  # Python backend: cuda:N runs ONNX Runtime's CUDA provider inside it

    def check(self) -> None:
        if self.runtime not in RUNTIMES.get(self.server, ()):
            raise ExportError(f"--runtime {self.runtime} does not run on a {self.server} server; "
                              f"use one of {RUNTIMES.get(self.server)}", exit_code=2)
        if self.candidates and not 100 <= self.candidates <= 30000:
            raise ExportError(f"--candidates {self.candidates}: use 100..30000 (or 0: every "
                              "anchor)", exit_code=2)
        if not 1 <= self.max_batch <= 256 or not 1 <= self.instances <= 64:
            raise ExportError(f"--max-batch {self.max_batch} / --instances {self.instances}: use "
                              "1..256 and 1..64", exit_code=2)


def write_repository(repo: Path, models: dict[str, tuple[str, Path]], opts: RepoOptions) -> list[Path]:
    """Write one model folder per ``{name: (kind, onnx path)}``; returns the config files."""
    opts.check()
    repo.mkdir(parents=True, exist_ok=True)
    return [write_model(repo, name, kind, src, opts) for name, (kind, src) in models.items()]


def write_model(repo: Path, name: str, kind: str, src: Path, opts: RepoOptions) -> Path:
    """``REPO/NAME`` for one export (``kind``: detector or enhancer); returns its config.pbtxt."""
    if Path(src).suffix != ".onnx":
        raise ExportError(f"{src}: export triton takes .onnx exports (`duskwatch export yolo "
                          "--format onnx --dynamic`, `duskwatch export denoiser --format onnx`)")
    try:
        with open_engine(src, device="cpu", backend="onnxruntime") as eng:
            _check_kind(eng, kind)
            layout = _layout(eng, opts)
            meta = _metadata(eng, kind, layout, opts)
    except EngineError as exc:
        raise ExportError(str(exc)) from None
    folder = repo / name
    version = folder / "1"
    if folder.exists():
        shutil.rmtree(folder)
    version.mkdir(parents=True)
    wrap_onnx(src, version / "model.onnx", wire_uint8=layout["uint8"],
              outputs_fp16=opts.outputs == "fp16",
              candidates=opts.candidates if kind == "detector" else 0)
    if opts.server == "cpu":
        shutil.copyfile(Path(__file__).with_name("triton_model.py"), version / "model.py")
    config = folder / "config.pbtxt"
    config.write_text(model_config(name, layout, meta, opts))
    return config


def _check_kind(eng: Engine, kind: str) -> None:
    if kind == "detector":
        from engines.yolo import check_detector

        check_detector(eng)
    elif len(eng.inputs) != 1 or len(eng.outputs) != 1:
        raise ExportError(f"{eng.path}: an enhancer has one input and one output, this file has "
                          f"{[s.name for s in eng.inputs]} -> {[s.name for s in eng.outputs]}")


def _layout(eng: Engine, opts: RepoOptions) -> dict[str, Any]:
    """Tensors as the server declares them, and how batching works for this file."""
    batch = eng.inputs[0].shape[0]
    if batch not in (None, 1):
        raise ExportError(f"{eng.path}: its batch is fixed at {batch}; Triton batches requests "
                          "itself: export with --dynamic (or --batch 1)")
    # Triton's batcher needs a batch dimension the model accepts at any size: ONNX Runtime's GPU
    # backend gets one only from a --dynamic export; the Python backend also runs a batch-1 file
    # image by image.
    batched = batch is None or opts.server == "cpu"
    uint8 = opts.wire == "uint8" and eng.inputs[0].dtype == np.float32
    ins = [_tensor(s, batched, np.dtype(np.uint8) if uint8 else s.dtype) for s in eng.inputs]
    out_dtype = (lambda s: np.dtype(np.float16) if opts.outputs == "fp16" and
                 s.dtype == np.float32 else s.dtype)
    outs = [_tensor(s, batched, out_dtype(s)) for s in eng.outputs]
    if opts.candidates and eng.metadata.get("kind", "detector") in ("detector", "detect"):
        outs[0]["dims"][-1] = -1  # the K best anchors, or all of them when there are fewer
    spatial_dynamic = eng.inputs[0].shape[2] is None and eng.inputs[0].shape[3] is None
    return {"inputs": ins, "outputs": outs, "max_batch": opts.max_batch if batched else 0,
            "uint8": uint8, "rect": spatial_dynamic}


def _tensor(spec, batched: bool, dtype: np.dtype) -> dict[str, Any]:
    dims = spec.shape[1:] if batched else spec.shape
    return {"name": spec.name, "type": _TYPES[np.dtype(dtype)],
            "dims": [-1 if d is None else int(d) for d in dims]}


def _metadata(eng: Engine, kind: str, layout: dict, opts: RepoOptions) -> dict[str, Any]:
    meta = {k: v for k, v in eng.metadata.items() if k in _KEEP}
    meta["kind"] = kind
    if kind == "detector" and layout["rect"]:
        meta.setdefault("rect", True)
    meta["wire"] = {"input_scale": INPUT_SCALE if layout["uint8"] else 0,
                    "outputs": opts.outputs,
                    "candidates": opts.candidates if kind == "detector" else 0}
    meta["source"] = Path(eng.path).name
    return meta


# what the detector and the enhancer read from a sidecar (the rest stays in the file)
_KEEP = {"names", "stride", "imgsz", "rect", "multiple", "min_size", "steps", "precision",
         "weights", "task", "checkpoint_sha256"}


def model_config(name: str, layout: dict, meta: dict, opts: RepoOptions) -> str:
    """config.pbtxt text (protobuf text format)."""
    lines = [f'name: "{name}"']
    if opts.server == "cpu":
        lines.append('backend: "python"')
    else:
        lines.append('platform: "onnxruntime_onnx"')
    lines.append(f"max_batch_size: {layout['max_batch']}")
    lines.append(_tensors("input", layout["inputs"]))
    lines.append(_tensors("output", layout["outputs"]))
    if layout["max_batch"]:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {opts.queue_delay_us} }}")
    kind = "KIND_CPU" if opts.server == "cpu" else "KIND_GPU"
    lines.append(f"instance_group [ {{ count: {opts.instances} kind: {kind} }} ]")
    if opts.server == "gpu" and opts.runtime == "tensorrt":
        lines.append('optimization { execution_accelerators { gpu_execution_accelerator: [ '
                     '{ name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } }')
    params = {"duskwatch": json.dumps(meta, sort_keys=True, default=str)}
    if opts.server == "cpu":
        params.update(runtime=opts.runtime, threads=str(opts.threads), device=opts.device)
    for key, value in params.items():
        lines.append(f'parameters {{ key: "{key}" value: {{ string_value: {_quote(value)} }} }}')
    return "\n".join(lines) + "\n"


def _tensors(kind: str, tensors: list[dict]) -> str:
    items = [f'{{ name: "{t["name"]}" data_type: {t["type"]} dims: {t["dims"]} }}' for t in tensors]
    return f"{kind} [ " + ", ".join(items) + " ]"


def _quote(text: str) -> str:
    """A protobuf text-format string literal (UTF-8; quotes, backslashes and controls escaped)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


# -- the wire encoding, folded into the graph --------------------------------------------------
def wrap_onnx(src: Path, dst: Path, wire_uint8: bool, outputs_fp16: bool,
              candidates: int = 0) -> Path:
    """Copy ``src`` to ``dst``, with a uint8 input (Cast + Mul 1/255 in front), only the
    ``candidates`` best anchors of a YOLO head (:func:`_keep_candidates`) and float16 outputs
    (a Cast behind) when asked; names stay as they were."""
    if not wire_uint8 and not outputs_fp16 and not candidates:
        shutil.copyfile(src, dst)
        return dst
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    if candidates:
        _keep_candidates(model, candidates)
    nodes = []
    if wire_uint8:
        for inp in g.input:
            inner = f"{inp.name}__float"
            _rename_uses(g, inp.name, inner)
            inp.type.tensor_type.elem_type = TensorProto.UINT8
            scale = f"{inp.name}__scale"
            g.initializer.append(numpy_helper.from_array(np.array(1 / INPUT_SCALE, np.float32), scale))
            nodes += [helper.make_node("Cast", [inp.name], [f"{inp.name}__cast"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{inp.name}__cast", scale], [inner])]
    for node in reversed(nodes):
        g.node.insert(0, node)
    if outputs_fp16:
        for out in g.output:
            if out.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            inner = f"{out.name}__float"
            for node in g.node:
                node.output[:] = [inner if o == out.name else o for o in node.output]
            g.node.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT16))
            out.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def _rename_uses(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        for attr in node.attribute:  # subgraphs (If/Loop) read outer names too
            if attr.g is not None and attr.g.node:
                _rename_uses(attr.g, old, new)


def _keep_candidates(model, k: int) -> None:
    """Behind the YOLO head ``(N, 4 + nc, A)``: keep the ``k`` anchors with the highest class
    score (all of them when ``A <= k``), in score order: ``(N, 4 + nc, min(k, A))``.

    NMS on the client then gives the same detections as on the whole head whenever an image has
    at most ``k`` anchors above the confidence threshold (the client drops the rest anyway);
    the return trip shrinks from ``A`` columns (5040 at 384x640) to ``k``."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = model.graph
    out = g.output[0]
    width = out.type.tensor_type.shape.dim[1].dim_value
    if not width:
        raise ExportError(f"{out.name}: the head's width (4 + classes) is not static; "
                          "--candidates needs it")
    full = f"{out.name}__all"
    for node in g.node:
        node.output[:] = [full if o == out.name else o for o in node.output]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset < 13:
        raise ExportError(f"opset {opset}: --candidates needs ONNX opset 13 or newer; re-export")

    def const(name, values):
        g.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    p = f"{out.name}__cand"
    const(f"{p}_start", [4]), const(f"{p}_end", [2 ** 62]), const(f"{p}_axis1", [1])
    const(f"{p}_dim2", [2]), const(f"{p}_k", [k]), const(f"{p}_expand", [1, width, 1])
    reduce = (helper.make_node("ReduceMax", [f"{p}_cls", f"{p}_axis1"], [f"{p}_score"], keepdims=0)
              if opset >= 18 else
              helper.make_node("ReduceMax", [f"{p}_cls"], [f"{p}_score"], axes=[1], keepdims=0))
    g.node.extend([
        helper.make_node("Slice", [full, f"{p}_start", f"{p}_end", f"{p}_axis1"], [f"{p}_cls"]),
        reduce,
        helper.make_node("Shape", [full], [f"{p}_shape"]),
        helper.make_node("Gather", [f"{p}_shape", f"{p}_dim2"], [f"{p}_anchors"], axis=0),
        helper.make_node("Min", [f"{p}_anchors", f"{p}_k"], [f"{p}_kk"]),
        helper.make_node("TopK", [f"{p}_score", f"{p}_kk"], [f"{p}_top", f"{p}_idx"], axis=-1,
                         largest=1, sorted=1),
        helper.make_node("Unsqueeze", [f"{p}_idx", f"{p}_axis1"], [f"{p}_idx3"]),
        helper.make_node("Expand", [f"{p}_idx3", f"{p}_expand"], [f"{p}_gather"]),
        helper.make_node("GatherElements", [full, f"{p}_gather"], [out.name], axis=2),
    ])
    out.type.tensor_type.shape.dim[2].Clear()
    out.type.tensor_type.shape.dim[2].dim_param = "candidates"
