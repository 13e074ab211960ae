"""duskwatch bench night: detection AP on labelled photos through the daemon's own pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from daemon.bench import night
from daemon.config import LowLightConfig
from engines.evaluation import ImageMatches, LabelledImage, LabelledSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WEIGHTS = DATA / "weights"
DETECTORS = [WEIGHTS / "yolo11n_coco_int8_640.onnx", WEIGHTS / "yolov8n_coco_int8_640.onnx"]
needs_data = pytest.mark.skipif(
    not all(p.exists() for p in DETECTORS + [DATA / "exdark_dev" / "val", DATA / "coco128"]),
    reason=f"shared data missing: {DATA} with weights/, exdark_dev/val and coco128 "
           "(see ../shared/data/README.md)")


@pytest.fixture(scope="module")
def enhancer(tmp_path_factory) -> Path:
    from daemon.cli.main import main

    out = tmp_path_factory.mktemp("engines") / "denoiser.onnx"
    assert main(["export", "denoiser", "--steps", "2", "--format", "onnx", "--out", str(out)]) == 0
    return out


# -- the command on real photos and the real detectors ----------------------------------------------
@needs_data
def test_bench_night_end_to_end(tmp_path, enhancer, capsys):
    from daemon.cli.main import main

    chart = tmp_path / "chart.png"
    argv = ["bench", "night", "--detector", str(DETECTORS[0]), "--detector", str(DETECTORS[1]),
            "--enhancer", str(enhancer), "--data-root", str(DATA), "--limit", "4",
            "--exposures", "0.05", "--cache-dir", str(tmp_path / "cache"), "--chart", str(chart),
            "--tune"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["bench"] == "night" and summary["methods"] == list(night.METHODS)
    assert set(summary["results"]) == {"yolo11n_coco_int8_640", "yolov8n_coco_int8_640"}
    for det, sets in summary["results"].items():
        assert set(sets) == {"exdark_val", "coco128", "coco128_e0.05"}
        for name, entry in sets.items():
            assert entry["images"] == 4 and entry["enhanced"]["always"] == 4
            assert entry["enhanced"]["raw"] == 0
            assert sum(entry["raw"][b]["images"] for b in summary["bins"][1:]) == 4
        # a real COCO detector on real, well-lit COCO photos finds most objects
        assert sets["coco128"]["raw"]["all"]["ap50"] > 0.5
        # a gate that enhances no photo of a set gives exactly the raw results
        for entry in sets.values():
            if entry["enhanced"]["gated"] == 0:
                assert entry["gated"] == entry["raw"]
    # the darkened set was made by `duskwatch degrade` and is darker than its source
    import cv2

    dark = sorted((tmp_path / "cache" / "coco128_e0.05_s0_n4" / "images").glob("*.png"))
    assert len(dark) == 4 and np.mean([cv2.imread(str(p)).mean() for p in dark]) < 30
    assert chart.stat().st_size > 10_000
    assert any(line.startswith("yolo11n_coco_int8_640 on exdark_val") for line in out)
    # --tune chose thresholds on exdark_val with the first detector and printed them
    assert summary["tuned"]["on"] == "exdark_val" and summary["tuned"]["detector"] == "yolo11n_coco_int8_640"
    assert any(line.startswith("chosen: lowlight.enhance_below") for line in out)
    # by construction the tuned gate is never worse than raw on the set it was tuned on
    assert summary["gate_checks"]["yolo11n_coco_int8_640"]["exdark_val"]["never_worse"]


@needs_data
def test_gated_photos_get_exactly_raw_or_enhanced_results(enhancer):
    """With a config that enhances dark photos, each gated photo's detections are those of the raw
    photo or of the enhanced one, as the gate decided, and the gate picked the dark ones; with
    several views, those of the views merged exactly as the tuner merges them offline."""
    from engines.enhancer import Enhancer
    from engines.yolo import Detector

    labelled = night.read_set("exdark", DATA / "exdark_dev" / "val", 6)
    images = night.load_images(labelled, lambda x: x)
    cfg = LowLightConfig(enhance_below=40.0, max_highlight=1.0, views=["enhanced"])
    fused_cfg = cfg.model_copy(update={"views": ("raw", "enhanced", "clahe")})
    with Detector(DETECTORS[0], conf=0.001, iou=0.7) as det, Enhancer(enhancer) as enh:
        res = {m: night.run_pipeline(m, images, det, enh, cfg, lambda x: x)
               for m in ("raw", "always", "clahe", "gated")}
        fused = night.run_pipeline("gated", images, det, enh, fused_cfg, lambda x: x)
    from daemon.pipeline.gate import frame_stats

    expect = [frame_stats(im, cfg).luma < 40.0 for im in images]
    assert [r.enhanced for r in res["gated"]] == expect
    assert 0 < sum(expect) < len(images), "the subset should hold dark and brighter photos"
    for i, r in enumerate(res["gated"]):
        ref = res["always"][i] if expect[i] else res["raw"][i]
        np.testing.assert_array_equal(r.dets.scores, ref.dets.scores)
        np.testing.assert_array_equal(r.dets.boxes, ref.dets.boxes)
    run = night.SetRun("exdark", labelled, np.zeros(len(images)), [])
    for m in ("raw", "always", "clahe"):
        run.add(m, res[m])
    run.add("gated", fused)
    offline = run.fused(("raw", "enhanced", "clahe"), fused_cfg.merge, fused_cfg.merge_iou)
    for i in range(len(images)):
        want = offline[i] if expect[i] else run.matches["raw"][i]
        np.testing.assert_array_equal(run.matches["gated"][i].tp, want.tp)
        np.testing.assert_array_equal(run.matches["gated"][i].scores, want.scores)
    assert any(len(fused[i].dets) != len(res["raw"][i].dets) for i in range(len(images)) if expect[i])


# -- tuning, on made-up results -------------------------------------------------------------------
def _run_with(luma: list[float], raw_hits: list[bool], enh_hits: list[bool]) -> night.SetRun:
    """One labelled box per photo; a method's one detection (score 0.9) is on it or elsewhere."""
    from engines.detections import Detections

    n = len(luma)
    images = tuple(LabelledImage(Path(f"p{i}.png"), np.array([[0.0, 0.0, 10.0, 10.0]]), np.zeros(1, np.int64))
                   for i in range(n))
    labelled = LabelledSet("made-up", Path("."), images, None)

    def results(hits):
        box = {True: [0.0, 0.0, 10.0, 10.0], False: [50.0, 50.0, 60.0, 60.0]}
        return [night.PhotoResult(Detections.from_arrays([box[h]], [0.9], [0], {0: "person"}), False)
                for h in hits]

    run = night.SetRun("made-up", labelled, np.array(luma, float), [night_stats(v) for v in luma])
    run.add("raw", results(raw_hits))
    run.add("always", results(enh_hits))
    return run


