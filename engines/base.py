"""The one engine interface every backend implements.

Modelled on Polygraphy's runners: an engine is opened from a file, reports its inputs and
outputs (name, shape, dtype), checks what it is fed against that metadata, and runs a batch::

    with open_engine("yolo11n.onnx") as eng:
        print(eng.inputs, eng.outputs, eng.metadata)
        out = eng.infer({"images": batch})

Dynamic dimensions are reported as ``None``. Arrays are numpy arrays; the torch and TensorRT
backends also accept and return ``torch.Tensor`` so that device memory stays on the device
between stages. Backends are imported lazily: a CPU install works without torch or TensorRT.

Every export writes a JSON *sidecar* beside the engine file (``yolo11n.onnx`` ->
``yolo11n.onnx.json``) describing what the engine is (detector or enhancer, input size, class
names, precision, and for TensorRT the version and GPU it was built for).
"""

from __future__ import annotations

import abc
import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class EngineError(RuntimeError):
    """An engine could not be opened or was fed the wrong thing; the message says what to do."""


class EngineUnavailable(EngineError):
    """The engine is fine but where it runs cannot be reached now (an inference server that is
    down): a transient failure, unlike a wrong file or a wrong config."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``None`` for a dynamic dimension) and numpy dtype of one engine tensor."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}]:{np.dtype(self.dtype).name}"


class Engine(abc.ABC):
    """Base class: subclasses set ``inputs``, ``outputs``, ``metadata`` and implement ``_run``.

    Every engine also says where it really runs (after any fallback a runtime made): ``device``
    (``cpu`` or ``cuda:N``) and ``provider``, the runtime's own name for the executor
    (``CPUExecutionProvider``, ``CUDAExecutionProvider``, ``openvino:CPU/bf16``, ...).
    :meth:`placement` gives the three together for logs, metrics and benchmark summaries.
    """

    backend: str = "?"
    device: Any = "cpu"
    provider: str = "?"

    def __init__(self, path: Path):
        self.path = Path(path)
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []
        self.metadata: dict[str, Any] = read_sidecar(self.path)

    def placement(self) -> dict[str, str]:
        """``{"backend", "device", "provider"}``: where this engine really runs."""
        return {"backend": self.backend, "device": str(self.device), "provider": str(self.provider)}

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Release the runtime's resources. Safe to call twice."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running ---------------------------------------------------------------------------
    @property
    def max_batch(self) -> int | None:
        """Largest batch the engine accepts, or ``None`` when the batch dimension is dynamic."""
        return self.inputs[0].shape[0] if self.inputs else None

    def infer(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``feed`` against :attr:`inputs`, run, and return ``{output name: array}``."""
        self.check_feed(feed)
        return self._run(feed)

    @abc.abstractmethod
    def _run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """Run a checked feed; each backend implements this."""

    def check_feed(self, feed: Mapping[str, Any]) -> None:
        """Raise :class:`EngineError` naming the first mismatch in names, ranks, shapes or dtypes."""
        want = {s.name: s for s in self.inputs}
        missing = sorted(set(want) - set(feed))
        extra = sorted(set(feed) - set(want))
        if missing or extra:
            raise EngineError(
                f"{self.path.name}: feed has inputs {sorted(feed)} but the engine takes "
                f"{[s.describe() for s in self.inputs]} (missing {missing}, unexpected {extra})"
            )
        for name, spec in want.items():
            _check_tensor(self.path.name, spec, feed[name])


def _check_tensor(engine_name: str, spec: TensorSpec, value: Any) -> None:
    shape = tuple(value.shape)
    dtype = _dtype_of(value)
    if len(shape) != len(spec.shape):
        raise EngineError(
            f"{engine_name}: input '{spec.name}' has rank {len(shape)} (shape {shape}) but the "
            f"engine expects {spec.describe()}"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape)):
        if want is not None and got != want:
            what = "batch size" if axis == 0 else f"dimension {axis}"
            hint = (
                "; re-export with a larger --batch or --dynamic"
                if axis == 0 and got > want
                else ""
            )
            raise EngineError(
                f"{engine_name}: input '{spec.name}' {what} is {got} but the engine expects "
                f"{want} ({spec.describe()}, fed {shape}){hint}"
            )
    if dtype is not None and np.dtype(dtype) != np.dtype(spec.dtype):
        raise EngineError(
            f"{engine_name}: input '{spec.name}' has dtype {np.dtype(dtype).name} but the engine "
            f"expects {np.dtype(spec.dtype).name}; convert with .astype(np.{np.dtype(spec.dtype).name})"
        )


def _dtype_of(value: Any) -> np.dtype | None:
    """numpy dtype of a numpy array or a torch tensor (without importing torch)."""
    dt = getattr(value, "dtype", None)
    if dt is None:
        return None
    if isinstance(dt, np.dtype):
        return dt
    name = str(dt).replace("torch.", "")
    try:
        return np.dtype({"bfloat16": "float32"}.get(name, name))
    except TypeError:
        return None


