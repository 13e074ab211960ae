"""OpenVINO backend: ``.xml`` IR engines, or an ``.onnx`` file read directly (``backend="openvino"``).

OpenVINO is the fastest CPU runtime for the YOLO detector here (see docs/BENCHMARKS.md): its
CPU plugin runs the convolutions in bf16 on CPUs that have AVX-512 BF16 or AMX (its default
``INFERENCE_PRECISION_HINT`` there; f32 elsewhere), at the float model's accuracy. The engine
reports what it really runs on: ``device`` (``cpu``) and ``provider`` (``openvino:CPU/bf16``,
``openvino:CPU/f32``, ...).

``device`` takes the project's words: ``auto`` and ``cpu`` run on OpenVINO's CPU plugin;
``cuda:N`` is refused (OpenVINO does not drive NVIDIA GPUs: use an ``.onnx`` engine with
onnxruntime-gpu, or a TensorRT/torch engine there). ``precision`` is ``auto`` (the plugin's
default), ``f32`` or ``bf16``. ``threads`` caps the inference threads (default: all cores).
``hint`` is ``auto`` (a batch of two or more is split over the plugin's THROUGHPUT streams, one
core each; a single image runs on one request using every core), ``LATENCY`` or
``THROUGHPUT``; when not given, the sidecar's ``openvino_hint`` (so a deployment can set it
without code), else ``auto``.

Calls are serialised under a lock, so an engine may be shared between threads (as with the
other backends). The model's metadata is the sidecar merged over the
``rt_info`` ultralytics or :mod:`export.yolo` stored in the IR (``names``, ``stride``, ``imgsz``).
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from engines.base import Engine, EngineError, TensorSpec

PRECISIONS = {"auto": None, "f32": "f32", "fp32": "f32", "bf16": "bf16"}
#: Most input sizes a dynamic-size model is compiled for (see ``OpenVinoEngine._fixed_hw``).
MAX_FIXED_SIZES = 8

_OV_TYPES = {
    "f32": np.float32, "f16": np.float16, "f64": np.float64, "u8": np.uint8, "i8": np.int8,
    "i32": np.int32, "i64": np.int64, "boolean": np.bool_,
}


class OpenVinoEngine(Engine):
    """A model compiled by OpenVINO for its CPU plugin."""

    backend = "openvino"

    def __init__(self, path: Path, device: str = "auto", threads: int | None = None,
                 precision: str = "auto", hint: str | None = None, **_: Any):
        super().__init__(path)
        ov = _import_openvino(self.path)
        self.ov_device = ov_device_for(device, self.path)
        self.hint = check_hint(hint or self.metadata.get("openvino_hint", "auto"), self.path)
        self._core = ov.Core()
        self._model = _read_model(self._core, self.path)
        self._precision, self._threads = precision, threads
        self._compiled: dict[tuple, Any] = {}
        self._requests: dict[tuple, list[Any]] = {}
        self._lock = threading.Lock()
        first = ("THROUGHPUT" if self.hint == "THROUGHPUT" else "LATENCY", None)
        self._requests_for(*first)
        self.inputs = [_spec(p) for p in self._model.inputs]
        self.outputs = [_spec(p) for p in self._model.outputs]
        self.metadata = {**ir_metadata(self._model), **onnx_file_metadata(self.path),
                         **self.metadata}
        self.device = "cpu"
        self.precision = _runtime_precision(self._compiled[first])
        if any(op.get_type_name() == "FakeQuantize" for op in self._model.get_ops()):
            self.precision = f"int8+{self.precision}"  # NNCF's int8 IR: the rest in that precision
        self.provider = f"openvino:{self.ov_device}/{self.precision}"

    def _requests_for(self, hint: str, hw: tuple[int, int] | None) -> list[Any]:
        """The infer requests of the model compiled with ``hint`` (compiled on first use): one
        for LATENCY, one per stream for THROUGHPUT. ``hw``: a copy of the model with that input
        height and width fixed (the batch stays dynamic), or ``None`` for the model as it is."""
        key = (hint, hw)
        if key not in self._requests:
            model = self._model if hw is None else _with_input_hw(self._model, hw)
            config = compile_config(self._precision, self._threads, hint, self.path)
            compiled = _compile(self._core, model, self.ov_device, config, self.path)
            count = 1 if hint == "LATENCY" else max(
                1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._compiled[key] = compiled
            self._requests[key] = [compiled.create_infer_request() for _ in range(count)]
        return self._requests[key]

    def _fixed_hw(self, arrays: Mapping[str, np.ndarray]) -> tuple[int, int] | None:
        """The input height and width to compile for: a model whose height and width are
        dynamic runs ~13% faster compiled for the size it is fed (static kernels and memory
        plan; docs/BENCHMARKS.md). Cameras keep their size, so this compiles once per size; past
        :data:`MAX_FIXED_SIZES` sizes (a photo folder of many shapes) the dynamic model runs."""
        spec = self.inputs[0]
        if len(arrays) != 1 or len(spec.shape) != 4 or spec.shape[2:] != (None, None):
            return None
        hw = tuple(int(d) for d in next(iter(arrays.values())).shape[2:4])
        sizes = {k[1] for k in self._requests if k[1] is not None}
        return hw if hw in sizes or len(sizes) < MAX_FIXED_SIZES else None

    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        arrays = {name: np.ascontiguousarray(_to_numpy(v)) for name, v in feed.items()}
        batch = next(iter(arrays.values())).shape[0] if arrays else 1
        with self._lock:
            hw = self._fixed_hw(arrays)
            split = self.hint == "THROUGHPUT" or (
                self.hint == "auto" and self._splits_evenly(batch, hw))
            if not split:
                request = self._requests_for("LATENCY", hw)[0]
                result = request.infer(arrays, share_inputs=True, share_outputs=False)
                return {o.name: np.asarray(result[i]) for i, o in enumerate(self.outputs)}
            return self._run_streams(arrays, batch, self._requests_for("THROUGHPUT", hw))

    def _splits_evenly(self, batch: int, hw: tuple[int, int] | None) -> bool:
        """Whether ``auto`` splits this batch over the THROUGHPUT streams: any batch of two or
        more. (Running uneven batches, 3 images on 2 streams, as one 2-thread request instead was
        tried and measured worse in the pipeline: 48-53 frames per CPU second against 56-60;
        docs/BENCHMARKS.md.)"""
        return batch >= 2 and len(self._requests_for("THROUGHPUT", hw)) > 1

    def _run_streams(self, arrays: dict[str, np.ndarray], batch: int,
                     requests: list[Any]) -> dict[str, Any]:
        """Split the batch over the THROUGHPUT streams (one core each), run them at once, join.
        Independent single-threaded streams keep going when another process takes a core, where
        one parallel region would wait for its slowest thread."""
        parts = min(len(requests), batch)
        bounds = np.linspace(0, batch, parts + 1).astype(int)
        for request, lo, hi in zip(requests, bounds[:-1], bounds[1:]):
            request.start_async({k: v[lo:hi] for k, v in arrays.items()}, share_inputs=True)
        for request in requests[:parts]:
            request.wait()
        return {o.name: np.concatenate([r.get_output_tensor(i).data for r in requests[:parts]])
                for i, o in enumerate(self.outputs)}

    def close(self) -> None:
        self._requests.clear()
        self._compiled.clear()


def _with_input_hw(model: Any, hw: tuple[int, int]) -> Any:
    """A copy of the single-input NCHW ``model`` with its input height and width fixed."""
    import openvino as ov

    copy = model.clone()
    port = copy.inputs[0]
    shape = port.get_partial_shape()
    copy.reshape({port: ov.PartialShape([shape[0], shape[1], hw[0], hw[1]])})
    return copy


def check_hint(hint: str, path: Path | str = "engine") -> str:
    """``auto`` (LATENCY for single images, THROUGHPUT streams for batches), ``LATENCY`` or
    ``THROUGHPUT``."""
    value = hint.upper() if hint.lower() != "auto" else "auto"
    if value not in ("auto", "LATENCY", "THROUGHPUT"):
        raise EngineError(f"{path}: performance hint '{hint}' is not auto, LATENCY or THROUGHPUT")
    return value


def ov_device_for(device: str, path: Path | str = "engine") -> str:
    """The project's device word -> OpenVINO device name; CUDA devices are refused."""
    if device in ("auto", "cpu"):
        return "CPU"
    if device.startswith("cuda"):
        raise EngineError(
            f"{path}: device {device} asked for, but OpenVINO cannot run on NVIDIA GPUs; on a GPU "
            "box use the .onnx engine (`pip install 'duskwatch[gpu]'` for onnxruntime-gpu) or a "
            "TensorRT/torch engine (`duskwatch export yolo --format engine|torchscript`), or pass "
            "--device cpu"
        )
    raise EngineError(f"{path}: bad device '{device}'; use auto, cpu or cuda:N")


