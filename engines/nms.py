"""Decode the ultralytics YOLOv8/11 detection head and run class-aware NMS.

The exported head (``Detect`` in export mode) returns one tensor ``(B, 4 + nc, A)``: for each
of the ``A`` anchor points a box ``(cx, cy, w, h)`` in model-input pixels followed by ``nc``
class probabilities (already sigmoid-ed; no objectness). Decoding keeps, per anchor, the best
class when its probability exceeds ``conf``; NMS is greedy IoU suppression within a class
(Neubeck & Van Gool 2006), done for all classes at once by offsetting each class's boxes so
that boxes of different classes never overlap (the trick torchvision's ``batched_nms`` uses).

With ``multi_label`` every class above ``conf`` of an anchor is a candidate of its own (one
anchor can give a "dog" and a "cat" box): what mAP is defined over, and what ultralytics'
validator does (``non_max_suppression(..., multi_label=True)``). Live detection keeps the best
class per anchor, one box per object.

Two implementations: numpy (CPU) and torch (``torchvision.ops.batched_nms``, for outputs that
are already on a GPU).
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_NMS = 30000  # most candidates sorted into NMS per image
MAX_DET = 300  # most detections kept per image
_CLASS_OFFSET = 7680.0  # larger than any box coordinate: separates classes in batched NMS


def head_classes(pred_shape: tuple[int, ...]) -> int:
    """Number of classes a ``(B, 4 + nc, A)`` head carries."""
    return int(pred_shape[1]) - 4


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    """Centre/size boxes to corner boxes."""
    out = np.empty_like(b)
    half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
    out[:, 0], out[:, 1] = b[:, 0] - half_w, b[:, 1] - half_h
    out[:, 2], out[:, 3] = b[:, 0] + half_w, b[:, 1] + half_h
    return out


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` with each row of ``boxes``."""
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        order = rest[box_iou_one(boxes[i], boxes[rest]) <= iou]
    return np.asarray(keep, dtype=np.int64)


def batched_nms_numpy(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                      iou: float) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    shifted = boxes + (classes.astype(np.float32) * _CLASS_OFFSET)[:, None]
    return nms_numpy(shifted, scores, iou)


def _candidates(cls_prob: np.ndarray, conf: float, multi_label: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(anchor index, score, class id)`` of every candidate above ``conf``, best first (at most
    :data:`MAX_NMS`): the best class per anchor, or each class above ``conf`` (``multi_label``)."""
    if multi_label:
        class_ids, anchors = np.nonzero(cls_prob > conf)
        scores = cls_prob[class_ids, anchors]
    else:
        best = cls_prob.max(0)
        anchors = np.flatnonzero(best > conf)  # the class is looked up only where it can matter
        scores, class_ids = best[anchors], None
    order = np.argsort(-scores, kind="stable")[:MAX_NMS]
    anchors, scores = anchors[order], scores[order]
    class_ids = cls_prob[:, anchors].argmax(0) if class_ids is None else class_ids[order]
    return anchors, scores, class_ids


def decode_numpy(pred: np.ndarray, conf: float, iou: float, max_det: int = MAX_DET,
                 multi_label: bool = False) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(B, 4 + nc, A)`` head output -> per image ``(boxes xyxy, scores, class ids)`` after NMS.

    Boxes stay in model-input pixels; map them back with
    :func:`engines.letterbox.unletterbox_boxes`.
    """
    results = []
    for p in np.asarray(pred, dtype=np.float32):
        anchors, scores, class_ids = _candidates(p[4:], conf, multi_label)
        boxes = xywh_to_xyxy(p[:4, anchors].T)
        kept = batched_nms_numpy(boxes, scores, class_ids, iou)[:max_det]
        results.append((boxes[kept], scores[kept], class_ids[kept].astype(np.int32)))
    return results


def decode_torch(pred: Any, conf: float, iou: float, max_det: int = MAX_DET,
                 multi_label: bool = False) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`decode_numpy` for a torch tensor (on any device); NMS by torchvision.

    Only the kept detections leave the device.
    """
    import torch
    from torchvision.ops import batched_nms

    results = []
    for p in pred.float():
        if multi_label:
            class_ids, anchors = torch.nonzero(p[4:] > conf, as_tuple=True)
            scores = p[4:][class_ids, anchors]
        else:
            scores, class_ids = p[4:].max(0)
            anchors = torch.nonzero(scores > conf).flatten()
            scores, class_ids = scores[anchors], class_ids[anchors]
        order = torch.argsort(scores, descending=True, stable=True)[:MAX_NMS]
        anchors, scores, class_ids = anchors[order], scores[order], class_ids[order]
        cx, cy, w, h = p[:4, anchors]
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        kept = batched_nms(boxes, scores, class_ids, iou)[:max_det]
        results.append((boxes[kept].cpu().numpy(), scores[kept].cpu().numpy(),
                        class_ids[kept].cpu().numpy().astype(np.int32)))
    return results
