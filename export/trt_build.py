"""Build a TensorRT engine from an ONNX file (TensorRT 10 Python API).

A chain of small steps, as in Polygraphy's loaders: :func:`parse_onnx` -> :func:`configure` ->
:func:`build` -> :func:`save`, joined by :func:`build_engine`. Every ``None``/``False`` a
TensorRT call returns becomes an :class:`export.errors.ExportError` naming the call.

* **Timing cache.** Layer timings are kept in ``<out>.timing.cache`` (or ``--timing-cache``):
  a rebuild on the same GPU and TensorRT version skips most tactic profiling.
* **INT8.** Post-training calibration with the entropy calibrator (``IInt8EntropyCalibrator2``:
  per-tensor scales that minimise the KL divergence between the fp32 and the quantised
  activation histograms; Migacz, "8-bit Inference with TensorRT", GTC 2017) fed from a folder of
  frames, letterboxed exactly as at run time. The scales are cached in ``<calib-dir>/
  calibration.cache`` and reused by later builds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from export.errors import ExportError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass(frozen=True)
class BuildOptions:
    fp16: bool = False
    int8: bool = False
    calib_dir: Path | None = None
    calib_batch: int = 8
    calib_max_images: int = 512
    workspace_gb: float = 4.0
    batch: int = 1  # static batch, or the profile's max when dynamic
    dynamic: bool = False
    imgsz: int = 640
    timing_cache: Path | None = None


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ExportError(
            "TensorRT is not installed: `pip install duskwatch[trt]` on the machine with the "
            "NVIDIA GPU that will run the engine (engines are built for one GPU and TensorRT "
            "version), or export --format onnx instead") from exc
    return trt


def preflight() -> None:
    """Fail before any slow step when this machine cannot build TensorRT engines."""
    _trt()
    import torch

    if not torch.cuda.is_available():
        raise ExportError("building a TensorRT engine needs a CUDA GPU (the engine is built for "
                          "the GPU it will run on); export --format onnx on this machine")


def _need(value: Any, call: str) -> Any:
    if value is None or value is False:
        raise ExportError(f"TensorRT {call} failed (returned {value!r}); see the TensorRT log above")
    return value


# -- steps -----------------------------------------------------------------------------------
def parse_onnx(trt: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any, Any]:
    """(builder, network, parser) with the ONNX graph parsed into the network."""
    builder = _need(trt.Builder(logger), "Builder()")
    network = _need(builder.create_network(0), "create_network")  # explicit batch in TRT 10
    parser = _need(trt.OnnxParser(network, logger), "OnnxParser()")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT cannot parse the ONNX graph: {errors}")
    return builder, network, parser


def configure(trt: Any, builder: Any, network: Any, opts: BuildOptions,
              cache_bytes: bytes, progress: Callable[[str], None]) -> tuple[Any, Any]:
    """(builder config, the timing cache attached to it)."""
    config = _need(builder.create_builder_config(), "create_builder_config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_gb * (1 << 30)))
    if opts.fp16 or opts.int8:
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast fp16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = _profile(builder, network, opts)
    if _need(config.add_optimization_profile(profile), "add_optimization_profile") < 0:
        raise ExportError("TensorRT add_optimization_profile returned an invalid index")
    if opts.int8:
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt, opts)
        if opts.dynamic:
            _need(config.set_calibration_profile(profile), "set_calibration_profile")
    cache = _need(config.create_timing_cache(cache_bytes), "create_timing_cache")
    _need(config.set_timing_cache(cache, False), "set_timing_cache")
    monitor = make_progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    return config, cache


def _profile(builder: Any, network: Any, opts: BuildOptions) -> Any:
    profile = _need(builder.create_optimization_profile(), "create_optimization_profile")
    for i in range(network.num_inputs):
        t = network.get_input(i)
        c = int(t.shape[1]) if int(t.shape[1]) > 0 else 3
        lo = (1 if opts.dynamic else opts.batch, c, opts.imgsz, opts.imgsz)
        hi = (opts.batch, c, opts.imgsz, opts.imgsz)
        profile.set_shape(t.name, lo, hi, hi)
    return profile


def build(builder: Any, network: Any, config: Any) -> bytes:
    blob = builder.build_serialized_network(network, config)
    return bytes(_need(blob, "build_serialized_network"))


def save(blob: bytes, out: Path) -> None:
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(blob)
    tmp.replace(out)  # never leave a truncated engine under the real name


def build_engine(onnx_path: Path, out: Path, opts: BuildOptions,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """ONNX -> serialized engine at ``out``. Returns sidecar fields (TensorRT version, GPU)."""
    preflight()
    trt = _trt()
    import torch

    say = progress or (lambda m: log.info("%s", m))
    logger = trt.Logger(trt.Logger.WARNING)
    cache_path = opts.timing_cache or out.with_name(out.name + ".timing.cache")
    cache_bytes = cache_path.read_bytes() if cache_path.is_file() else b""
    say(f"timing cache {cache_path} ({'reused' if cache_bytes else 'new'})")
    builder, network, _parser = parse_onnx(trt, logger, onnx_path)
    config, cache = configure(trt, builder, network, opts, cache_bytes, say)
    blob = build(builder, network, config)
    save(blob, out)
    updated = config.get_timing_cache() or cache  # the builder added this build's timings
    cache_path.write_bytes(bytes(_need(updated.serialize(), "timing cache serialize")))
    say(f"engine {out} ({len(blob) / 1e6:.1f} MB); timing cache saved to {cache_path}")
    return {"tensorrt_version": trt.__version__, "gpu": torch.cuda.get_device_name(0),
            "timing_cache": str(cache_path)}


# -- progress --------------------------------------------------------------------------------
def make_progress_monitor(trt: Any, progress: Callable[[str], None]) -> Any:
    """A ``trt.IProgressMonitor`` that reports each top-level build phase, or None if absent."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                progress(f"TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            pass

    return _Monitor()


