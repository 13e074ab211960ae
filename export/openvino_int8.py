"""int8 OpenVINO IR of a YOLO detector, by NNCF post-training quantisation on real frames.

NNCF (OpenVINO's Neural Network Compression Framework) inserts FakeQuantize operations into the
float IR: int8 weights per output channel, activations quantised with ranges taken from
calibration frames (min/max, MIXED preset: symmetric weights, asymmetric activations), then
fast bias correction. OpenVINO's CPU plugin runs the FakeQuantize-wrapped convolutions as int8
kernels (VNNI where the CPU has it).

The detection head's decoding (the DFL softmax and its 1x1 convolution, the anchor arithmetic,
the concatenations, the class sigmoid) stays float: rounding there moves boxes and scores
directly. With ``keep_head_outputs`` the head's last box and class convolutions stay float too
(what :mod:`export.quantize` does for ONNX Runtime).

:func:`quantize_with_ap_control` is NNCF's accuracy-controlled variant: layers whose int8 costs
AP50 (scored with :mod:`engines.evaluation` on labelled photos) go back to float until the drop
is within ``max_drop``.

Calibration frames come from :mod:`export.quantize` (``--calib-dir``), letterboxed as the
detector letterboxes them at run time.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from export.errors import ExportError
from export.quantize import DEFAULT_CALIB_FRAMES, calibration_frames, letterboxed_feeds

log = logging.getLogger(__name__)

#: The head's box (cv2) and class (cv3) branches: ``/model.23/cv2.0/cv2.0.2/Conv`` etc.
_BRANCH = re.compile(r"/cv[23]\.\d+/")
_LAST_CONV = re.compile(r"/cv[23]\.\d+\.2/Conv(/WithoutBiases)?$")


def _import_nncf() -> Any:
    try:
        import nncf
    except ImportError as exc:
        raise ExportError(f"--int8 with --format openvino needs NNCF ({exc}); install it with "
                          "`pip install 'duskwatch[export]'` (or `pip install nncf`)") from exc
    return nncf


def head_prefix(model: Any) -> str | None:
    """``/model.N/`` of the detection head (the highest module number), or None."""
    numbers = [int(m.group(1)) for op in model.get_ops()
               if (m := re.match(r"/model\.(\d+)/", op.get_friendly_name()))]
    return f"/model.{max(numbers)}/" if numbers else None


def float_head_ops(model: Any, keep_head_outputs: bool = False) -> list[str]:
    """Names of the head's operations that stay float: its decoding (everything of the head
    outside the box/class branches) and, with ``keep_head_outputs``, those branches' last
    convolutions."""
    head = head_prefix(model)
    if head is None:
        return []
    names = []
    for op in model.get_ops():
        name = op.get_friendly_name()
        if not name.startswith(head) or op.get_type_name() in ("Constant", "Parameter", "Result"):
            continue
        if not _BRANCH.search(name) or (keep_head_outputs and _LAST_CONV.search(name)):
            names.append(name)
    return names


def stem_ops(model: Any) -> list[str]:
    """The first convolution (``/model.0/``), which reads the image itself: NNCF's accuracy
    control on YOLO11n gave it back to float first, and that alone brought coco128's AP50 loss
    from 0.0103 to 0.0036 (docs/BENCHMARKS.md), so it stays float by default."""
    return [op.get_friendly_name() for op in model.get_ops()
            if op.get_friendly_name().startswith("/model.0/") and op.get_type_name() == "Convolution"]


def calibration_dataset(nncf: Any, calib_dir: Path, imgsz: int, rect_stride: int | None,
                        frames: int, input_name: str) -> Any:
    """An ``nncf.Dataset`` of letterboxed frames (NCHW float32, batch 1)."""
    feeds = [feed[input_name] for feed in letterboxed_feeds(
        calibration_frames(calib_dir, frames), imgsz, rect_stride, input_name)]
    if not feeds:
        raise ExportError(f"--calib-dir {calib_dir}: no frame could be read from its files")
    return nncf.Dataset(feeds)


def quantize_ir(src: Path, out: Path, calib_dir: Path, imgsz: int, rect_stride: int | None,
                frames: int = DEFAULT_CALIB_FRAMES, keep_head_outputs: bool = False,
                keep_stem: bool = True,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the int8 version of the float OpenVINO IR ``src`` to ``out``; return sidecar
    extras (``calibration``: what it was calibrated on and how). ``keep_stem``: the first
    convolution stays float (:func:`stem_ops`)."""
    import openvino as ov

    nncf = _import_nncf()
    say = progress or (lambda msg: log.info("%s", msg))
    model = ov.Core().read_model(str(src))
    data = calibration_dataset(nncf, calib_dir, imgsz, rect_stride, frames,
                               model.inputs[0].get_any_name())
    ignored = float_head_ops(model, keep_head_outputs) + (stem_ops(model) if keep_stem else [])
    say(f"quantising to int8 with NNCF on {data.get_length()} frames from {calib_dir} "
        f"({len(ignored)} operations of the head{' and stem' if keep_stem else ''} kept float)")
    quantized = nncf.quantize(model, data, preset=nncf.QuantizationPreset.MIXED,
                              subset_size=data.get_length(),
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    _copy_rt_info(model, quantized)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    extra = _calibration_extra(calib_dir, data.get_length(), keep_head_outputs)
    if keep_stem:
        extra["float"] = "first convolution and " + extra["float"]
    return {"calibration": extra}


def quantize_with_ap_control(src: Path, out: Path, calib_dir: Path, imgsz: int,
                             rect_stride: int | None, validation: "APValidation",
                             max_drop: float = 0.005, frames: int = DEFAULT_CALIB_FRAMES,
                             ranking_subset: int | None = None, max_iterations: int | None = None,
                             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """:func:`quantize_ir` with NNCF's accuracy control: int8 layers go back to float, the most
    harmful first (ranked by how far the outputs move on ``ranking_subset`` photos), until
    ``validation``'s metric (the worst AP50 change over its sets) is within ``max_drop``, or
    ``max_iterations`` layers went back."""
    import openvino as ov

    nncf = _import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    say = progress or (lambda msg: log.info("%s", msg))
    model = ov.Core().read_model(str(src))
    data = calibration_dataset(nncf, calib_dir, imgsz, rect_stride, frames,
                               model.inputs[0].get_any_name())
    say(f"quantising to int8 with NNCF accuracy control (max AP50 drop {max_drop}) on "
        f"{data.get_length()} calibration frames, validated on {validation.describe()}")
    restorer = AdvancedAccuracyRestorerParameters(ranking_subset_size=ranking_subset)
    if max_iterations:
        restorer.max_num_iterations = max_iterations
    quantized = nncf.quantize_with_accuracy_control(
        model, data, nncf.Dataset(validation.items, validation.transform), validation,
        max_drop=max_drop, preset=nncf.QuantizationPreset.MIXED, subset_size=data.get_length(),
        ignored_scope=nncf.IgnoredScope(names=float_head_ops(model), validate=False),
        advanced_accuracy_restorer_parameters=restorer)
    _copy_rt_info(model, quantized)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    extra = {"calibration": _calibration_extra(calib_dir, data.get_length(), False)}
    extra["calibration"]["accuracy_control"] = {
        "metric": "worst AP50 change over " + ", ".join(validation.sets), "max_drop": max_drop,
        "float_ap50": validation.reference, "int8_fake_quantize": count_fake_quantize(quantized)}
    return extra


class APValidation:
    """NNCF's validation function for YOLO: AP50 on labelled photo sets, as ``duskwatch bench
    night`` scores the ``raw`` method (ultralytics' validation letterbox, multi-label NMS at
    ``conf`` 0.001, IoU 0.7, :func:`engines.evaluation.evaluate`).

    Items are ``(set name, photo index)``; the metric of a call is 1 + the worst change of any
    set's AP50 against the float model's (1 for the float model itself, whose AP50s are taken from the
    first call that covers every item: NNCF validates the float model first). The outputs per
    item go back too, so NNCF ranks layers by how far they move the outputs (cheap), not by AP.
    """

    def __init__(self, sets: Mapping[str, Any], input_name: str, stride: int, imgsz: int = 640,
                 conf: float = 0.001, iou: float = 0.7):
        import cv2

        self.sets = dict(sets)
        self.input_name, self.stride, self.imgsz = input_name, stride, imgsz
        self.conf, self.iou = conf, iou
        self.photos = {name: [cv2.imread(str(im.path), cv2.IMREAD_COLOR) for im in s.images]
                       for name, s in self.sets.items()}
        self.items = [(name, i) for name, s in self.sets.items() for i in range(len(s.images))]
        self.reference: dict[str, float] | None = None
        self.history: list[dict[str, float]] = []

    def describe(self) -> str:
        return ", ".join(f"{name} ({len(s.images)} photos)" for name, s in self.sets.items())

    def _letterboxed(self, item: tuple[str, int]) -> tuple[np.ndarray, Any]:
        from engines.letterbox import letterbox_cpu

        img = self.photos[item[0]][item[1]]
        batch, boxes = letterbox_cpu([img], (self.imgsz, self.imgsz), val_stride=self.stride)
        return batch, boxes[0]

    def transform(self, item: tuple[str, int]) -> np.ndarray:
        return self._letterboxed(item)[0]

    def __call__(self, compiled: Any, items: Any) -> tuple[float, list[list[np.ndarray]]]:
        from dataclasses import replace

        from engines.evaluation import evaluate
        from engines.letterbox import unletterbox_boxes
        from engines.nms import decode_numpy

        items = list(items)
        request = compiled.create_infer_request()
        outputs, dets = [], {name: [] for name in self.sets}
        for item in items:
            batch, lb = self._letterboxed(item)
            pred = np.array(request.infer({self.input_name: batch})[compiled.outputs[0]])
            outputs.append([pred])
            boxes, scores, classes = decode_numpy(pred, self.conf, self.iou, multi_label=True)[0]
            dets[item[0]].append((item[1], (unletterbox_boxes(boxes, lb), scores, classes)))
        ap = {}
        for name, found in dets.items():
            if found:
                chosen = replace(self.sets[name], images=tuple(self.sets[name].images[i]
                                                               for i, _ in found))
                ap[name] = float(evaluate(chosen, [d for _, d in found]).ap50)
        if self.reference is None and len(items) == len(self.items):
            self.reference = dict(ap)
        ref = self.reference or {}
        change = min(ap[n] - ref[n] for n in ap) if ref else 0.0
        if len(items) == len(self.items):
            self.history.append({**ap, "worst_change": change})
            log.info("AP50 %s, worst change against float %+.4f", ap, change)
        # 1 + change: NNCF also divides by the float model's metric (its relative drop), so the
        # float model scores 1.0, not 0; absolute drops are the same
        return 1.0 + change, outputs


def _calibration_extra(calib_dir: Path, frames: int, keep_head_outputs: bool) -> dict[str, Any]:
    return {"dir": str(calib_dir), "frames": frames, "tool": "nncf", "preset": "mixed",
            "method": "minmax + fast bias correction", "weights": "int8 per-channel symmetric",
            "activations": "int8 per-tensor asymmetric",
            "float": "head decoding" + (" and last box/class convolutions"
                                        if keep_head_outputs else "")}


def _copy_rt_info(src: Any, dst: Any) -> None:
    """Keep the IR's ``model_info`` (names, stride, imgsz) on the quantised model."""
    if not src.has_rt_info(["model_info"]):
        return
    for key in src.get_rt_info()["model_info"]:
        dst.set_rt_info(src.get_rt_info(["model_info", key]).astype(str), ["model_info", key])


def count_fake_quantize(model: Any) -> int:
    """FakeQuantize operations in an OpenVINO model (an int8 IR has them; a float one none)."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


def describe(extra: Mapping[str, Any]) -> str:
    cal = extra.get("calibration", {})
    return f"{cal.get('frames')} frames from {cal.get('dir')}, float: {cal.get('float')}"
