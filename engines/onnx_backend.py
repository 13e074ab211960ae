"""ONNX Runtime backend (``.onnx``).

Execution providers are picked from ``device``: ``cpu`` -> CPU only; ``cuda:N`` -> TensorRT and
CUDA providers on GPU ``N`` when this ONNX Runtime build has them (an error otherwise);
``auto`` -> the GPU providers when present, else CPU. The engine's metadata is the JSON sidecar
merged over the model's own ``metadata_props`` (ultralytics writes ``names``, ``stride``,
``imgsz`` there), so an ONNX file exported by ultralytics works without a sidecar.

A GPU that was asked for is never given up silently. ONNX Runtime itself falls back to the CPU
when the CUDA libraries its GPU build needs cannot be loaded (it only logs a warning), so after
the session is made the providers it *really* runs with are checked: ``cuda:N`` that ended up on
the CPU raises :class:`~engines.base.EngineError` naming the fix; ``auto`` on a machine that has
an NVIDIA GPU but a CPU-only ONNX Runtime logs a warning with the fix. The engine reports where
it runs: ``device`` (``cpu`` or ``cuda:N``) and ``provider`` (the first provider of the session).
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engines.base import Engine, EngineError, TensorSpec

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_DEVICE_HINT = "pass --device cpu (or set `engines.device: cpu` in the config)"
GPU_INSTALL_FIX = ("pip install 'duskwatch[gpu]' && pip uninstall -y onnxruntime && pip install "
                   "--force-reinstall --no-deps onnxruntime-gpu  (the CPU build and the GPU build "
                   "install the same `onnxruntime` module: the CPU one must go)")

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


class OnnxEngine(Engine):
    """An ONNX model run by ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None,
                 spin: bool = False, **_: Any):
        """``threads``: intra-op threads (default: ONNX Runtime's, one per core). ``spin``: let
        idle worker threads spin-wait for work (ONNX Runtime's own default). Off here: the
        daemon's cores are shared with its decoder threads, and spinning workers take their
        time; on the loaded 2-core development machine YOLO11n ran 2.3x faster without spinning
        (docs/BENCHMARKS.md)."""
        super().__init__(path)
        import onnxruntime as ort

        available = ort.get_available_providers()
        self.providers = select_providers(available, device, self.path)
        warn_if_gpu_unused(device, available, self.path)
        self._session = _open_session(ort, self.path, session_options(ort, threads, spin),
                                      self.providers)
        self.provider = self._session.get_providers()[0]
        self.device = placed_device(device, self._session.get_providers(), self.path)
        self.inputs = [_spec(a) for a in self._session.get_inputs()]
        self.outputs = [_spec(a) for a in self._session.get_outputs()]
        self.metadata = {**onnx_metadata(self._session), **self.metadata}

    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        arrays = {name: _to_numpy(value) for name, value in feed.items()}
        names = [o.name for o in self.outputs]
        return dict(zip(names, self._session.run(names, arrays)))

    def close(self) -> None:
        self._session = None


def select_providers(available: list[str], device: str, path: Path) -> list[Any]:
    """Execution providers for ``device`` from those this ONNX Runtime build has (``available``,
    ``onnxruntime.get_available_providers()``: the seam tests use)."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu_id = _gpu_index(device, path)
    gpu = [(p, {"device_id": gpu_id}) for p in GPU_PROVIDERS if p in available]
    if device.startswith("cuda") and not gpu:
        raise EngineError(
            f"{path}: device {device} asked for, but this ONNX Runtime is a CPU-only build "
            f"(providers {available}); install the GPU build: {GPU_INSTALL_FIX}; or {_DEVICE_HINT}, "
            "or use a .engine/.torchscript engine"
        )
    return [*gpu, "CPUExecutionProvider"]


def _gpu_index(device: str, path: Path) -> int:
    if device in ("auto", "cuda"):
        return 0
    head, _, index = device.partition(":")
    if head != "cuda" or not index.isdigit():
        raise EngineError(f"{path}: bad device '{device}'; use auto, cpu, cuda or cuda:N")
    return int(index)


def placed_device(asked: str, session_providers: list[str], path: Path) -> str:
    """Where the session really runs (``cpu`` or ``cuda:N``), refusing a GPU that was asked for
    and silently dropped: ONNX Runtime falls back to the CPU when its CUDA libraries fail to load."""
    first = session_providers[0] if session_providers else "CPUExecutionProvider"
    if first in GPU_PROVIDERS:
        return f"cuda:{_gpu_index(asked, path)}"
    if asked.startswith("cuda"):
        raise EngineError(
            f"{path}: device {asked} asked for, but ONNX Runtime could not start its CUDA provider "
            f"(the session has only {session_providers}: the CUDA/cuDNN libraries it needs did not "
            f"load; its log above says which). Install them: {GPU_INSTALL_FIX}; or {_DEVICE_HINT}"
        )
    return "cpu"


def nvidia_gpu_present(dev: str = "/dev") -> bool:
    """Whether this machine has an NVIDIA GPU (a ``/dev/nvidia<N>`` node), without CUDA."""
    try:
        return any(n[len("nvidia"):].isdigit() for n in os.listdir(dev) if n.startswith("nvidia"))
    except OSError:
        return False


def warn_if_gpu_unused(device: str, available: list[str], path: Path,
                       gpu_present: Any = nvidia_gpu_present) -> bool:
    """With ``device: auto``, warn (and return True) when the machine has an NVIDIA GPU that this
    CPU-only ONNX Runtime cannot use: the engine would otherwise run on the CPU unnoticed."""
    if device != "auto" or any(p in available for p in GPU_PROVIDERS) or not gpu_present():
        return False
    log.warning("%s: this machine has an NVIDIA GPU but ONNX Runtime is a CPU-only build, so the "
                "engine runs on the CPU; to use the GPU: %s", path, GPU_INSTALL_FIX)
    return True


def session_options(ort: Any, threads: int | None, spin: bool) -> Any:
    """``SessionOptions`` with the intra-op thread count and spin-wait policy."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


def _open_session(ort: Any, path: Path, opts: Any, providers: list[Any]) -> Any:
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for corrupt files
        raise EngineError(
            f"{path}: ONNX Runtime cannot load this file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}); it is truncated or not an ONNX model: export it "
            "again with `duskwatch export ...`"
        ) from exc


def _spec(arg: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES.get(arg.type, np.float32)))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor: ORT here reads host memory
        return value.detach().cpu().numpy()
    return np.asarray(value)


def onnx_metadata(session: Any) -> dict[str, Any]:
    """The model's ``metadata_props``, with Python-literal values (ultralytics) parsed."""
    raw = session.get_modelmeta().custom_metadata_map
    meta: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            meta[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            meta[key] = text
    if isinstance(meta.get("names"), dict):
        meta["names"] = {str(k): v for k, v in meta["names"].items()}
    return meta
