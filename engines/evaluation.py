"""Detection accuracy on labelled photo sets: COCO-style AP50 and AP50-95, as ultralytics computes it.

Pure numpy (plus OpenCV to read an image's size), so both the daemon's ``bench night`` and the
export side's training validation can use it. Two label formats are read:

* ExDark dev (``../shared/data/exdark_dev``): ``images/<stem>.jpg`` and ``labels/<stem>.json``
  holding ``objects: [{coco_class_id, box_xyxy}]`` in pixels of the stored image;
* YOLO txt (coco128 and the darkened sets ``duskwatch degrade`` writes): ``labels/<stem>.txt``
  with one ``cls cx cy w h`` line per box, normalised by the image's width and height.

The metric follows the COCO protocol (Lin et al. 2014, "Microsoft COCO: Common Objects in
Context") the way ultralytics' ``DetectionValidator`` implements it, so the two agree:

1. per image, detections of a class are matched to unclaimed ground-truth boxes of the same
   class in descending confidence order, each taking the unclaimed box of highest IoU, separately
   at each IoU threshold 0.50, 0.55, ..., 0.95 (:func:`match_image`);
2. per class, all detections of the set sorted by confidence give a precision/recall curve; the
   precision envelope (running maximum from the right) is sampled at 101 recall points by linear
   interpolation, precision dropping to 0 past the largest recall reached, and integrated with the
   trapezoid rule (:func:`average_precision`);
3. AP50 is the mean over classes at IoU 0.5, AP50-95 the mean over classes and thresholds. The
   classes are those of the chosen set that have at least one ground-truth box in the images
   scored; a class with boxes but no detections scores 0.

Matching is done once per image (:class:`ImageMatches`); :func:`summarize` then scores any subset
of images (brightness bins, the images a gate picked) without matching again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: IoU thresholds of COCO's AP50-95: 0.50, 0.55, ..., 0.95.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
#: Recall points at which the precision envelope is sampled (COCO's 101-point interpolation).
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: ExDark's 12 classes as COCO-80 ids: person, bicycle, car, motorcycle, bus, boat, cat, dog,
#: bottle, cup, chair, dining table.
EXDARK_COCO_IDS = (0, 1, 2, 3, 5, 8, 15, 16, 39, 41, 56, 60)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DatasetError(ValueError):
    """A labelled set is missing, empty or malformed; the message says what and how to fix it."""


# -- labelled sets --------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelledImage:
    """One photo and its ground truth: ``boxes`` (N, 4) xyxy pixels, ``classes`` (N,) COCO-80 ids."""

    path: Path
    boxes: np.ndarray
    classes: np.ndarray

    @property
    def stem(self) -> str:
        return self.path.stem


@dataclass(frozen=True)
class LabelledSet:
    """A folder of labelled photos and the classes it is scored on (``None``: every labelled class)."""

    name: str
    root: Path
    images: tuple[LabelledImage, ...]
    classes: tuple[int, ...] | None

    def __len__(self) -> int:
        return len(self.images)


def read_labelled_set(root: str | Path, name: str | None = None, limit: int | None = None) -> LabelledSet:
    """Read ``root/images`` and ``root/labels`` (ExDark JSON or YOLO txt, told apart by the files).

    ExDark sets are scored on :data:`EXDARK_COCO_IDS`, YOLO sets on every class they label.
    ``limit`` keeps the first N images in name order (tests, quick runs).
    """
    root = Path(root)
    images = _image_files(root)
    if limit is not None:
        images = images[:limit]
    labels = root / "labels"
    if any(labels.glob("*.json")):
        records = tuple(_read_exdark(p, labels / f"{p.stem}.json") for p in images)
        classes: tuple[int, ...] | None = EXDARK_COCO_IDS
    else:
        records = tuple(_read_yolo(p, labels / f"{p.stem}.txt") for p in images)
        classes = None
    return LabelledSet(name or root.name, root, records, classes)


def _image_files(root: Path) -> list[Path]:
    folder = root / "images"
    if not folder.is_dir():
        raise DatasetError(f"{root}: no images/ folder; a labelled set is images/<stem>.jpg with "
                           "labels/<stem>.json (ExDark) or labels/<stem>.txt (YOLO)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _read_exdark(image: Path, label: Path) -> LabelledImage:
    try:
        objects = json.loads(label.read_text())["objects"]
        boxes = np.array([o["box_xyxy"] for o in objects], np.float64).reshape(-1, 4)
        classes = np.array([o["coco_class_id"] for o in objects], np.int64)
    except FileNotFoundError:
        raise DatasetError(f"{image}: label file {label} is missing") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{label}: not an ExDark label (objects[{{coco_class_id, box_xyxy}}]): "
                           f"{exc}") from None
    return LabelledImage(image, boxes, classes)


def _read_yolo(image: Path, label: Path) -> LabelledImage:
    if not label.is_file():
        raise DatasetError(f"{image}: label file {label} is missing (an image without objects "
                           "needs an empty one)")
    try:
        rows = np.array([ln.split() for ln in label.read_text().splitlines() if ln.strip()],
                        np.float64).reshape(-1, 5)
    except ValueError:
        raise DatasetError(f"{label}: expected lines of 5 numbers 'cls cx cy w h'") from None
    h, w = image_size(image)
    cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    return LabelledImage(image, boxes, rows[:, 0].astype(np.int64))


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: cannot be read as an image")
    return int(img.shape[0]), int(img.shape[1])


# -- matching -------------------------------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


@dataclass(frozen=True)
class ImageMatches:
    """One image's detections, matched: ``tp`` (D, T) bool per IoU threshold, ``scores`` (D,),
    ``pred_classes`` (D,), and the image's ground-truth ``gt_classes`` (G,)."""

    tp: np.ndarray
    scores: np.ndarray
    pred_classes: np.ndarray
    gt_classes: np.ndarray


