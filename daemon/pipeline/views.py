"""The pictures the detector looks at for a frame the low-light gate picks, and how their boxes
are merged.

A dark frame can be shown to the detector more than once: as decoded (``raw``), after the
enhancer (``enhanced``), with CLAHE on its luma (``clahe``), mirrored left to right
(``mirror``, its boxes flipped back), and at another input size (``zoom``, ``zoom_mirror``:
``lowlight.zoom`` times the detector's own, the detector maps the boxes back; below 1 the frame
is seen smaller, which costs ``zoom`` squared of a pass). Each picture finds some objects the
others miss, so the boxes of all of them are pooled and merged (``lowlight.merge``): by
class-wise NMS at ``lowlight.merge_iou`` (one object seen in two pictures stays one box, with
the better score) or by weighted box fusion (:mod:`daemon.pipeline.fusion`: one object's boxes
averaged, its score the mean over the views, so agreement ranks a box higher). ``mirror`` adds no light, only a
second look: it is the control that tells what a brightened picture adds beyond looking twice.
``lowlight.views`` in the config names the pictures; all of them go through the detector in the
same batch. What this buys and costs is measured, not assumed (docs/DENOISER.md, "Gate"):
``duskwatch bench night --tune`` picks the views together with the gate's thresholds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from daemon.pipeline.fusion import fuse
from engines.detections import Detections
from engines.nms import MAX_DET, batched_nms_numpy

VIEWS = ("raw", "enhanced", "clahe", "mirror", "zoom", "zoom_mirror")
# Views the detector sees at another input size (lowlight.zoom times its own), in a call of
# their own: the picture is the raw frame (mirrored for zoom_mirror), the detector rescales it.
SCALED = frozenset({"zoom", "zoom_mirror"})
MIRRORED = frozenset({"mirror", "zoom_mirror"})

# Chosen on exdark_dev/train (never on val, where the gate is tuned): raw + enhanced + CLAHE with
# YOLO11n, AP50 0.473 at 0.5, 0.471 at 0.6, 0.465 at 0.7 (the detector's own NMS IoU). Measured
# on 29 Nov with a one-off script merging bench night's single-view results at each IoU (not
# kept); `bench night --set exdark_train=.../train --tune-on exdark_train` with this constant
# changed repeats it.
MERGE_IOU = 0.5


def clahe_luma(image: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the luma channel (YCrCb) of a BGR
    image: local contrast without touching the colours."""
    import cv2

    ycc = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
    ycc[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR)


def mirror(image: np.ndarray) -> np.ndarray:
    """The frame flipped left to right (a contiguous copy, as the engines want)."""
    return np.ascontiguousarray(image[:, ::-1])


def unmirror(dets: Detections, width: int) -> Detections:
    """Boxes found on :func:`mirror` of a ``width``-pixel frame, in the frame's own pixels."""
    boxes = dets.boxes.copy()
    boxes[:, [0, 2]] = width - dets.boxes[:, [2, 0]]
    return Detections(boxes, dets.scores, dets.class_ids, dets.names)


def picture(view: str, raw: np.ndarray, enhanced: np.ndarray | None) -> np.ndarray:
    """The picture of a frame that ``view`` shows the detector (``enhanced``: the enhancer's
    output, made beforehand in one batch)."""
    if view == "enhanced":
        if enhanced is None:
            raise ValueError("the enhanced view needs the enhancer's output")
        return enhanced
    return {"raw": lambda im: im, "zoom": lambda im: im, "clahe": clahe_luma, "mirror": mirror,
            "zoom_mirror": mirror}[view](raw)


def in_frame(view: str, dets: Detections, width: int) -> Detections:
    """A view's detections in the frame's own pixels (only the mirrored views move them; the
    detector maps a rescaled view's boxes back itself)."""
    return unmirror(dets, width) if view in MIRRORED else dets


def merge(dets: Sequence[Detections], iou: float = MERGE_IOU, max_det: int = MAX_DET,
          how: str = "nms") -> Detections:
    """The boxes of several pictures of one frame as one :class:`Detections`, best score first,
    at most ``max_det`` boxes: pooled, then class-wise NMS at ``iou`` (``how="nms"``), or fused
    (``how="wbf"``, :func:`daemon.pipeline.fusion.fuse`: matched boxes averaged, scores
    averaged over the views)."""
    if len(dets) == 1:
        return dets[0]
    if not dets:
        return Detections.empty()
    if how == "wbf":
        return fuse(dets, iou, max_det)
    if how != "nms":
        raise ValueError(f"merge {how!r}: choose nms or wbf")
    boxes = np.concatenate([d.boxes for d in dets])
    scores = np.concatenate([d.scores for d in dets])
    class_ids = np.concatenate([d.class_ids for d in dets])
    names = [n for d in dets for n in d.names]
    keep = batched_nms_numpy(boxes, scores, class_ids, iou)[:max_det]
    return Detections(boxes[keep], scores[keep], class_ids[keep], tuple(names[i] for i in keep))
