"""Letterbox geometry, head decoding and class-aware NMS (numpy and torch), without a model."""

from __future__ import annotations

import numpy as np
import pytest

from engines.letterbox import PAD_VALUE, letterbox_cpu, plan, unletterbox_boxes
from engines.nms import batched_nms_numpy, decode_numpy, nms_numpy
from engines.yolo import Detections


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (100, 1000), (320, 320), (1080, 1920)])
def test_plan_fits_and_centres(hw):
    lb = plan(hw, (320, 320))
    nh, nw = lb.resized_hw
    assert max(nh, nw) == 320 and nh <= 320 and nw <= 320
    assert abs(lb.left - (320 - nw) / 2) <= 1 and abs(lb.top - (320 - nh) / 2) <= 1


def test_letterbox_cpu_places_image_and_pads_grey():
    img = np.zeros((100, 200, 3), np.uint8)
    img[..., 2] = 255  # pure red in BGR
    x, (lb,) = letterbox_cpu([img], (64, 64), batch=2)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    assert lb.resized_hw == (32, 64) and (lb.left, lb.top) == (0, 16)
    inside = x[0, :, 16:48, :]
    assert np.allclose(inside[0], 1.0) and np.allclose(inside[1:], 0.0)  # RGB order, red
    assert np.allclose(x[0, :, :16], PAD_VALUE / 255) and np.allclose(x[0, :, 48:], PAD_VALUE / 255)
    assert np.allclose(x[1], PAD_VALUE / 255)  # the static-batch padding image


def test_unletterbox_inverts_the_mapping():
    lb = plan((480, 640), (320, 320))
    orig = np.array([[10, 20, 300, 400], [0, 0, 640, 480]], np.float32)
    sx, sy = lb.resized_hw[1] / 640, lb.resized_hw[0] / 480
    model = orig * [sx, sy, sx, sy] + [lb.left, lb.top, lb.left, lb.top]
    assert np.allclose(unletterbox_boxes(model, lb), orig, atol=1e-3)


def test_unletterbox_clips_to_the_image():
    lb = plan((100, 100), (64, 64))
    out = unletterbox_boxes(np.array([[-10, -10, 80, 80]], np.float32), lb)
    assert out.min() >= 0 and out.max() <= 100


def test_letterbox_torch_matches_opencv():
    torch = pytest.importorskip("torch")
    from engines.letterbox import letterbox_torch

    rng = np.random.default_rng(0)
    img = (rng.random((90, 160, 3)) * 255).astype(np.uint8)
    img = np.ascontiguousarray(np.repeat(np.repeat(img, 4, 0), 4, 1))  # smooth enough to compare
    x_cv, lb_cv = letterbox_cpu([img], (320, 320))
    x_t, lb_t = letterbox_torch([torch.from_numpy(img)], (320, 320))
    assert lb_cv == lb_t
    assert x_t.shape == (1, 3, 320, 320) and x_t.dtype == torch.float32
    assert np.abs(x_t.numpy() - x_cv).mean() < 0.01


def _iou_matrix(a, b):
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _random_boxes(rng, n):
    xy = rng.random((n, 2)) * 200
    wh = rng.random((n, 2)) * 60 + 5
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def test_nms_numpy_matches_torchvision():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    rng = np.random.default_rng(1)
    boxes, scores = _random_boxes(rng, 300), rng.random(300).astype(np.float32)
    ours = nms_numpy(boxes, scores, 0.5)
    theirs = tv.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5).numpy()
    assert np.array_equal(ours, theirs)
    kept = boxes[ours]
    iou = _iou_matrix(kept, kept)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.5


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10.5], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1])
    kept = batched_nms_numpy(boxes, scores, classes, 0.5)
    assert sorted(kept.tolist()) == [0, 2]  # the class-0 duplicate goes, class 1 stays


def _head(boxes_xywh, probs):
    """A (1, 4 + nc, A) head output from per-anchor boxes and class probabilities."""
    return np.concatenate([np.asarray(boxes_xywh, np.float32).T,
                           np.asarray(probs, np.float32).T], 0)[None]


