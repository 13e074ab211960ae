"""Export an ultralytics YOLO detector to ONNX, OpenVINO, TorchScript or TensorRT, with a sidecar.

The steps are small and lazy, in Polygraphy's style::

    model = load_yolo("yolo11n.pt")                  # or a .yaml: random weights
    export_yolo(model, "onnx", out="y.onnx", imgsz=640, batch=1)

ONNX and TorchScript go through ultralytics' own exporter (it knows the head's export mode);
it writes next to the weights, so it works in a temporary folder and the result is moved to
``out``. TensorRT engines are built from that ONNX by :mod:`export.trt_build`, OpenVINO IRs
converted from it by :mod:`export.openvino_ir`; ``--int8`` on ONNX quantises it with ONNX
Runtime (:mod:`export.quantize`), on OpenVINO with NNCF (:mod:`export.openvino_int8`), both
calibrated on real frames. Every export writes
``<out>.json`` (see :func:`sidecar`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from engines.about import version
from export.errors import ExportError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino", "engine", "torchscript")
SUFFIX = {"onnx": ".onnx", "openvino": ".xml", "engine": ".engine", "torchscript": ".torchscript"}
_BACKEND = {"onnx": "onnxruntime", "openvino": "openvino", "engine": "tensorrt",
            "torchscript": "torch"}
#: Formats whose dynamic export takes any input height and width ("rect" inference).
_RECT_FORMATS = ("onnx", "openvino")

RANDOM_WEIGHTS_BANNER = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  {weights} is a model definition, not trained weights: the exported engine has RANDOM
!!  weights and will not detect anything meaningful. Use it for tests and benchmarks only;
!!  pass trained weights (e.g. --weights yolo11n.pt) for real detection.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


@dataclass(frozen=True)
class ExportOptions:
    fmt: str = "onnx"
    imgsz: int = 640
    batch: int = 1
    dynamic: bool = False
    half: bool = False
    int8: bool = False
    calib_dir: Path | None = None
    calib_frames: int = 128
    workspace_gb: float = 4.0
    seed: int = 0

    def check(self) -> None:
        if self.fmt not in FORMATS:
            raise ExportError(f"unknown --format '{self.fmt}'; use one of {', '.join(FORMATS)}")
        if self.imgsz <= 0 or self.imgsz % 32:
            raise ExportError(f"--imgsz {self.imgsz} must be a positive multiple of 32 (the "
                              "model's largest stride)")
        if self.batch < 1:
            raise ExportError(f"--batch {self.batch} must be at least 1")
        if self.int8 and self.fmt not in ("engine", "onnx", "openvino"):
            raise ExportError(f"--int8 works with --format openvino (NNCF), onnx (ONNX Runtime "
                              f"QDQ) or engine (TensorRT), not {self.fmt}")
        if self.int8 and not self.calib_dir:
            raise ExportError("--int8 needs --calib-dir DIR, a folder of representative frames "
                              "(images or video clips from the cameras)")
        if self.int8 and self.half:
            raise ExportError("--int8 and --half exclude each other; pass one")


# -- loading ---------------------------------------------------------------------------------
def load_yolo(weights: str | Path, seed: int = 0) -> Any:
    """An ultralytics ``YOLO`` from trained ``.pt`` weights or a ``.yaml`` definition.

    A ``.yaml`` builds the model with random weights (seeded with ``seed``) after a loud
    warning. A missing ``.pt`` is fetched by ultralytics when it is an official name and the
    internet is reachable; otherwise :class:`ExportError` says what to do.
    """
    import torch
    from ultralytics import YOLO

    p = Path(weights)
    if p.suffix in (".yaml", ".yml"):
        log.warning(RANDOM_WEIGHTS_BANNER.format(weights=p.name))
        torch.manual_seed(seed)
        try:
            model = YOLO(str(p), task="detect")
        except FileNotFoundError as exc:
            raise ExportError(f"{p}: no such model definition ({exc}); use an ultralytics name "
                              "such as yolo11n.yaml or a path to a .yaml file") from exc
        _name_coco_classes(model)
        return model
    if p.suffix != ".pt":
        raise ExportError(f"{p}: --weights must be a .pt checkpoint or a .yaml definition")
    if not p.exists():
        _fetch_official(p)
    return YOLO(str(p), task="detect")


def _name_coco_classes(model: Any) -> None:
    """A bare 80-class definition has classes named "0".."79": give them COCO's names."""
    import ultralytics
    import yaml

    names = model.model.names
    if len(names) != 80 or any(str(v) != str(k) for k, v in names.items()):
        return
    coco = Path(ultralytics.__file__).parent / "cfg" / "datasets" / "coco.yaml"
    if coco.is_file():
        model.model.names = {int(k): v for k, v in yaml.safe_load(coco.read_text())["names"].items()}


