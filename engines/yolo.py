"""YOLO detector on top of any engine: letterbox -> engine -> decode -> NMS -> original pixels.

::

    with Detector("yolo11n.onnx", conf=0.25) as det:
        for d in det([cv2.imread("frame.png")]):
            print(d.to_json())

Works with ultralytics v8/11 detection heads exported to ONNX, TorchScript, ``torch.export``
or TensorRT (see :mod:`engines.nms` for the head's layout). Class names come from the engine's
sidecar, or from the ONNX file's own metadata. When the engine runs on a GPU through torch
(torch or TensorRT backends), letterboxing and NMS run there too and only the kept detections
come back to the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from engines.base import Engine, EngineError, open_engine
from engines.detections import Detections
from engines.letterbox import (Letterbox, letterbox_cpu, letterbox_torch, rect_size,
                               unletterbox_boxes)
from engines.nms import decode_numpy, decode_torch

DEFAULT_DYNAMIC_BATCH = 32  # chunk size for engines whose batch dimension is dynamic


class Detector:
    """Run a YOLO detection engine on BGR uint8 images of any size."""

    def __init__(self, engine: "Engine | str | Path", conf: float = 0.25, iou: float = 0.45,
                 device: str = "auto", *, torch_pipeline: bool | None = None, multi_label: bool = False,
                 val_geometry: bool = False):
        """``torch_pipeline``: letterbox and NMS with torch on the engine's device; by default
        when a torch or TensorRT engine runs on CUDA, else OpenCV and numpy on the CPU.
        ``multi_label``: a box for every class above ``conf`` (how mAP is measured), instead of
        the best class per anchor (live detection: one box per object). ``val_geometry``: letterbox
        as ultralytics' validator does (:func:`engines.letterbox.val_size`), for AP figures that
        compare with its ``val`` (engines whose input height and width are dynamic, with the CPU
        pre-processing; other engines keep their one geometry)."""
        self.engine = engine if isinstance(engine, Engine) else open_engine(engine, device=device)
        self._owns_engine = not isinstance(engine, Engine)
        self.conf, self.iou = float(conf), float(iou)
        self.multi_label = bool(multi_label)
        self.input_name, self.output_name = check_detector(self.engine)
        self.imgsz = input_size(self.engine)
        self.names = class_names(self.engine)
        self.rect_stride = rect_stride(self.engine)
        if torch_pipeline is None:
            torch_pipeline = self._torch_pipeline_default()
        self._torch_pipeline = bool(torch_pipeline)
        # a fixed-size engine, or the torch pre-processing, has one geometry: val_geometry
        # changes nothing there
        self.val_stride = self.rect_stride if val_geometry and not self._torch_pipeline else None

    def _torch_pipeline_default(self) -> bool:
        return str(getattr(self.engine, "device", "cpu")).startswith("cuda") and \
            self.engine.backend in ("torch", "tensorrt")

    # -- running ---------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        """Images per engine call: the static batch, else the dynamic profile's max or 32."""
        limits = getattr(self.engine, "batch_limits", None)
        return self.engine.max_batch or (limits[1] if limits else DEFAULT_DYNAMIC_BATCH)

    def __call__(self, images: Sequence[Any], scale: float = 1.0) -> list[Detections]:
        """One :class:`Detections` per image, boxes in the image's pixels. ``scale``: look at
        the images at ``scale`` times the engine's input size (:meth:`scaled_size`)."""
        for i, img in enumerate(images):
            _check_image(img, i)
        imgsz = self.scaled_size(scale)
        out: list[Detections] = []
        for chunk in _chunks(list(images), self.batch_size):
            out.extend(self._detect_chunk(chunk, imgsz))
        return out

    def scaled_size(self, scale: float) -> tuple[int, int]:
        """The input (height, width) at ``scale`` times ``imgsz``, in multiples of the stride
        (1.5 at 640: 960). Only an engine whose input height and width are dynamic can take it."""
        if scale == 1.0:
            return self.imgsz
        if self.rect_stride is None or self._torch_pipeline:
            raise EngineError(
                f"{self.engine.path}: its input size is fixed at {self.imgsz[0]}x{self.imgsz[1]}, "
                f"so it cannot look at a frame {scale:g}x larger (the 'zoom' view); export the "
                "detector with `duskwatch export yolo --dynamic` for ONNX Runtime, or drop 'zoom' "
                "from lowlight.views")
        stride = self.rect_stride
        return tuple(max(int(round(v * scale / stride)), 1) * stride for v in self.imgsz)  # type: ignore[return-value]

    def input_size_for(self, images: Sequence[Any], imgsz: tuple[int, int] | None = None) -> tuple[int, int]:
        """The engine input (height, width) for this batch: ``imgsz`` (default the engine's),
        or the smallest stride-multiple rectangle when the engine takes any height and width."""
        imgsz = imgsz or self.imgsz
        if self.rect_stride is None:
            return imgsz
        return rect_size((tuple(im.shape[:2]) for im in images), imgsz, self.rect_stride)

    def _detect_chunk(self, images: list[Any], imgsz: tuple[int, int] | None = None) -> list[Detections]:
        static = self.engine.max_batch
        imgsz = imgsz or self.imgsz
        size = imgsz if self.val_stride else self.input_size_for(images, imgsz)
        if self._torch_pipeline:
            device = getattr(self.engine, "device", None)
            batch, boxes = letterbox_torch(images, size, static, device)
            pred = self.engine.infer({self.input_name: batch})[self.output_name]
            decoded = decode_torch(pred, self.conf, self.iou, multi_label=self.multi_label)
        else:
            batch, boxes = letterbox_cpu([_to_numpy(im) for im in images], size, static,
                                         val_stride=self.val_stride)
            pred = self.engine.infer({self.input_name: batch})[self.output_name]
            decoded = decode_numpy(np.asarray(pred), self.conf, self.iou, multi_label=self.multi_label)
        return [self._finish(d, lb) for d, lb in zip(decoded, boxes)]

    def _finish(self, decoded: tuple, lb: Letterbox) -> Detections:
        boxes, scores, class_ids = decoded
        return Detections.from_arrays(unletterbox_boxes(boxes, lb), scores, class_ids, self.names)

    def warmup(self, batch: int = 1) -> None:
        """Run the engine once on grey frames (allocations, autotuning, CUDA graph capture)."""
        n = self.engine.max_batch or batch
        self([np.full((self.imgsz[0], self.imgsz[1], 3), 114, np.uint8)] * n)

    @property
    def backend(self) -> str:
        """The runtime the engine runs on (onnxruntime, tensorrt, torch, ...)."""
        return self.engine.backend

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_engine:
            self.engine.close()

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- engine inspection -----------------------------------------------------------------------
def check_detector(engine: Engine) -> tuple[str, str]:
    """(input name, output name) of a YOLO detector; a clear error for any other model."""
    path = engine.path
    kind = engine.metadata.get("kind") or engine.metadata.get("task")
    if kind not in (None, "detector", "detect"):
        raise EngineError(f"{path}: engine is a '{kind}' model, not a detector; pass a YOLO "
                          "engine exported with `duskwatch export yolo`")
    if len(engine.inputs) != 1 or len(engine.inputs[0].shape) != 4:
        raise EngineError(f"{path}: not a YOLO detector: expected one NCHW image input, found "
                          f"{[s.describe() for s in engine.inputs]}; export one with "
                          "`duskwatch export yolo`")
    if not engine.outputs:
        raise EngineError(f"{path}: engine declares no outputs; re-export it")
    out = engine.outputs[0]
    n_names = len(engine.metadata.get("names") or {})
    ok_rank = len(out.shape) == 3
    ok_width = out.shape[1] is None if ok_rank else False
    if ok_rank and out.shape[1] is not None:
        ok_width = out.shape[1] > 4 and (not n_names or out.shape[1] == 4 + n_names)
    if not (ok_rank and ok_width):
        raise EngineError(f"{path}: not a YOLO v8/11 detector: output {out.describe()} is not "
                          f"(batch, 4 + classes{f' = {4 + n_names}' if n_names else ''}, anchors); "
                          "export one with `duskwatch export yolo`")
    return engine.inputs[0].name, out.name


