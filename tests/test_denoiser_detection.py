"""Detection-aware training signal (export/denoiser/detection.py) with the real COCO YOLO11n."""

from pathlib import Path

import numpy as np
import pytest
import torch

from export.denoiser import detection

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "yolo11n_coco_fp32.pt"
COCO = DATA / "coco128"
needs_data = pytest.mark.skipif(not (WEIGHTS.is_file() and COCO.is_dir()),
                                reason="needs ../shared/data (weights/yolo11n_coco_fp32.pt and coco128)")


def _photo():
    rgb = np.zeros((100, 200, 3), np.float32)
    boxes = np.array([[10, 10, 50, 50], [150, 20, 199, 90], [90, 0, 110, 3]], np.float32)
    return detection.BoxPhoto(rgb, boxes, np.array([0, 1, 2]))


def test_crop_keeps_clips_and_drops_boxes():
    rng = np.random.default_rng(0)
    p = _photo()
    for _ in range(20):
        img, boxes, labels = detection.crop_with_boxes(p, 80, rng)
        assert img.shape == (80, 80, 3) and len(boxes) == len(labels)
        assert np.all(boxes >= 0) and np.all(boxes <= 80)
        assert np.all(boxes[:, 2] - boxes[:, 0] >= 4) and np.all(boxes[:, 3] - boxes[:, 1] >= 4)
        assert 2 not in labels  # the 3-px-high box never survives


def test_batch_is_in_ultralytics_layout():
    b = detection.detection_batch([_photo()], 3, 96, np.random.default_rng(1))
    assert b["img"].shape == (3, 3, 96, 96)
    assert len(b["batch_idx"]) == len(b["cls"]) == len(b["bboxes"])
    assert torch.all((b["bboxes"] >= 0) & (b["bboxes"] <= 1))


@needs_data
def test_frozen_detector_loss_reaches_the_image_and_prefers_visible_objects():
    from engines.evaluation import EXDARK_COCO_IDS

    torch.set_num_threads(1)
    photos, classes = detection.load_box_photos(COCO, 256, EXDARK_COCO_IDS)
    photos = [p for p in photos if len(p.labels)][:8]
    det = detection.FrozenDetector(WEIGHTS, classes, torch.device("cpu"))
    before = {k: v.clone() for k, v in det.model.state_dict().items()}
    batch = detection.detection_batch(photos, 4, 256, np.random.default_rng(0))
    img = batch["img"].clone().requires_grad_(True)
    loss = det.loss(img, batch)
    loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert all(torch.equal(v, det.model.state_dict()[k]) for k, v in before.items())
    with torch.no_grad():
        dark = det.loss(batch["img"] * 0.03, batch)
    assert dark > loss.detach()  # near-black photos make the detector's loss worse


@needs_data
def test_feature_distance_is_zero_for_the_target_and_grows_with_darkness():
    torch.set_num_threads(1)
    det = detection.FrozenDetector(WEIGHTS, (0,), torch.device("cpu"))
    photos, _ = detection.load_box_photos(COCO, 128)
    target = detection.detection_batch(photos[:4], 2, 128, np.random.default_rng(0))["img"]
    assert detection.feature_distance(det, target, target).item() < 1e-8
    dim = (target * 0.5).requires_grad_(True)
    d_half = detection.feature_distance(det, dim, target)
    d_dark = detection.feature_distance(det, target * 0.05, target)
    d_half.backward()
    assert 0 < d_half.item() < d_dark.item() and dim.grad.abs().sum() > 0


def test_spread_subset_takes_photos_across_the_whole_set():
    from engines.evaluation import LabelledImage, LabelledSet

    ims = tuple(LabelledImage(Path(f"{i:03d}.jpg"), np.zeros((0, 4)), np.zeros(0, np.int64)) for i in range(50))
    sub = detection.spread_subset(LabelledSet("x", Path("."), ims, None), 5)
    assert [im.path.name for im in sub.images] == ["000.jpg", "012.jpg", "024.jpg", "037.jpg", "049.jpg"]
    assert detection.spread_subset(LabelledSet("x", Path("."), ims, None), None).images == ims
