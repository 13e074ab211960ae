"""Detection-aware training signal: a frozen COCO detector judges the enhanced frames.

Enhancers made for human eyes can lower a detector's accuracy on dark photos; detection-aware
ones (MAET, Cui et al. 2021; YOLA, Hong et al. 2024; DENet, Qin et al. 2022) raise it by
back-propagating the detector's loss into the enhancer. Here the detector is a real, frozen
YOLO (ultralytics' ``DetectionModel``, weights never updated) and its own training loss
(ultralytics' ``v8DetectionLoss``: task-aligned assignment, BCE classification, CIoU + DFL box
terms; Jocher et al.) is computed on the enhanced frames of real night photos with boxes
(``exdark_dev/train``), restricted to the classes those labels cover: an object of another COCO
class in the photo is unlabelled, not background.

Only the enhancer learns; gradients flow through the frozen detector into the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import torch

#: ultralytics' default loss gains (``cfg/default.yaml``: box 7.5, cls 0.5, dfl 1.5)
LOSS_GAINS = {"box": 7.5, "cls": 0.5, "dfl": 1.5}


@dataclass
class BoxPhoto:
    """A photo (float RGB HxWx3 in [0,1]) with boxes (N,4 xyxy pixels) and class indices into the
    scored classes (0..len(classes)-1)."""

    rgb: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def load_box_photos(root: str | Path, short_side: int, classes: tuple[int, ...] | None = None) -> tuple[list[BoxPhoto], tuple[int, ...]]:
    """Labelled photos under ``root`` (ExDark JSON or YOLO txt, :mod:`engines.evaluation`),
    resized so the short side is ``short_side``; returns them and the scored COCO class ids."""
    from engines.evaluation import read_labelled_set

    labelled = read_labelled_set(root)
    classes = tuple(classes or labelled.classes or sorted({int(c) for im in labelled.images for c in im.classes}))
    index = {c: i for i, c in enumerate(classes)}
    photos = []
    for im in labelled.images:
        bgr = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{im.path}: OpenCV could not read this image")
        s = short_side / min(bgr.shape[:2])
        bgr = cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        keep = np.isin(im.classes, classes)
        labels = np.array([index[int(c)] for c in im.classes[keep]], np.int64)
        photos.append(BoxPhoto(bgr[..., ::-1].astype(np.float32) / 255.0, im.boxes[keep] * s, labels))
    if not photos:
        raise ValueError(f"{root}: no labelled photos found")
    return photos, classes


def crop_with_boxes(p: BoxPhoto, crop: int, rng: np.random.Generator, min_kept: float = 0.4
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random ``crop x crop`` window (and a horizontal flip half the time); boxes are clipped to
    it and kept when at least ``min_kept`` of their area and 4 px per side remain."""
    h, w = p.rgb.shape[:2]
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    img = p.rgb[top:top + crop, left:left + crop]
    b = p.boxes - np.array([left, top, left, top], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    c = np.clip(b, 0, crop)
    kept_area = (c[:, 2] - c[:, 0]) * (c[:, 3] - c[:, 1])
    keep = (kept_area >= min_kept * np.maximum(area, 1e-6)) & (c[:, 2] - c[:, 0] >= 4) & (c[:, 3] - c[:, 1] >= 4)
    c, labels = c[keep], p.labels[keep]
    if rng.random() < 0.5:
        img = img[:, ::-1]
        c = np.stack([crop - c[:, 2], c[:, 1], crop - c[:, 0], c[:, 3]], axis=1) if len(c) else c
    return np.ascontiguousarray(img), c, labels


def detection_batch(photos: list[BoxPhoto], batch: int, crop: int, rng: np.random.Generator) -> dict:
    """``{"img": [B,3,crop,crop] float32, "batch_idx", "cls", "bboxes" (normalised cx cy w h)}``:
    ultralytics' batch layout."""
    imgs, idx, cls, boxes = [], [], [], []
    for i in range(batch):
        img, b, labels = crop_with_boxes(photos[int(rng.integers(len(photos)))], crop, rng)
        imgs.append(img.transpose(2, 0, 1))
        xywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
        boxes.append(xywh.reshape(-1, 4) / crop)
        cls.append(labels)
        idx.append(np.full(len(labels), i))
    return {"img": torch.from_numpy(np.stack(imgs).astype(np.float32)),
            "batch_idx": torch.from_numpy(np.concatenate(idx).astype(np.float32)),
            "cls": torch.from_numpy(np.concatenate(cls).astype(np.float32)),
            "bboxes": torch.from_numpy(np.concatenate(boxes).astype(np.float32))}


class FrozenDetector:
    """An ultralytics YOLO ``.pt`` whose weights never change; :meth:`loss` is its training loss
    on the given images (gradients reach the images), over the ``classes`` (COCO ids) only."""

    def __init__(self, weights: str | Path, classes: tuple[int, ...], device):
        try:
            from ultralytics import YOLO
            from ultralytics.utils.loss import v8DetectionLoss
        except ImportError as exc:
            raise ImportError(f"detection-aware training needs ultralytics ({exc}); "
                              "pip install 'duskwatch[export]'") from None
        if not Path(weights).is_file():
            raise FileNotFoundError(f"{weights}: detector weights not found (e.g. "
                                    "../shared/data/weights/yolo11n_coco_fp32.pt)")
        self.model = YOLO(str(weights)).model.to(device).float()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.args = SimpleNamespace(**LOSS_GAINS)
        self.classes = torch.as_tensor(classes, dtype=torch.long, device=device)
        self.criterion = v8DetectionLoss(self.model)
        self.criterion.nc = len(classes)  # score only the labelled classes
        self.criterion.assigner.num_classes = len(classes)
        self.device = device

    def loss(self, images: torch.Tensor, batch: dict) -> torch.Tensor:
        """Mean per-image detection loss (box + cls + dfl, ultralytics' gains)."""
        self.model.train()  # the head returns raw maps for the loss; no batch-norm statistics
        preds = self.model(images)  # (batch norm is fused in these weights: train mode is inert)
        preds = {**preds, "scores": preds["scores"].index_select(1, self.classes)}
        batch = {k: v.to(self.device) for k, v in batch.items() if k != "img"}
        total, _ = self.criterion(preds, batch)
        return total.sum() / images.shape[0]


def spread_subset(labelled, limit: int | None):
    """``limit`` photos spread evenly over the set in name order (ExDark names group photos by
    class folder: the first N would score a few classes only; measured: the first 100 of
    exdark_dev/val gave +0.09 AP50 for an enhancer that gains +0.008 on all 300)."""
    from dataclasses import replace

    n = len(labelled.images)
    if limit is None or limit >= n:
        return labelled
    idx = np.linspace(0, n - 1, limit).round().astype(int)
    return replace(labelled, images=tuple(labelled.images[i] for i in idx))


class DetectionScore:
    """AP50 / AP50-95 of a frozen detector on labelled photos, after an optional enhancer: the
    training run's view of what the enhancer does to detection (choose settings with it; the
    figures to report come from ``tests/bench`` through the exported engines).

    ``limit`` photos are taken spread over the set (:func:`spread_subset`). Each photo is scaled
    so its long side is ``imgsz`` and edge-padded to a multiple of ``multiple``;
    detections use ultralytics' validation settings (conf 0.001, IoU 0.7, 300 per image) and
    :mod:`engines.evaluation`'s COCO matching."""

    def __init__(self, detector: FrozenDetector, root: str | Path, limit: int | None, imgsz: int = 640,
                 multiple: int = 64):
        from engines.evaluation import read_labelled_set

        self.detector, self.imgsz, self.multiple = detector, imgsz, multiple
        self.labelled = spread_subset(read_labelled_set(root), limit)
        self.inputs = [self._prepare(im.path) for im in self.labelled.images]

    def _prepare(self, path: Path) -> tuple[torch.Tensor, float, tuple[int, int]]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        s = self.imgsz / max(bgr.shape[:2])
        bgr = cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
        h, w = bgr.shape[:2]
        ph, pw = -h % self.multiple, -w % self.multiple
        bgr = cv2.copyMakeBorder(bgr, 0, ph, 0, pw, cv2.BORDER_REFLECT_101)
        x = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1))).float() / 255.0
        return x[None], s, (h, w)

    @torch.no_grad()
    def __call__(self, enhance=None) -> dict[str, float]:
        from engines.evaluation import evaluate
        from ultralytics.utils.nms import non_max_suppression

        model = self.detector.model.eval()
        dets = []
        for x, s, (h, w) in self.inputs:
            x = x.to(self.detector.device)
            if enhance is not None:
                x = enhance(x)
            pred = model(x)
            pred = pred[0] if isinstance(pred, (list, tuple)) else pred
            out = non_max_suppression(pred, conf_thres=0.001, iou_thres=0.7, max_det=300)[0].cpu().numpy()
            boxes = out[:, :4].copy()
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            dets.append((boxes / s, out[:, 4], out[:, 5].astype(np.int64)))
        r = evaluate(self.labelled, dets)
        return {"ap50": r.ap50, "ap50_95": r.ap50_95}


def feature_distance(detector: FrozenDetector, enhanced: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Perceptual distance in the frozen detector's own feature space: the mean over its three
    detection-head inputs (neck outputs P3, P4, P5) of ``||F(enhanced) - F(target)||^2 /
    ||F(target)||^2`` (relative, so every scale counts alike). For paired data (a clean photo
    and its synthetic night version) this asks the enhancer to make the night frame look to the
    detector as the photo does (the feature-level objective of MAET, Cui et al. 2021, and of
    perceptual losses, Johnson et al. 2016), a denser signal than the detection loss."""
    detector.model.train()
    with torch.no_grad():
        want = detector.model(target)["feats"]
    got = detector.model(enhanced)["feats"]
    terms = [((g - w) ** 2).mean() / (w ** 2).mean().clamp_min(1e-6) for g, w in zip(got, want)]
    return torch.stack(terms).mean()