def input_size(engine: Engine) -> tuple[int, int]:
    """Model input (height, width) from the input shape, else from metadata ``imgsz``."""
    shape = engine.inputs[0].shape
    if shape[2] is not None and shape[3] is not None:
        return int(shape[2]), int(shape[3])
    imgsz = engine.metadata.get("imgsz")
    if imgsz is None:
        raise EngineError(f"{engine.path}: input size is dynamic and the metadata has no 'imgsz'; "
                          "re-export with `duskwatch export yolo --imgsz N`")
    return (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))


def rect_stride(engine: Engine) -> int | None:
    """The stride to pad to when the engine takes any input height and width (an ONNX export
    with ``--dynamic``), else ``None``: square ``imgsz`` inputs. TensorRT engines report dynamic
    dimensions too, but their optimisation profile is built for ``imgsz``; their sidecar says
    ``rect: false``."""
    h, w = engine.inputs[0].shape[2:4]
    if h is not None or w is not None:
        return None
    if not engine.metadata.get("rect", engine.backend == "onnxruntime"):
        return None
    return int(engine.metadata.get("stride", 32))


def class_names(engine: Engine) -> dict[int, str]:
    """Class id -> name from metadata ``names`` (dict or list); ids as names when absent."""
    names = engine.metadata.get("names")
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, list):
        return dict(enumerate(map(str, names)))
    width = engine.outputs[0].shape[1]
    return {i: str(i) for i in range(width - 4)} if width else {}


# -- helpers ---------------------------------------------------------------------------------
def _check_image(img: Any, index: int) -> None:
    shape = tuple(getattr(img, "shape", ()))
    dtype = str(getattr(img, "dtype", ""))
    if len(shape) != 3 or shape[2] != 3 or not dtype.endswith("uint8"):
        raise ValueError(f"image {index}: expected a BGR uint8 HxWx3 array, got shape {shape} "
                         f"dtype {dtype or type(img).__name__}")


def _to_numpy(img: Any) -> np.ndarray:
    return img if isinstance(img, np.ndarray) else img.detach().cpu().numpy()


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
