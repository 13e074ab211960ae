"""Weighted box fusion of the boxes several views of one frame found (``lowlight.merge: wbf``).

NMS keeps the best box of each object and forgets the others: a box that every view saw ranks
no higher than one a single view saw. Fusion (after Solovyev et al., "Weighted boxes fusion",
2021) keeps the agreement instead:

* boxes are grouped per class around the boxes class-wise NMS would keep at ``iou`` (each box
  joins the kept box of its class it overlaps most; boxes of different classes never fuse);
* the fused box is the score-weighted mean of the group's boxes, one per view: each view's best
  (a view's own near-duplicates, left by its NMS, do not pull the box);
* the fused score is the mean over the views of each view's best score in the group, a view
  that saw nothing there counting 0: an object every view saw keeps its score, one seen by one
  view of three keeps a third of it.

Vectorised (one IoU matrix of every box against the groups' heads), so it keeps up with
detections at mAP's confidence floor (0.001, hundreds of boxes per view).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from engines.detections import Detections
from engines.evaluation import box_iou
from engines.nms import MAX_DET, batched_nms_numpy


def fuse(dets: Sequence[Detections], iou: float, max_det: int = MAX_DET) -> Detections:
    """The boxes of ``len(dets)`` views of one frame fused into one :class:`Detections`, best
    score first, at most ``max_det`` boxes (see the module's doc)."""
    if not dets:
        return Detections.empty()
    boxes = np.concatenate([d.boxes for d in dets]).astype(np.float64)
    if boxes.shape[0] == 0:
        return Detections.empty()
    scores = np.concatenate([d.scores for d in dets]).astype(np.float64)
    classes = np.concatenate([d.class_ids for d in dets])
    view = np.repeat(np.arange(len(dets)), [len(d.scores) for d in dets])
    names = [n for d in dets for n in d.names]
    heads = batched_nms_numpy(boxes, scores, classes, iou)
    overlap = box_iou(boxes, boxes[heads])
    overlap[classes[:, None] != classes[heads][None, :]] = -1.0
    group = overlap.argmax(axis=1)
    group[heads] = np.arange(len(heads))  # a head leads its own group
    best = np.zeros((len(heads), len(dets)))
    np.maximum.at(best, (group, view), scores)
    weight = np.where(scores >= best[group, view], scores, 0.0)  # each view's best box of a group
    total = np.zeros(len(heads))
    np.add.at(total, group, weight)
    fused = np.zeros((len(heads), 4))
    np.add.at(fused, group, boxes * weight[:, None])
    fused /= np.maximum(total, 1e-12)[:, None]
    fused_scores = best.mean(axis=1)
    order = np.argsort(-fused_scores, kind="stable")[:max_det]
    kept = heads[order]
    return Detections(fused[order].astype(np.float32), fused_scores[order].astype(np.float32),
                      classes[kept], tuple(names[i] for i in kept))
