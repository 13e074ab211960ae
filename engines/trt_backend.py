"""TensorRT backend (``.engine`` / ``.plan``), written against the TensorRT 10 Python API.

TensorRT is imported lazily (a CPU install never needs it). Device buffers are torch CUDA
tensors, so a GPU pipeline passes tensors from stage to stage without host copies; numpy feeds
are uploaded and numpy results downloaded. Every ``None``/``False`` a TensorRT call returns is
turned into an :class:`EngineError` that names the call.

A serialized engine only runs on the TensorRT version and (by default) the GPU model it was
built for. The sidecar written by ``duskwatch export`` records both; a mismatch is reported
before deserializing, with the command that rebuilds the engine on this machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engines.base import Engine, EngineError, TensorSpec
from engines.device import resolve_device

log = logging.getLogger(__name__)


def import_tensorrt(path: Path | str = "engine") -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(
            f"{path}: TensorRT is not installed (`pip install duskwatch[trt]` on a machine with "
            "an NVIDIA GPU), or use the .onnx/.torchscript engine instead"
        ) from exc
    return trt


class TensorRTEngine(Engine):
    """A serialized TensorRT engine with one execution context on one CUDA stream."""

    backend = "tensorrt"

    def __init__(self, path: Path, device: str = "auto", **_: Any):
        super().__init__(path)
        trt = import_tensorrt(self.path)
        import torch

        self._trt, self._torch = trt, torch
        self.device = _cuda_device(device, self.path)
        self.provider = f"tensorrt:{trt.__version__}"
        check_compatibility(self.path, self.metadata, trt.__version__,
                            torch.cuda.get_device_name(self.device))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = _checked(trt.Runtime(self._logger), "trt.Runtime()", self.path)
        blob = _read_plan(self.path)
        with torch.cuda.device(self.device):
            self._engine = _checked(self._runtime.deserialize_cuda_engine(blob),
                                    "deserialize_cuda_engine", self.path, _rebuild_hint(self.path))
            self._context = _checked(self._engine.create_execution_context(),
                                     "create_execution_context", self.path)
        self._stream = torch.cuda.Stream(device=self.device)
        self.inputs, self.outputs = self._io_specs()

    def _io_specs(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        trt, eng = self._trt, self._engine
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            shape = tuple(None if d < 0 else int(d) for d in eng.get_tensor_shape(name))
            if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = self._profile_max_batch(name, shape)
            spec = TensorSpec(name, shape, np.dtype(trt.nptype(eng.get_tensor_dtype(name))))
            (inputs if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        return inputs, outputs

    def _profile_max_batch(self, name: str, shape: tuple) -> tuple:
        """A dynamic batch is reported as ``None``; its profile max is kept in :attr:`batch_limits`."""
        if shape and shape[0] is None:
            lo, _opt, hi = self._engine.get_tensor_profile_shape(name, 0)
            self.batch_limits = (int(lo[0]), int(hi[0]))
        return shape

    def check_feed(self, feed: Mapping[str, Any]) -> None:
        super().check_feed(feed)
        limits = getattr(self, "batch_limits", None)
        if limits:
            for spec in self.inputs:
                n = int(feed[spec.name].shape[0])
                if not limits[0] <= n <= limits[1]:
                    raise EngineError(
                        f"{self.path}: batch {n} is outside the engine's profile "
                        f"[{limits[0]}, {limits[1]}]; rebuild with a larger --batch "
                        "(`duskwatch export yolo ... --format engine --dynamic --batch N`)")

    # -- running ---------------------------------------------------------------------------
    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        torch = self._torch
        as_torch = any(isinstance(v, torch.Tensor) for v in feed.values())
        with torch.cuda.device(self.device):
            ins = {s.name: self._upload(feed[s.name], s) for s in self.inputs}
            for name, t in ins.items():
                _ok(self._context.set_input_shape(name, tuple(t.shape)),
                    f"set_input_shape({name}, {tuple(t.shape)})", self.path)
                _ok(self._context.set_tensor_address(name, t.data_ptr()),
                    f"set_tensor_address({name})", self.path)
            outs = {s.name: self._alloc_output(s) for s in self.outputs}
            for name, t in outs.items():
                _ok(self._context.set_tensor_address(name, t.data_ptr()),
                    f"set_tensor_address({name})", self.path)
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            _ok(self._context.execute_async_v3(self._stream.cuda_stream), "execute_async_v3",
                self.path)
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
        if as_torch:
            return outs
        return {k: v.cpu().numpy() for k, v in outs.items()}

    def _upload(self, value: Any, spec: TensorSpec) -> Any:
        torch = self._torch
        t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(value))
        return t.to(self.device, non_blocking=True).contiguous()

    def _alloc_output(self, spec: TensorSpec) -> Any:
        shape = tuple(self._context.get_tensor_shape(spec.name))
        if any(d < 0 for d in shape):
            raise EngineError(f"{self.path}: output '{spec.name}' shape {shape} is not resolved "
                              "after setting the input shapes; rebuild the engine")
        dtype = getattr(self._torch, np.dtype(spec.dtype).name)
        return self._torch.empty(shape, dtype=dtype, device=self.device)

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None


# -- helpers ---------------------------------------------------------------------------------
def check_compatibility(path: Path, meta: Mapping[str, Any], trt_version: str, gpu: str) -> None:
    """Raise when the sidecar says the engine was built for another TensorRT version or GPU."""
    built_trt = meta.get("tensorrt_version")
    built_gpu = meta.get("gpu")
    problems = []
    if built_trt and built_trt != trt_version:
        problems.append(f"TensorRT {built_trt} (this machine has {trt_version})")
    if built_gpu and built_gpu != gpu:
        problems.append(f"GPU '{built_gpu}' (this machine has '{gpu}')")
    if problems:
        raise EngineError(f"{path}: engine was built for {' and '.join(problems)}; TensorRT "
                          f"engines are not portable. {_rebuild_hint(path, meta)}")


def _rebuild_hint(path: Path, meta: Mapping[str, Any] | None = None) -> str:
    meta = meta or {}
    src = meta.get("source_weights", "yolo11n.pt")
    imgsz = meta.get("imgsz", [640, 640])
    imgsz = imgsz[0] if isinstance(imgsz, (list, tuple)) else imgsz
    return (f"Rebuild it on this machine: `duskwatch export yolo --weights {src} --imgsz {imgsz} "
            f"--format engine --out {path}` (or use the .onnx engine meanwhile)")


def _cuda_device(device: str, path: Path) -> Any:
    """The CUDA device a TensorRT engine runs on (``auto`` and ``cuda`` mean the first GPU)."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        raise EngineError(f"{path}: TensorRT engines run on a CUDA GPU only"
                          + (" and PyTorch sees none" if device != "cpu" else "")
                          + "; use the .onnx engine on this machine")
    dev = resolve_device("cuda:0" if device in ("auto", "cuda") else device, path)
    if dev.type != "cuda":
        raise EngineError(f"{path}: TensorRT engines run on a CUDA GPU only, not {device}")
    return dev


def _read_plan(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EngineError(f"{path}: cannot read engine ({exc})") from exc


def _checked(value: Any, call: str, path: Path, hint: str = "") -> Any:
    if value is None:
        raise EngineError(f"{path}: TensorRT {call} returned None (a truncated or incompatible "
                          f"engine file?). {hint or 'Rebuild the engine on this machine.'}")
    return value


def _ok(flag: bool, call: str, path: Path) -> None:
    if not flag:
        raise EngineError(f"{path}: TensorRT {call} failed; see the TensorRT log above")
