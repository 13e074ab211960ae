"""PyTorch backend (``.torchscript`` from ``torch.jit``, ``.pt2`` from ``torch.export``).

On CUDA the module runs in fp16 with channels-last activations, and each batch shape is
captured once into a CUDA graph and replayed afterwards: at small batches Python's kernel
launch overhead otherwise costs several times the GPU work. Feeds may be numpy arrays (results
come back as numpy) or torch tensors (results stay torch tensors on the engine's device, so a
GPU pipeline never copies through the host). The reported input dtypes are what callers feed
(float32); the fp16 cast happens inside.

Input/output specs come from the sidecar (``inputs``/``outputs`` lists of
``{"name", "shape", "dtype"}``), else from what the file itself records: the example shapes of
a ``torch.export`` program, or ultralytics' ``config.txt`` (``batch``, ``imgsz``) in a
TorchScript file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engines.base import Engine, EngineError, TensorSpec
from engines.device import resolve_device

log = logging.getLogger(__name__)


class TorchEngine(Engine):
    """A TorchScript or ``torch.export`` module run by PyTorch."""

    backend = "torch"

    def __init__(self, path: Path, device: str = "auto", half: bool | None = None,
                 cuda_graph: bool = True, **_: Any):
        super().__init__(path)
        import torch

        self._torch = torch
        self.device = resolve_device(device, self.path)
        on_cuda = self.device.type == "cuda"
        if half is None:  # fp16 on CUDA; a module exported in fp16 needs fp16 inputs anywhere
            half = on_cuda or self.metadata.get("precision") == "fp16"
        self.half = bool(half)
        self.channels_last = on_cuda
        self.cuda_graph = on_cuda and cuda_graph
        self.provider = "torch:" + "+".join(
            [self.device.type] + ["fp16"] * self.half + ["cuda-graph"] * self.cuda_graph)
        module, file_meta, specs = _load(self.path, self.device)
        self.metadata = {**file_meta, **self.metadata}
        self.inputs, self.outputs = _specs(self.metadata, specs, self.path)
        if self.half:
            module = module.half()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._graphs: dict[tuple, _CudaGraph] = {}

    # -- running ---------------------------------------------------------------------------
    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        as_torch = any(isinstance(v, torch.Tensor) for v in feed.values())
        args = [self._prepare(feed[s.name]) for s in self.inputs]
        try:
            with torch.inference_mode():
                outs = self._forward(args)
        except RuntimeError as exc:  # e.g. a module traced with tensors pinned to another device
            raise EngineError(
                f"{self.path}: the module failed on {self.device} ({str(exc).splitlines()[0][:300]}); "
                "if it was exported on another device or precision, re-export it on this machine "
                "(`duskwatch export ... --format torchscript`) or use --device cpu"
            ) from exc
        outs = [o.float() if o.is_floating_point() else o for o in outs]
        if not as_torch:
            outs = [o.cpu().numpy() for o in outs]
        names = [s.name for s in self.outputs] or [f"output{i}" for i in range(len(outs))]
        if len(names) != len(outs):
            raise EngineError(f"{self.path}: module returned {len(outs)} outputs, the sidecar "
                              f"lists {names}; re-export the engine")
        return dict(zip(names, outs))

    def _prepare(self, value: Any) -> Any:
        torch = self._torch
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        t = t.to(self.device, non_blocking=True)
        if t.is_floating_point():
            t = t.half() if self.half else t.float()
        if self.channels_last and t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _forward(self, args: list[Any]) -> list[Any]:
        if not self.cuda_graph:
            return _flatten(self._module(*args))
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        graph = self._graphs.get(key)
        if graph is None:
            log.info("%s: capturing a CUDA graph for input shapes %s", self.path.name,
                     [k[0] for k in key])
            graph = self._graphs[key] = _CudaGraph(self._module, args)
        return graph(args)

    def close(self) -> None:
        self._graphs.clear()
        self._module = None


class _CudaGraph:
    """One CUDA graph for one set of input shapes: static inputs in, static outputs out.

    Capture follows the PyTorch recipe: warm up on a side stream (lazy init, cuDNN autotune),
    then record one forward into the graph. Replay copies new inputs into the static buffers;
    outputs are cloned so that the next replay does not overwrite what a caller still holds.
    """

    def __init__(self, module: Any, example: list[Any], warmup: int = 3):
        import torch

        self._static_in = [a.clone() for a in example]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                module(*self._static_in)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = _flatten(module(*self._static_in))

    def __call__(self, args: list[Any]) -> list[Any]:
        for dst, src in zip(self._static_in, args):
            dst.copy_(src)
        self._graph.replay()
        return [o.clone() for o in self._static_out]


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flatten(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flatten(o)]
    return [out]


# -- loading ---------------------------------------------------------------------------------
def _load(path: Path, device: Any) -> tuple[Any, dict, list | None]:
    """(module, metadata recorded in the file, input specs recorded in the file or None)."""
    try:
        if path.suffix == ".pt2":
            return _load_exported(path, device)
        return _load_torchscript(path, device)
    except EngineError:
        raise
    except Exception as exc:  # torch raises many types for a corrupt archive
        raise EngineError(
            f"{path}: PyTorch cannot load this file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}); it is truncated or not a "
            f"{path.suffix} module: export it again with `duskwatch export ...`"
        ) from exc


def _load_torchscript(path: Path, device: Any) -> tuple[Any, dict, None]:
    import torch

    extra = {"config.txt": ""}
    module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    module.eval()
    meta: dict[str, Any] = {}
    if extra["config.txt"]:
        try:
            meta = json.loads(extra["config.txt"])
        except ValueError:
            log.warning("%s: ignoring unreadable config.txt metadata", path)
    return module, meta, None


def _load_exported(path: Path, device: Any) -> tuple[Any, dict, list]:
    import torch

    program = torch.export.load(str(path))
    specs = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            shape = tuple(d if isinstance(d, int) else None for d in getattr(val, "shape", ()))
            dtype = str(getattr(val, "dtype", "torch.float32")).replace("torch.", "")
            dtype = "float32" if dtype in ("float16", "bfloat16") else dtype
            specs.append(TensorSpec(node.name, shape, np.dtype(dtype)))
    module = program.module().to(device)
    return module, {}, specs


def _specs(meta: dict, file_specs: list | None, path: Path
           ) -> tuple[list[TensorSpec], list[TensorSpec]]:
    if meta.get("inputs"):
        return _parse_specs(meta["inputs"], path), _parse_specs(meta.get("outputs", []), path)
    if file_specs:
        return file_specs, []
    if "imgsz" in meta:  # an ultralytics TorchScript file without a sidecar
        h, w = _hw(meta["imgsz"])
        batch = None if meta.get("args", {}).get("dynamic") else int(meta.get("batch", 1))
        return [TensorSpec("images", (batch, 3, h, w), np.dtype("float32"))], \
               [TensorSpec("output0", (batch, None, None), np.dtype("float32"))]
    raise EngineError(f"{path}: no input description (neither a sidecar {path.name}.json with "
                      "'inputs' nor metadata in the file); re-export it with `duskwatch export`")


def _parse_specs(items: list, path: Path) -> list[TensorSpec]:
    try:
        return [TensorSpec(i["name"], tuple(None if d is None else int(d) for d in i["shape"]),
                           np.dtype(i.get("dtype", "float32"))) for i in items]
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"{path}: sidecar inputs/outputs are malformed ({exc}); "
                          "re-export the engine") from exc


def _hw(imgsz: Any) -> tuple[int, int]:
    if isinstance(imgsz, int):
        return imgsz, imgsz
    return int(imgsz[0]), int(imgsz[1])