def _fetch_official(p: Path) -> None:
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    if p.name not in GITHUB_ASSETS_NAMES:
        raise ExportError(f"{p}: weights file not found; give the path to a trained .pt file")
    try:
        attempt_download_asset(str(p))
    except Exception as exc:  # ultralytics raises ConnectionError and others when offline
        raise ExportError(
            f"{p}: weights file not found, and downloading the official {p.name} failed "
            f"({type(exc).__name__}; no internet?). Copy {p.name} here from a machine that has "
            f"it (ultralytics' GitHub releases), or export a .yaml (random weights) for tests"
        ) from exc
    if not p.exists():
        raise ExportError(f"{p}: weights file not found and ultralytics did not download it; "
                          f"copy {p.name} here from a machine with internet access")


# -- exporting -------------------------------------------------------------------------------
def export_yolo(model: Any, out: str | Path, opts: ExportOptions, weights: str | Path = "",
                progress: Callable[[str], None] | None = None) -> Path:
    """Export ``model`` (ultralytics ``YOLO``) per ``opts`` to ``out``; write the sidecar."""
    opts.check()
    if opts.fmt == "engine":
        from export.trt_build import preflight

        preflight()
    out = Path(out)
    say = progress or (lambda msg: log.info("%s", msg))
    out.parent.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="duskwatch-export-") as tmp:
        fmt = "onnx" if opts.fmt in ("engine", "openvino") else opts.fmt
        say(f"exporting {weights or 'model'} to {fmt} (imgsz {opts.imgsz}, "
            f"{'dynamic batch' if opts.dynamic else f'batch {opts.batch}'})")
        produced = _ultralytics_export(model, Path(tmp), fmt, opts)
        if opts.fmt == "onnx" and opts.int8:
            from export.quantize import quantize_int8

            quantized = Path(tmp) / "model_int8.onnx"
            extra = quantize_int8(produced, quantized, opts.calib_dir, opts.imgsz,
                                  _rect_stride(model, opts), opts.calib_frames, progress=say)
            shutil.move(str(quantized), str(out))
        elif opts.fmt == "openvino":
            from export.openvino_ir import onnx_to_openvino

            say(f"converting {produced.name} to OpenVINO IR")
            if opts.int8:
                from export.openvino_int8 import quantize_ir

                float_ir = onnx_to_openvino(produced, Path(tmp) / "model_f32.xml",
                                            _ir_info(model, opts))
                extra = quantize_ir(float_ir, out, opts.calib_dir, opts.imgsz,
                                    _rect_stride(model, opts), opts.calib_frames, progress=say)
            else:
                onnx_to_openvino(produced, out, _ir_info(model, opts))
        elif opts.fmt == "engine":
            from export.trt_build import BuildOptions, build_engine

            say(f"building TensorRT engine from {produced.name} (this takes minutes)")
            extra = build_engine(produced, out, BuildOptions(
                fp16=opts.half, int8=opts.int8, calib_dir=opts.calib_dir,
                workspace_gb=opts.workspace_gb, batch=opts.batch, dynamic=opts.dynamic,
                imgsz=opts.imgsz), progress=say)
        else:
            shutil.move(str(produced), str(out))
    meta = sidecar(model, opts, weights, precision=_precision(out, opts), **extra)
    from engines.base import write_sidecar

    write_sidecar(out, meta)
    say(f"wrote {out} and {out.name}.json")
    return out


def _rect_stride(model: Any, opts: ExportOptions) -> int | None:
    """The stride a dynamic export pads frames to, or ``None`` for square ``imgsz`` inputs."""
    return int(max(model.model.stride)) if opts.dynamic and opts.fmt in _RECT_FORMATS else None


