"""The low-light views' merge (lowlight.merge: nms | wbf), the 'zoom' view (the frame seen at a
larger detector input, boxes mapped back) and their config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.config import LowLightConfig
from daemon.pipeline.fusion import fuse
from engines.evaluation import box_iou
from daemon.pipeline.views import merge
from engines.detections import Detections

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIGHTS = DATA / "weights" / "yolo11n_coco_fp32.pt"
FIXED = DATA / "weights" / "yolo11n_coco_int8_640.onnx"
PHOTO = DATA / "coco128" / "images"


def dets(boxes, scores, classes) -> Detections:
    return Detections.from_arrays(np.array(boxes, float).reshape(-1, 4), scores, classes,
                                  {0: "person", 2: "car"})


# -- weighted box fusion ----------------------------------------------------------------------
def test_boxes_of_one_object_from_several_views_fuse_into_their_weighted_mean():
    a = dets([[10, 10, 50, 90]], [0.8], [0])
    b = dets([[14, 10, 54, 90]], [0.4], [0])
    out = fuse([a, b], iou=0.55)
    assert len(out) == 1
    # score-weighted mean of the two boxes: x1 = (10 * 0.8 + 14 * 0.4) / 1.2
    np.testing.assert_allclose(out.boxes[0], [(10 * 0.8 + 14 * 0.4) / 1.2, 10,
                                              (50 * 0.8 + 54 * 0.4) / 1.2, 90], rtol=1e-5)
    # the mean of the views' scores: both saw it
    assert out.scores[0] == pytest.approx(0.6)
    assert out.names == ("person",)


def test_a_box_one_view_saw_is_kept_with_a_lower_score_than_one_every_view_saw():
    seen_twice = [[10, 10, 50, 90]]
    a = dets(seen_twice + [[200, 200, 260, 240]], [0.5, 0.9], [0, 2])
    b = dets(seen_twice, [0.5], [0])
    out = fuse([a, b], iou=0.55)
    assert len(out) == 2
    by_class = dict(zip(out.class_ids.tolist(), out.scores.tolist()))
    assert by_class[2] == pytest.approx(0.45)  # 0.9 seen by one view of two
    assert by_class[0] == pytest.approx(0.5)  # 0.5 seen by both
    assert out.class_ids[0] == 0, "agreement ranks the twice-seen box first"
    # with NMS the lone box keeps its score and ranks first
    nms = merge([a, b], 0.5, how="nms")
    assert nms.class_ids[0] == 2 and nms.scores[0] == pytest.approx(0.9)


def test_boxes_of_different_classes_never_fuse():
    box = [[10, 10, 50, 90]]
    out = fuse([dets(box, [0.7], [0]), dets(box, [0.6], [2])], iou=0.55)
    assert sorted(out.class_ids.tolist()) == [0, 2]
    np.testing.assert_allclose(out.boxes, np.array(box * 2, np.float32))
    assert sorted(out.scores.tolist()) == pytest.approx([0.3, 0.35])


def test_one_views_own_overlapping_boxes_count_once_in_the_score():
    """Two boxes of one view in one group: the view's best score counts, not their sum."""
    a = dets([[10, 10, 50, 90], [11, 10, 51, 90]], [0.8, 0.6], [0, 0])
    b = dets([[10, 10, 50, 90]], [0.4], [0])
    out = fuse([a, b], iou=0.55)
    assert len(out) == 1 and out.scores[0] == pytest.approx((0.8 + 0.4) / 2)


def test_fusion_keeps_at_most_max_det_boxes_best_first_and_handles_empty_views():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (400, 2))
    boxes = np.hstack([xy, xy + 8])
    a = dets(boxes, rng.uniform(0.001, 1, 400), np.zeros(400, int))
    out = fuse([a, Detections.empty()], iou=0.55, max_det=300)
    assert len(out) == 300 and np.all(np.diff(out.scores) <= 0)
    assert len(fuse([Detections.empty(), Detections.empty()], iou=0.55)) == 0
    assert len(merge([], how="wbf")) == 0


def test_merge_names_its_methods():
    a = dets([[10, 10, 50, 90]], [0.8], [0])
    assert merge([a], how="wbf") is a  # one view: nothing to merge
    with pytest.raises(ValueError, match="nms or wbf"):
        merge([a, a], how="mean")


