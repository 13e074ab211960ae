"""The pictures the detector looks at for a frame the low-light gate picks, and how their boxes
are merged.

A dark frame can be shown to the detector more than once: as decoded (``raw``), after the
enhancer (``enhanced``) and with CLAHE on its luma (``clahe``). Each picture finds some objects
the others miss, so the boxes of all of them are pooled and merged by class-wise NMS at
:data:`MERGE_IOU`: one object seen in two pictures stays one box, with the better score.
``lowlight.views`` in the config names the pictures; all of them go through the detector in the
same batch. What this buys and costs is measured, not assumed (docs/DENOISER.md, "Gate"):
``duskwatch bench night --tune`` picks the views together with the gate's thresholds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engines.detections import Detections
from engines.nms import MAX_DET, batched_nms_numpy

VIEWS = ("raw", "enhanced", "clahe")

# Chosen on exdark_dev/train (never on val, where the gate is tuned): raw + enhanced + CLAHE with
# YOLO11n, AP50 0.473 at 0.5, 0.471 at 0.6, 0.465 at 0.7 (the detector's own NMS IoU).
MERGE_IOU = 0.5


def clahe_luma(image: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the luma channel (YCrCb) of a BGR
    image: local contrast without touching the colours."""
    import cv2

    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
    ycc[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)


def merge(dets: Sequence[Detections], iou: float = MERGE_IOU, max_det: int = MAX_DET) -> Detections:
    """The boxes of several pictures of one frame as one :class:`Detections`: pooled, then
    class-wise NMS at ``iou``, best score first, at most ``max_det`` boxes."""
    if len(dets) == 1:
        return dets[0]
    if not dets:
        return Detections.empty()
    boxes = np.concatenate([d.boxes for d in dets])
    scores = np.concatenate([d.scores for d in dets])
    class_ids = np.concatenate([d.class_ids for d in dets])
    names = [n for d in dets for n in d.names]
    keep = batched_nms_numpy(boxes, scores, class_ids, iou)[:max_det]
    return Detections(boxes[keep], scores[keep], class_ids[keep], tuple(names[i] for i in keep))


def shown(views: Sequence[str]) -> str:
    """Which picture snapshots, clips and events show: the most processed one."""
    for name in ("enhanced", "clahe"):
        if name in views:
            return name
    return "raw"
