"""Parity: ONNX and TorchScript exports of yolo11n.yaml agree with the PyTorch model.

Raw head outputs: |engine - torch| <= 1e-3 px on box coordinates and <= 1e-4 on class
probabilities (fp32 on CPU; the differences come from operator fusion and summation order).
Post-processed detections at conf 0.05 (a few hundred boxes per photo): our pipeline on each
engine against ultralytics' own ``non_max_suppression`` + ``scale_boxes`` on the PyTorch
output: the same number of detections, each matched by one of the same class with IoU >= 0.99.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ultralytics")
torch = pytest.importorskip("torch")

from engines.base import open_engine  # noqa: E402
from engines.letterbox import letterbox_cpu  # noqa: E402
from engines.yolo import Detector  # noqa: E402
from tests.yolo_exports import exported, reference_model, sample_images  # noqa: E402

IMGSZ, BATCH, CONF, IOU = 320, 2, 0.05, 0.45
BOX_ATOL, PROB_ATOL = 1e-3, 1e-4


@pytest.fixture(scope="module")
def batch_and_reference():
    torch.set_num_threads(1)
    images = sample_images(BATCH)
    x, boxes = letterbox_cpu(images, (IMGSZ, IMGSZ))
    with torch.inference_mode():
        y = reference_model().model(torch.from_numpy(x))
    y = y[0] if isinstance(y, (list, tuple)) else y
    return images, x, y.float()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_raw_outputs_match_pytorch(fmt, batch_and_reference):
    _, x, ref = batch_and_reference
    with open_engine(exported(fmt, IMGSZ, BATCH), device="cpu") as eng:
        out = np.asarray(eng.infer({"images": x})["output0"])
    ref = ref.numpy()
    assert out.shape == ref.shape == (BATCH, 84, 2100)
    box_err = np.abs(out[:, :4] - ref[:, :4]).max()
    prob_err = np.abs(out[:, 4:] - ref[:, 4:]).max()
    assert box_err <= BOX_ATOL, f"{fmt}: box coordinates differ by {box_err:.2e} px"
    assert prob_err <= PROB_ATOL, f"{fmt}: class probabilities differ by {prob_err:.2e}"


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_detections_match_ultralytics_postprocessing(fmt, batch_and_reference):
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    images, _, ref = batch_and_reference
    expected = non_max_suppression(ref, conf_thres=CONF, iou_thres=IOU, max_det=300)
    with Detector(exported(fmt, IMGSZ, BATCH), conf=CONF, iou=IOU, device="cpu") as det:
        got = det(images)
    for img, exp, dets in zip(images, expected, got):
        exp_boxes = scale_boxes((IMGSZ, IMGSZ), exp[:, :4].clone(), img.shape[:2]).numpy()
        exp_cls = exp[:, 5].numpy().astype(int)
        assert len(exp_boxes) >= 20, "the test model should produce many detections"
        assert len(dets) == len(exp_boxes)
        _assert_matched(dets.boxes, dets.class_ids, exp_boxes, exp_cls)


def _assert_matched(boxes, classes, exp_boxes, exp_classes):
    for box, cls in zip(exp_boxes, exp_classes):
        same = boxes[classes == cls]
        assert len(same), f"no detection of class {cls}"
        best = _iou(box, same).max()
        if best < 0.99:  # a box clipped to zero area (it lay in the padding) has no IoU
            nearest = np.abs(same - box).max(1).min()
            assert nearest <= 1e-2, f"class {cls} box {box}: best IoU {best:.4f}, {nearest:.3f} px off"


def _iou(box, boxes):
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    union = (box[2] - box[0]) * (box[3] - box[1]) + \
        (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


@pytest.mark.tensorrt
def test_tensorrt_parity():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install "
                        "duskwatch[trt] on a machine with an NVIDIA GPU)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT parity needs a CUDA GPU; none is visible")
    from export.trt_build import BuildOptions, build_engine

    onnx_path = exported("onnx", IMGSZ, BATCH)
    engine_path = onnx_path.with_suffix(".engine")
    build_engine(onnx_path, engine_path, BuildOptions(batch=BATCH, imgsz=IMGSZ))
    images = sample_images(BATCH)
    x, _ = letterbox_cpu(images, (IMGSZ, IMGSZ))
    with open_engine(onnx_path, device="cpu") as ref_eng, open_engine(engine_path) as eng:
        ref = ref_eng.infer({"images": x})["output0"]
        out = eng.infer({"images": x})["output0"]
    # TensorRT may pick TF32 tactics: a looser bound than the CPU backends'
    assert np.abs(out[:, :4] - ref[:, :4]).max() <= 0.5
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() <= 1e-2


def test_torch_pipeline_matches_numpy_pipeline():
    """Letterbox and NMS in torch (the GPU path, run here on the CPU) give the same detections.

    Images are already model-sized so that both letterboxes are exact copies (OpenCV's and
    torch's bilinear resizes differ in rounding) and any difference is in decode/NMS.
    """
    import cv2

    images = [cv2.resize(img, (IMGSZ, IMGSZ)) for img in sample_images(BATCH)]
    path = exported("torchscript", IMGSZ, BATCH)
    with Detector(path, conf=CONF, iou=IOU, device="cpu", torch_pipeline=True) as det:
        on_torch = det(images)
    with Detector(path, conf=CONF, iou=IOU, device="cpu", torch_pipeline=False) as det:
        on_numpy = det(images)
    for a, b in zip(on_torch, on_numpy):
        assert len(a) == len(b) >= 20
        _assert_matched(a.boxes, a.class_ids, b.boxes, b.class_ids)