def night_stats(luma: float):
    from daemon.pipeline.gate import FrameStats

    return FrameStats(luma, 0.0)


def test_tuning_enhances_only_where_it_helps():
    luma = [5, 8, 12, 18, 30, 35, 45, 60, 80, 100]
    raw = [False, False, False, True, True, True, True, True, True, True]
    enh = [True, True, True, True, False, False, False, False, False, False]  # helps below 15 only
    cfg, table = night.tune_gate(_run_with(luma, raw, enh), LowLightConfig())
    assert 12 < cfg.enhance_below <= 18
    # the enhanced picture alone is right wherever it is picked; adding the raw one would only
    # add its misses (false boxes) and cost a second detector pass
    assert cfg.views == ("enhanced",)
    grid = len(night.ENHANCE_BELOW_GRID) * len(night.MAX_HIGHLIGHT_GRID)
    # views: enhanced (no merge), raw+enhanced (each merge --tune tries)
    rules = grid * (1 + len(night.merges(("raw", "enhanced"))))
    assert any(row["ok"] for row in table) and len(table) == rules
    assert {(r["merge"], r["merge_iou"]) for r in table if len(r["views"]) == 2} == set(night.merges(("raw", "enhanced")))


def test_tuning_merges_views_when_each_finds_what_the_other_misses():
    # dark photos where raw and enhanced each find half the objects: no threshold can pick the
    # right one, merging both finds all of them
    luma = [5, 6, 7, 8, 9, 10, 11, 12, 60, 80]
    raw = [True, False] * 4 + [True, True]
    enh = [False, True] * 4 + [False, False]
    run = _run_with(luma, raw, enh)
    cfg, _ = night.tune_gate(run, LowLightConfig())
    assert cfg.views == ("raw", "enhanced") and 12 < cfg.enhance_below <= 55
    picks = night.gate_picks(cfg, run.stats)
    assert night.mixed_score(run, picks, cfg.views).ap50 > run.score("raw").ap50 + 0.2


def test_tuning_sends_nothing_through_an_enhancer_that_never_helps():
    luma = [5, 8, 12, 18, 30, 35, 45, 60, 80, 100]
    cfg, _ = night.tune_gate(_run_with(luma, [True] * 5 + [False] * 5, [False] * 10), LowLightConfig())
    assert cfg.enhance_below == 0.0


# -- small pieces ---------------------------------------------------------------------------------
def test_baselines_brighten_dark_pictures():
    dark = np.full((32, 32, 3), 64, np.uint8)
    assert night.gamma(dark)[0, 0, 0] == 128  # 255 * (64/255) ** 0.5
    ramp = np.tile(np.linspace(10, 40, 64).astype(np.uint8)[None, :, None], (64, 1, 3))
    from daemon.pipeline.views import clahe_luma

    assert clahe_luma(ramp).std() > ramp.std()


def test_bad_arguments_say_how_to_fix_them(tmp_path, capsys):
    from daemon.cli.main import main

    assert main(["bench", "night", "--detector", "x.onnx", "--set", "nofolder"]) == 2
    assert "NAME=DIR" in capsys.readouterr().err
    assert main(["bench", "night", "--detector", "x.onnx", "--methods", "raw,magic"]) == 2
    assert "unknown magic" in capsys.readouterr().err
    assert main(["bench", "night", "--detector", "x.onnx", "--set", f"a={tmp_path}"]) == 2
    assert "no images/ folder" in capsys.readouterr().err