# -- INT8 calibration ------------------------------------------------------------------------
def calibration_frames(calib_dir: Path, limit: int) -> list[Path]:
    files = sorted(p for p in Path(calib_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ExportError(f"--calib-dir {calib_dir}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                          "fill it with a few hundred frames from the cameras")
    return files[:limit]


def calibration_batches(files: list[Path], imgsz: int, batch: int) -> Iterator[np.ndarray]:
    """Letterboxed float32 NCHW batches, as the detector feeds the engine at run time."""
    import cv2

    from engines.letterbox import letterbox_cpu

    for i in range(0, len(files) - batch + 1, batch):
        images = []
        for f in files[i:i + batch]:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise ExportError(f"{f}: cannot read this calibration image; remove it")
            images.append(img)
        yield letterbox_cpu(images, (imgsz, imgsz))[0]


def make_calibrator(trt: Any, opts: BuildOptions) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``opts.calib_dir`` with a cache file in that folder."""
    import torch

    files = calibration_frames(opts.calib_dir, opts.calib_max_images)
    # a static engine calibrates at its own batch; a dynamic one at most at the profile's max
    batch = min(opts.calib_batch, opts.batch) if opts.dynamic else opts.batch
    if len(files) < batch:
        raise ExportError(f"--calib-dir {opts.calib_dir}: {len(files)} images, fewer than one "
                          f"calibration batch ({batch}); add more frames (a few hundred is good)")
    cache_file = Path(opts.calib_dir) / "calibration.cache"
    batches = calibration_batches(files, opts.imgsz, batch)

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._device_batch = None
            self._done = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            host = next(batches, None)
            if host is None:
                return None
            self._device_batch = torch.from_numpy(host).cuda().contiguous()
            self._done += batch
            log.info("INT8 calibration: %d/%d frames", self._done, len(files))
            return [int(self._device_batch.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            if cache_file.is_file():
                log.info("INT8 calibration: reusing %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))
            log.info("INT8 calibration cache written to %s", cache_file)

    return _EntropyCalibrator()