def test_decode_keeps_best_class_above_conf_and_converts_boxes():
    pred = _head([[50, 50, 20, 10], [52, 50, 20, 10], [200, 100, 40, 40], [10, 10, 4, 4]],
                 [[0.9, 0.1, 0.0], [0.8, 0.0, 0.0], [0.1, 0.0, 0.6], [0.01, 0.02, 0.0]])
    (boxes, scores, classes), = decode_numpy(pred, conf=0.25, iou=0.45)
    assert classes.tolist() == [0, 2] and classes.dtype == np.int32
    assert np.allclose(scores, [0.9, 0.6])
    assert np.allclose(boxes, [[40, 45, 60, 55], [180, 80, 220, 120]])


def test_decode_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from engines.nms import decode_torch

    rng = np.random.default_rng(2)
    n = 500
    xywh = np.concatenate([rng.random((n, 2)) * 300, rng.random((n, 2)) * 50 + 5], 1)
    probs = rng.random((n, 5)) ** 4
    pred = _head(xywh, probs)
    a = decode_numpy(pred, 0.2, 0.5)[0]
    b = decode_torch(torch.from_numpy(pred), 0.2, 0.5)[0]
    assert len(a[0]) > 10
    for x, y in zip(a, b):
        assert np.allclose(x, y, atol=1e-4)


def test_detections_json():
    d = Detections(np.array([[1, 2, 3, 4]], np.float32), np.array([0.5], np.float32),
                   np.array([7], np.int32), ["truck"])
    assert len(d) == 1 and len(Detections.empty()) == 0
    assert d.to_json() == [{"box": [1.0, 2.0, 3.0, 4.0], "score": 0.5, "class_id": 7,
                            "class": "truck"}]


def test_multi_label_decodes_every_class_above_conf_of_an_anchor():
    """mAP keeps every class above the floor per box (ultralytics' validator); live detection
    one box per anchor, its best class."""
    pred = _head([[50, 50, 20, 10], [200, 100, 40, 40]], [[0.7, 0.4, 0.0], [0.1, 0.0, 0.6]])
    (_, _, single), = decode_numpy(pred, conf=0.25, iou=0.45)
    (boxes, scores, multi), = decode_numpy(pred, conf=0.25, iou=0.45, multi_label=True)
    assert single.tolist() == [0, 2]
    assert multi.tolist() == [0, 2, 1] and np.allclose(scores, [0.7, 0.6, 0.4])
    assert np.allclose(boxes[2], boxes[0])  # the same anchor's box, as another class


def test_decode_torch_multi_label_matches_numpy():
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    from engines.nms import decode_torch

    rng = np.random.default_rng(3)
    n = 120
    pred = _head(np.concatenate([rng.random((n, 2)) * 300, rng.random((n, 2)) * 50 + 5], 1),
                 rng.random((n, 6)) ** 3)
    a = decode_numpy(pred, 0.2, 0.5, multi_label=True)[0]
    b = decode_torch(torch.from_numpy(pred), 0.2, 0.5, multi_label=True)[0]
    assert len(a[0]) > len(decode_numpy(pred, 0.2, 0.5)[0][0])
    for x, y in zip(a, b):
        assert np.allclose(x, y, atol=1e-4)


def test_val_geometry_pads_half_a_stride_like_ultralytics_val():
    from engines.letterbox import val_size

    # a 640 x 427 photo: ceil(427/640*20 + 0.5) * 32 = 448 high, ceil(20 + 0.5) * 32 = 672 wide
    assert val_size([(427, 640)], 640, 32) == (448, 672)
    batch, (lb,) = letterbox_cpu([np.zeros((427, 640, 3), np.uint8)], (640, 640), val_stride=32)
    assert batch.shape == (1, 3, 448, 672) and (lb.left, lb.top, lb.gain) == (16, 10, 1.0)
