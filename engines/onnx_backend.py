"""ONNX Runtime backend (``.onnx``).

Execution providers are picked from ``device``: ``cpu`` -> CPU only; ``cuda:N`` -> TensorRT and
CUDA providers on GPU ``N`` when this ONNX Runtime build has them (an error otherwise);
``auto`` -> the GPU providers when present, else CPU. The engine's metadata is the JSON sidecar
merged over the model's own ``metadata_props`` (ultralytics writes ``names``, ``stride``,
``imgsz`` there), so an ONNX file exported by ultralytics works without a sidecar.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engines.base import Engine, EngineError, TensorSpec

log = logging.getLogger(__name__)

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

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None, **_: Any):
        super().__init__(path)
        import onnxruntime as ort

        self.providers = select_providers(ort.get_available_providers(), device, self.path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        self._session = _open_session(ort, self.path, opts, self.providers)
        self.device = "cpu" if self._session.get_providers()[0] == "CPUExecutionProvider" else device
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
    """Execution providers for ``device`` from those this ONNX Runtime build has."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu_id = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    gpu = [(p, {"device_id": gpu_id}) for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
           if p in available]
    if device.startswith("cuda") and not gpu:
        raise EngineError(
            f"{path}: device {device} asked for, but this ONNX Runtime has only {available}; "
            "install onnxruntime-gpu, or use --device cpu, or a .engine/.torchscript engine"
        )
    return [*gpu, "CPUExecutionProvider"]


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