def compile_config(precision: str, threads: int | None, hint: str,
                   path: Path | str = "engine") -> dict[str, Any]:
    """The CPU plugin's compile properties for ``precision``, ``threads`` and the perf ``hint``."""
    if precision not in PRECISIONS:
        raise EngineError(f"{path}: precision '{precision}' is not one of {sorted(PRECISIONS)}")
    if hint not in ("LATENCY", "THROUGHPUT"):
        raise EngineError(f"{path}: performance hint '{hint}' is not LATENCY or THROUGHPUT")
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if PRECISIONS[precision]:
        config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def _import_openvino(path: Path) -> Any:
    try:
        import openvino
    except ImportError as exc:
        raise EngineError(
            f"{path}: the OpenVINO backend needs the openvino package ({exc}), a dependency of "
            "duskwatch: `pip install 'openvino>=2024.0'`; or use the .onnx engine on ONNX Runtime"
        ) from exc
    return openvino


def _read_model(core: Any, path: Path) -> Any:
    if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
        raise EngineError(f"{path}: the weights file {path.with_suffix('.bin').name} is missing "
                          "beside it; copy both files, or export again with `duskwatch export "
                          "yolo --format openvino`")
    try:
        return core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
        raise EngineError(
            f"{path}: OpenVINO cannot read this model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:300]}); it is truncated or not a model: export "
            "it again with `duskwatch export yolo ...`"
        ) from exc