# -- sidecar ---------------------------------------------------------------------------------
def sidecar_path(engine_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The engine's JSON sidecar as a dict, or ``{}`` when there is none."""
    sc = sidecar_path(engine_path)
    if not sc.exists():
        return {}
    try:
        return json.loads(sc.read_text())
    except (OSError, ValueError) as exc:
        raise EngineError(
            f"{sc}: sidecar is not valid JSON ({exc}); delete it and re-export the engine"
        ) from exc


def write_sidecar(engine_path: str | Path, meta: Mapping[str, Any]) -> Path:
    sc = sidecar_path(engine_path)
    sc.write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n")
    return sc


# -- opening ---------------------------------------------------------------------------------
_BACKENDS = {
    ".onnx": "engines.onnx_backend:OnnxEngine",
    ".xml": "engines.openvino_backend:OpenVinoEngine",
    ".engine": "engines.trt_backend:TensorRTEngine",
    ".plan": "engines.trt_backend:TensorRTEngine",
    ".torchscript": "engines.torch_backend:TorchEngine",
    ".pt2": "engines.torch_backend:TorchEngine",
}


#: Runtimes that may be asked for by name (``backend=``) instead of by the file's suffix, with
#: the suffixes each reads.
_NAMED_BACKENDS = {
    "onnxruntime": ("engines.onnx_backend:OnnxEngine", (".onnx",)),
    "openvino": ("engines.openvino_backend:OpenVinoEngine", (".onnx", ".xml")),
}


def open_engine(path: str | Path, device: str = "auto", backend: str | None = None,
                **options: Any) -> Engine:
    """Open ``path`` with the backend its suffix names, or with ``backend`` when given.

    ``path`` may also be a Triton URL, ``triton://HOST:PORT/MODEL`` (see
    :mod:`engines.triton_backend`): the model then runs on that server.

    ``device`` is ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda:N``. ``backend``
    picks a runtime for a file more than one can read: ``openvino`` runs an ``.onnx`` file on
    OpenVINO instead of ONNX Runtime. Raises :class:`EngineError` for a missing, empty or
    unreadable file, an unknown suffix, or a backend that cannot read the file.
    """
    if _is_url(path):
        return _open_url(str(path), device, backend, **options)
    p = Path(path)
    if p.suffix not in _BACKENDS:
        raise EngineError(
            f"{p}: unknown engine suffix '{p.suffix}'; use one of {sorted(_BACKENDS)} "
            "(.onnx ONNX Runtime, .xml OpenVINO, .engine/.plan TensorRT, .torchscript/.pt2 PyTorch)"
        )
    target = _backend_target(p, backend)
    if not p.is_file():
        raise EngineError(f"{p}: engine file not found; export one with `duskwatch export ...`")
    if p.stat().st_size == 0:
        raise EngineError(f"{p}: engine file is empty (an interrupted export?); export it again")
    module_name, cls_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(
            f"{p}: the {p.suffix} backend needs a package that is not installed ({exc}); "
            "install it (`pip install duskwatch[export]` for torch, `duskwatch[trt]` for TensorRT, "
            "`openvino` for OpenVINO) or export an .onnx engine instead"
        ) from exc
    return getattr(module, cls_name)(p, device=device, **options)


def _is_url(path: str | Path) -> bool:
    return isinstance(path, str) and "://" in path


def _open_url(url: str, device: str, backend: str | None, **options: Any) -> Engine:
    """A model on an inference server: ``triton://HOST:PORT/MODEL`` (:mod:`engines.triton_backend`)."""
    from engines.triton_backend import TritonEngine, is_triton_url

    if not is_triton_url(url):
        raise EngineError(f"{url.split('?')[0]}: an engine URL must be triton://HOST:PORT/MODEL "
                          "(gRPC) or triton+http://HOST:PORT/MODEL; anything else is a file path")
    if backend not in (None, "", "auto", "triton"):
        raise EngineError(f"{url}: backend '{backend}' cannot run a Triton URL; leave it out")
    return TritonEngine(url, device=device, **options)


def _backend_target(p: Path, backend: str | None) -> str:
    """``module:Class`` of the backend that opens ``p``: the suffix's, or the named one."""
    if backend in (None, "", "auto"):
        return _BACKENDS[p.suffix]
    if backend not in _NAMED_BACKENDS:
        raise EngineError(f"{p}: unknown backend '{backend}'; use one of {sorted(_NAMED_BACKENDS)} "
                          "(or leave it out: the file's suffix picks one)")
    target, suffixes = _NAMED_BACKENDS[backend]
    if p.suffix not in suffixes:
        raise EngineError(f"{p}: the {backend} backend reads {' and '.join(suffixes)} files, not "
                          f"{p.suffix}; leave the backend out to use the suffix's own")
    return target