def match_image(pred_boxes: np.ndarray, scores: np.ndarray, pred_classes: np.ndarray,
                gt_boxes: np.ndarray, gt_classes: np.ndarray,
                classes: Iterable[int] | None = None,
                thresholds: np.ndarray = IOU_THRESHOLDS) -> ImageMatches:
    """Match one image's detections to its ground truth (greedy by confidence, best IoU first).

    ``classes``: score only these ids; detections and boxes of other classes are dropped.
    """
    pred_boxes = np.asarray(pred_boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    pred_classes = np.asarray(pred_classes, np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_classes = np.asarray(gt_classes, np.int64).reshape(-1)
    if not len(pred_boxes) == len(scores) == len(pred_classes):
        raise ValueError(f"match_image: {len(pred_boxes)} boxes, {len(scores)} scores and "
                         f"{len(pred_classes)} classes; they must be the same length")
    if classes is not None:
        keep = np.isin(pred_classes, list(classes))
        pred_boxes, scores, pred_classes = pred_boxes[keep], scores[keep], pred_classes[keep]
        gt_keep = np.isin(gt_classes, list(classes))
        gt_boxes, gt_classes = gt_boxes[gt_keep], gt_classes[gt_keep]
    order = np.argsort(-scores, kind="stable")
    pred_boxes, scores, pred_classes = pred_boxes[order], scores[order], pred_classes[order]
    tp = _greedy_match(box_iou(gt_boxes, pred_boxes), gt_classes, pred_classes, thresholds)
    return ImageMatches(tp, scores, pred_classes, gt_classes)


def _greedy_match(iou: np.ndarray, gt_classes: np.ndarray, pred_classes: np.ndarray,
                  thresholds: np.ndarray) -> np.ndarray:
    """(D, T) true positives: detection j (in confidence order) claims, at each threshold, the
    unclaimed same-class box of highest IoU, when that IoU reaches the threshold."""
    n_t = len(thresholds)
    tp = np.zeros((iou.shape[1], n_t), bool)
    if iou.size == 0:
        return tp
    iou = iou * (gt_classes[:, None] == pred_classes[None, :])
    claimed = np.zeros((iou.shape[0], n_t), bool)
    cols = np.arange(n_t)
    for j in np.flatnonzero((iou >= thresholds.min()).any(axis=0)):
        free = np.where(claimed, 0.0, iou[:, j, None])  # (G, T)
        best = free.argmax(axis=0)
        tp[j] = free[best, cols] >= thresholds
        claimed[best, cols] |= tp[j]
    return tp


# -- average precision ----------------------------------------------------------------------------
def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, sampled at :data:`RECALL_POINTS` (trapezoid rule).

    ``recall``/``precision``: the curve over detections sorted by descending confidence.
    Precision is 1 at recall 0 and drops to 0 past the last recall reached.
    """
    recall = np.asarray(recall, np.float64)
    last = recall[-1] if len(recall) else 1.0
    r = np.concatenate(([0.0], recall, [last, 1.0]))
    p = np.concatenate(([1.0], precision, [0.0, 0.0]))
    envelope = np.flip(np.maximum.accumulate(np.flip(p)))
    return float(np.trapezoid(np.interp(RECALL_POINTS, r, envelope), RECALL_POINTS))


def class_ap(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> np.ndarray:
    """AP at each threshold (T,) of one class from its detections' ``tp`` (D, T) and ``scores``."""
    if n_gt == 0 or len(scores) == 0:
        return np.zeros(tp.shape[1] if tp.ndim == 2 else len(IOU_THRESHOLDS))
    order = np.argsort(-scores, kind="stable")
    tpc = np.cumsum(tp[order], axis=0)
    fpc = np.cumsum(~tp[order], axis=0)
    recall = tpc / n_gt
    precision = tpc / (tpc + fpc)
    return np.array([average_precision(recall[:, t], precision[:, t]) for t in range(tp.shape[1])])


@dataclass(frozen=True)
class APResult:
    """AP of a set of images: ``ap50``, ``ap50_95``, per-class AP (class id -> (AP50, AP50-95)),
    and the counts behind them."""

    ap50: float
    ap50_95: float
    per_class: dict[int, tuple[float, float]] = field(default_factory=dict)
    images: int = 0
    boxes: int = 0
    detections: int = 0

    def to_json(self) -> dict:
        """Rounded figures; AP is null (not NaN, which JSON lacks) where there was no ground truth."""
        rnd = lambda v: None if np.isnan(v) else round(v, 4)  # noqa: E731
        return {"ap50": rnd(self.ap50), "ap50_95": rnd(self.ap50_95), "images": self.images,
                "boxes": self.boxes}


def summarize(matches: Sequence[ImageMatches], classes: Iterable[int] | None = None) -> APResult:
    """COCO-style AP over ``matches`` (one per image), averaged over the classes in ``classes``
    (default: all) that have ground truth in these images. No ground truth at all: AP is NaN."""
    n_t = len(IOU_THRESHOLDS)
    tp = np.concatenate([m.tp for m in matches]) if matches else np.zeros((0, n_t), bool)
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    pred = np.concatenate([m.pred_classes for m in matches]) if matches else np.zeros(0, np.int64)
    gt = np.concatenate([m.gt_classes for m in matches]) if matches else np.zeros(0, np.int64)
    present, counts = np.unique(gt, return_counts=True)
    if classes is not None:
        wanted = np.isin(present, list(classes))
        present, counts = present[wanted], counts[wanted]
    per_class = {}
    for c, n in zip(present, counts):
        sel = pred == c
        ap = class_ap(tp[sel], scores[sel], int(n))
        per_class[int(c)] = (float(ap[0]), float(ap.mean()))
    if not per_class:
        return APResult(float("nan"), float("nan"), {}, len(matches), 0, len(scores))
    ap50 = float(np.mean([v[0] for v in per_class.values()]))
    ap50_95 = float(np.mean([v[1] for v in per_class.values()]))
    return APResult(ap50, ap50_95, per_class, len(matches), int(counts.sum()), len(scores))


def evaluate(labelled: LabelledSet, detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
             ) -> APResult:
    """AP of ``detections`` (per image ``(boxes xyxy, scores, class ids)``, in set order)."""
    if len(detections) != len(labelled.images):
        raise ValueError(f"evaluate: {len(detections)} detection lists for {len(labelled.images)} "
                         f"images of {labelled.name}")
    matches = [match_image(b, s, c, im.boxes, im.classes, labelled.classes)
               for im, (b, s, c) in zip(labelled.images, detections)]
    return summarize(matches, labelled.classes)