def test_box_iou_as_fusion_uses_it():
    a = np.array([[0, 0, 10, 10], [0, 0, 5, 10]], float)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 0.0], [0.5, 0.0]])


# -- config ---------------------------------------------------------------------------------------
def test_config_validates_merge_and_zoom():
    cfg = LowLightConfig(views=["raw", "zoom", "mirror"], merge="wbf", merge_iou=0.55, zoom=1.5)
    assert cfg.views == ("raw", "zoom", "mirror") and cfg.merge == "wbf"
    for bad, what in (({"merge": "mean"}, "merge"), ({"merge_iou": 1.0}, "merge_iou"),
                      ({"zoom": 0.1}, "zoom"), ({"views": ["raw", "zoom", "zoom"]}, "twice"),
                      ({"views": ["tiles"]}, "views")):
        with pytest.raises(ValueError, match=what):
            LowLightConfig(**bad)


# -- the zoom view in the pipeline, a fake detector at the seam -------------------------------------
class ScaleRecorder:
    """Finds one box whose place depends on the scale it was asked for, and records the calls."""

    names = {0: "person"}
    backend = "fake"

    def __init__(self):
        self.calls: list[tuple[int, float]] = []

    def scaled_size(self, scale: float):
        return (int(640 * scale), int(640 * scale))

    def __call__(self, images, scale: float = 1.0):
        self.calls.append((len(images), scale))
        shift = 0.0 if scale == 1.0 else 2.0
        return [dets([[10 + shift, 10, 50 + shift, 90]], [0.6], [0]) for _ in images]

    def warmup(self, batch: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def test_pipeline_sends_the_zoom_view_in_its_own_call_at_the_configured_scale_and_fuses():
    from daemon.metrics import Metrics
    from daemon.pipeline.frames import Frame
    from daemon.pipeline.gate import LowLightGate
    from daemon.pipeline.process import Pipeline
    from daemon.pipeline.sinks import SinkSet

    det = ScaleRecorder()
    metrics = Metrics()
    metrics.add_camera("c")
    pipe = Pipeline(det, metrics, SinkSet([]))
    cfg = LowLightConfig(views=["raw", "mirror", "zoom"], merge="wbf", merge_iou=0.55, zoom=1.25)
    dark = np.full((120, 160, 3), 10, np.uint8)
    out = pipe.process([Frame("c", dark, 0, 0.0, 0.0)], [LowLightGate(cfg, "always", picture="raw")])
    assert sorted(det.calls, key=lambda c: c[1]) == [(2, 1.0), (1, 1.25)]
    # raw, the mirror flipped back (160 - [50, 10] = [110, 150]: another object) and zoom fused
    boxes = sorted(out[0].detections.boxes.tolist())
    assert len(boxes) == 2
    np.testing.assert_allclose(boxes[0], [11, 10, 51, 90], rtol=1e-5)  # raw + zoom averaged
    np.testing.assert_allclose(sorted(out[0].detections.scores.tolist()), [0.2, 0.4], rtol=1e-5)


# -- the zoom view on a real detector ---------------------------------------------------------------
@pytest.fixture(scope="module")
def dynamic_detector(tmp_path_factory) -> Path:
    if not WEIGHTS.exists():
        pytest.skip(f"real weights missing: {WEIGHTS} (see ../shared/data/README.md)")
    from daemon.cli.main import main

    out = tmp_path_factory.mktemp("zoom") / "yolo11n_320.onnx"
    assert main(["export", "yolo", "--weights", str(WEIGHTS), "--imgsz", "320", "--dynamic",
                 "--format", "onnx", "--out", str(out)]) == 0
    return out


def test_zoom_view_maps_boxes_back_to_the_frame(dynamic_detector):
    """The same photo seen at 320 and at 2x (640): the objects both find are in the same place
    in the photo's own pixels, and the larger input is what the engine was given."""
    import cv2

    from engines.yolo import Detector

    photo = sorted(PHOTO.glob("*.jpg"))[0]
    image = cv2.imread(str(photo))
    with Detector(dynamic_detector, conf=0.4, iou=0.7) as det:
        assert det.scaled_size(2.0) == (640, 640) and det.scaled_size(1.5) == (480, 480)
        small, big = det([image])[0], det([image], scale=2.0)[0]
    assert len(small) and len(big)
    h, w = image.shape[:2]
    for boxes in (small.boxes, big.boxes):
        assert boxes[:, [0, 2]].max() <= w + 1 and boxes[:, [1, 3]].max() <= h + 1
    iou = box_iou(small.boxes.astype(float), big.boxes.astype(float))
    same = iou.max(axis=1) > 0.7
    assert same.sum() >= max(1, len(small) // 2), f"boxes at 2x do not land on those at 1x: {iou.max(axis=1)}"


def test_zoom_view_on_a_fixed_size_engine_says_how_to_fix_it():
    if not FIXED.exists():
        pytest.skip(f"shared weights missing: {FIXED} (see ../shared/data/README.md)")
    from engines.base import EngineError
    from engines.yolo import Detector

    with Detector(FIXED, conf=0.25) as det:
        with pytest.raises(EngineError, match="--dynamic"):
            det([np.zeros((64, 64, 3), np.uint8)], scale=1.5)


class FixedSize(ScaleRecorder):
    def scaled_size(self, scale: float):
        from engines.base import EngineError

        raise EngineError("fixed.onnx: its input size is fixed at 640x640 (export it with --dynamic)")


def test_pipeline_leaves_the_zoom_view_out_for_a_fixed_size_detector_and_says_so(caplog):
    from daemon.metrics import Metrics
    from daemon.pipeline.frames import Frame
    from daemon.pipeline.gate import LowLightGate
    from daemon.pipeline.process import Pipeline
    from daemon.pipeline.sinks import SinkSet

    det = FixedSize()
    metrics = Metrics()
    metrics.add_camera("c")
    pipe = Pipeline(det, metrics, SinkSet([]))
    cfg = LowLightConfig(views=["raw", "zoom"], merge="wbf")
    dark = np.full((120, 160, 3), 10, np.uint8)
    gate = LowLightGate(cfg, "always", picture="raw")
    for seq in range(2):
        out = pipe.process([Frame("c", dark, seq, 0.0, 0.0)], [gate])
        assert len(out) == 1 and len(out[0].detections) == 1
    assert det.calls == [(1, 1.0), (1, 1.0)]
    said = [r.getMessage() for r in caplog.records if "zoom views are left out" in r.getMessage()]
    assert len(said) == 1 and "--dynamic" in said[0]


# -- what --tune tries and what it charges --------------------------------------------------------
def test_tune_charges_a_zoom_view_its_pixels_and_tries_raw_with_up_to_three_others():
    from daemon.bench import night

    assert night.view_cost(("raw", "mirror"), zoom=0.65) == 2
    assert night.view_cost(("raw", "mirror", "zoom", "zoom_mirror"), zoom=0.65) == pytest.approx(2 + 2 * 0.4225)
    assert night.view_cost(("raw", "zoom"), zoom=1.5) == pytest.approx(3.25)

    class Run:
        results = {m: [] for m in ("raw", "clahe", "mirror", "zoom", "zoom_mirror")}

    sets = night.view_sets(Run())
    assert ("raw",) not in sets and ("zoom",) in sets and ("raw", "mirror", "zoom", "zoom_mirror") in sets
    assert all(len(s) <= night.MAX_VIEWS for s in sets) and len(sets) == len(set(sets)) == 4 + 4 + 6 + 4
    assert night.merges(("raw",)) == [("nms", 0.5)] and ("wbf", 0.55) in night.merges(("raw", "zoom"))


def test_a_swapped_in_detector_is_asked_again_whether_it_can_zoom():
    from daemon.metrics import Metrics
    from daemon.pipeline.frames import Frame
    from daemon.pipeline.gate import LowLightGate
    from daemon.pipeline.process import Pipeline
    from daemon.pipeline.sinks import SinkSet

    metrics = Metrics()
    metrics.add_camera("c")
    first, fixed = ScaleRecorder(), FixedSize()
    pipe = Pipeline(first, metrics, SinkSet([]))
    gate = LowLightGate(LowLightConfig(views=["raw", "zoom"]), "always", picture="raw")
    dark = np.full((120, 160, 3), 10, np.uint8)
    assert len(pipe.process([Frame("c", dark, 0, 0.0, 0.0)], [gate])) == 1
    pipe.detector = fixed  # as the service swaps in a checked int8 sibling
    assert len(pipe.process([Frame("c", dark, 1, 0.0, 0.0)], [gate])) == 1
    assert first.calls == [(1, 1.0), (1, 0.65)] and fixed.calls == [(1, 1.0)]
