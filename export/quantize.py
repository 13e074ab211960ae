"""Static int8 quantisation of a YOLO ONNX export (ONNX Runtime QDQ), calibrated on real frames.

Post-training quantisation in the QDQ format (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference"): each convolution's weights
become int8 per output channel (symmetric), its input activations uint8 with a scale and zero
point taken from the range the activations reach on calibration frames (min/max). Only
convolutions are quantised; the detection head's box/class output convolutions and its decoding
(DFL softmax, anchors, the concatenation of boxes and class probabilities) stay in float32, since
rounding there moves boxes and scores directly.

Calibration frames come from a folder of images and/or videos (``--calib-dir``): real frames of
the cameras the engine will see, letterboxed exactly as the detector does at run time (the
rectangle a dynamic export runs at, pad value 114).

Measured on the shared YOLO11n (docs/BENCHMARKS.md): on this project's 2-core AVX-512 CPU the
QDQ model is *not* faster than float32 on ONNX Runtime and costs 0.014 AP50 on coco128, so the
CPU engine of choice is OpenVINO (bf16) instead; ``--int8`` stays for CPUs whose ONNX Runtime
gains from it (no AVX-512 BF16), and for comparison.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from export.errors import ExportError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mkv", ".mov", ".ts", ".webm"}
DEFAULT_CALIB_FRAMES = 128


def calibration_files(folder: Path) -> list[Path]:
    """Images and videos in ``folder`` (recursively), in name order; an error naming the fix
    when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportError(f"--calib-dir {folder}: no such folder; give a folder of representative "
                          "frames (images or video clips from the cameras)")
    files = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    if not files:
        raise ExportError(f"--calib-dir {folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                          f"or videos ({', '.join(sorted(VIDEO_SUFFIXES))}) in it")
    return files


def calibration_frames(folder: Path, limit: int = DEFAULT_CALIB_FRAMES) -> Iterator[np.ndarray]:
    """Up to ``limit`` BGR frames: every image, and from each video frames spread over its length."""
    import cv2

    files = calibration_files(folder)
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    per_video = max(1, (limit - min(len(images), limit // 2)) // max(1, len(videos))) if videos else 0
    n = 0
    for path in videos:
        for frame in _video_frames(cv2, path, per_video):
            if n >= limit:
                return
            n += 1
            yield frame
    for path in spread(images, limit - n):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or n >= limit:
            continue
        n += 1
        yield img


def spread(items: list, count: int) -> list:
    """``count`` of ``items`` spaced evenly over the whole list (all when there are fewer), so
    that a limit draws from every folder of a sorted listing, not only the first ones."""
    if count <= 0:
        return []
    if len(items) <= count:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _video_frames(cv2: Any, path: Path, count: int) -> Iterator[np.ndarray]:
    """``count`` frames spread evenly over the clip. The frames are counted by reading (container
    frame counts are often wrong: OpenCV reports 682 for the 341-frame ``vtest.avi``)."""
    total = _count_frames(cv2, path)
    wanted = set(np.linspace(0, max(total - 1, 0), min(count, total)).astype(int).tolist())
    cap = cv2.VideoCapture(str(path))
    try:
        for i in range(total):
            ok, frame = cap.read()
            if not ok:
                return
            if i in wanted:
                yield frame
    finally:
        cap.release()


def _count_frames(cv2: Any, path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def letterboxed_feeds(frames: Iterator[np.ndarray], imgsz: int, rect_stride: int | None,
                      input_name: str = "images") -> Iterator[dict[str, np.ndarray]]:
    """Each frame as the detector feeds it: letterboxed to ``imgsz`` (or, for a dynamic export,
    the smallest ``rect_stride`` rectangle), float32 NCHW RGB in [0, 1], batch 1."""
    from engines.letterbox import letterbox_cpu, rect_size

    for frame in frames:
        size = (imgsz, imgsz)
        if rect_stride:
            size = rect_size([frame.shape[:2]], size, rect_stride)
        batch, _ = letterbox_cpu([frame], size)
        yield {input_name: batch}


def float_head_nodes(model: Any) -> list[str]:
    """Nodes to keep in float32: everything of the detection head (the last ``/model.N/``
    module) except the convolutions before its last box/class convolution."""
    modules = [int(m.group(1)) for n in model.graph.node
               if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not modules:
        return []
    head = f"/model.{max(modules)}/"
    keep_float = []
    for node in model.graph.node:
        if not node.name.startswith(head):
            continue
        last_conv = node.op_type == "Conv" and re.search(r"\.2/Conv$", node.name)
        if node.op_type != "Conv" or last_conv:
            keep_float.append(node.name)
    return keep_float


def quantize_int8(src: Path, out: Path, calib_dir: Path, imgsz: int, rect_stride: int | None,
                  frames: int = DEFAULT_CALIB_FRAMES,
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the QDQ int8 version of the float32 ONNX ``src`` to ``out``; return sidecar extras
    (``calibration``: what it was calibrated on)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    say = progress or (lambda msg: log.info("%s", msg))
    model = onnx.load(str(src))
    input_name = model.graph.input[0].name
    feeds = list(letterboxed_feeds(calibration_frames(calib_dir, frames), imgsz, rect_stride,
                                   input_name))
    if not feeds:
        raise ExportError(f"--calib-dir {calib_dir}: no frame could be read from its files")
    say(f"calibrating int8 on {len(feeds)} frames from {calib_dir}")

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    quantize_static(str(src), str(out), _Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=float_head_nodes(model),
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    _copy_metadata(model, out)
    return {"calibration": {"dir": str(calib_dir), "frames": len(feeds), "method": "minmax",
                            "format": "QDQ", "activations": "uint8", "weights": "int8 per-channel"}}


def _copy_metadata(src_model: Any, out: Path) -> None:
    """Keep ultralytics' ``metadata_props`` (names, stride, imgsz) on the quantised file."""
    import onnx

    q = onnx.load(str(out))
    have = {p.key for p in q.metadata_props}
    for p in src_model.metadata_props:
        if p.key not in have:
            q.metadata_props.add().CopyFrom(p)
    onnx.save(q, str(out))