def _compile(core: Any, model: Any, device: str, config: dict[str, Any], path: Path) -> Any:
    try:
        return core.compile_model(model, device, config)
    except Exception as exc:
        raise EngineError(f"{path}: OpenVINO could not compile the model for {device} with "
                          f"{config} ({str(exc).strip().splitlines()[0][:300]})") from exc


def _runtime_precision(compiled: Any) -> str:
    """What the plugin really computes in (``bf16`` on BF16/AMX CPUs unless told ``f32``)."""
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    except Exception:  # noqa: BLE001 - a plugin without the property
        return "?"


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    name = next(iter(port.get_names()), port.get_any_name())
    return TensorSpec(name, shape, np.dtype(_OV_TYPES.get(port.get_element_type().get_type_name(),
                                                          np.float32)))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def ir_metadata(model: Any) -> dict[str, Any]:
    """``names``, ``stride``, ``imgsz``... from the ``model_info`` rt_info section that
    ultralytics and :mod:`export.yolo` write into an IR; ``{}`` when there is none."""
    info = model.get_rt_info()
    if "model_info" not in list(info.keys()):
        return {}
    section = info["model_info"]
    items = section.items() if isinstance(section, dict) else []
    meta = {str(k): _literal(_plain(v)) for k, v in items}
    if isinstance(meta.get("names"), dict):
        meta["names"] = {str(k): v for k, v in meta["names"].items()}
    return meta


def _plain(value: Any) -> Any:
    """An rt_info value as a Python string (OpenVINO wraps them in ``OVAny``)."""
    return value.astype(str) if hasattr(value, "astype") else value


def onnx_file_metadata(path: Path) -> dict[str, Any]:
    """An ``.onnx`` file's ``metadata_props`` (OpenVINO does not carry them over); ``{}`` for an
    IR, or when the ``onnx`` package is absent (the sidecar then has to say what the model is)."""
    if path.suffix != ".onnx":
        return {}
    try:
        import onnx
    except ImportError:
        return {}
    props = onnx.load(str(path), load_external_data=False).metadata_props
    meta = {p.key: _literal(p.value) for p in props}
    if isinstance(meta.get("names"), dict):
        meta["names"] = {str(k): v for k, v in meta["names"].items()}
    return meta


def _literal(text: Any) -> Any:
    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return str(text)