def _ir_info(model: Any, opts: ExportOptions) -> dict[str, Any]:
    """What an OpenVINO IR says about itself (its ``model_info`` section)."""
    return {"model_type": "detect", "names": {int(k): v for k, v in model.model.names.items()},
            "stride": int(max(model.model.stride)), "imgsz": [opts.imgsz, opts.imgsz]}


def _ultralytics_export(model: Any, tmp: Path, fmt: str, opts: ExportOptions) -> Path:
    """Run ultralytics' exporter so that it writes into ``tmp``; return the file it wrote."""
    import torch

    model.model.pt_path = str(tmp / "model.pt")  # the exporter names its output after this
    half = opts.half and opts.fmt != "engine"  # TensorRT gets fp32 ONNX and its own fp16 flag
    if half and not torch.cuda.is_available():
        log.warning("--half: ultralytics exports fp16 %s only on a CUDA GPU; this one is fp32", fmt)
    device = "0" if half and torch.cuda.is_available() else "cpu"
    quiet = logging.getLogger("ultralytics")  # it logs to stdout; our progress goes to stderr
    level = quiet.level
    quiet.setLevel(logging.WARNING if level <= logging.INFO else level)
    try:
        produced = model.export(format=fmt, imgsz=opts.imgsz, batch=opts.batch,
                                dynamic=opts.dynamic, simplify=True, device=device,
                                verbose=False, **({"quantize": 16} if half else {}))
    except Exception as exc:
        raise ExportError(f"ultralytics could not export to {fmt}: {type(exc).__name__}: {exc}") \
            from exc
    finally:
        quiet.setLevel(level)
    if not produced or not Path(produced).is_file():
        raise ExportError(f"ultralytics reported no {fmt} file (got {produced!r})")
    return Path(produced)


def _precision(out: Path, opts: ExportOptions) -> str:
    """What the exported file really holds (ultralytics exports fp16 only on a GPU)."""
    if opts.int8:
        return "int8"
    if out.suffix == ".onnx":
        import onnx

        elem = onnx.load(str(out), load_external_data=False).graph.input[0].type.tensor_type
        return "fp16" if elem.elem_type == onnx.TensorProto.FLOAT16 else "fp32"
    return "fp16" if opts.half else "fp32"


def sidecar(model: Any, opts: ExportOptions, weights: str | Path, precision: str,
            **extra: Any) -> dict[str, Any]:
    """The JSON sidecar: what the engine is, for the runtime and for humans."""
    import ultralytics

    net = model.model
    names = {str(k): v for k, v in net.names.items()}
    batch = None if opts.dynamic else opts.batch
    img = [opts.imgsz, opts.imgsz]
    rect = opts.dynamic and opts.fmt in _RECT_FORMATS
    random_weights = Path(str(weights)).suffix in (".yaml", ".yml")
    meta = {
        "kind": "detector",
        "format": opts.fmt,
        "backend": _BACKEND[opts.fmt],
        "imgsz": img,
        "stride": int(max(net.stride)),
        "names": names,
        "precision": precision,
        "batch": batch,
        "dynamic": opts.dynamic,
        # A dynamic ONNX graph takes any height and width (multiples of the stride): the
        # Detector then pads 16:9 frames to 384x640 instead of 640x640 ("rect" inference).
        "rect": rect,
        "inputs": [{"name": "images", "shape": [batch, 3, *([None, None] if rect else img)],
                    "dtype": "float32"}],
        "outputs": [{"name": "output0", "shape": [batch, 4 + len(names), _anchors(net, opts)],
                     "dtype": "float32"}],
        "source_weights": str(weights),
        "random_weights": random_weights,
        "seed": opts.seed if random_weights else None,
        "duskwatch_version": version(),
        "ultralytics_version": ultralytics.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta


def _anchors(net: Any, opts: ExportOptions) -> int | None:
    """Anchor points of a static ``imgsz`` input: one per cell of each stride's grid."""
    return None if opts.dynamic else sum((opts.imgsz // int(s)) ** 2 for s in net.stride)
