import numpy as np
import pytest

from daemon.config import ConfigError, LowLightConfig, parse_config
from daemon.pipeline.gate import LowLightGate, frame_stats, mean_luma

# a config under which every dark frame without light sources is enhanced (the plumbing tests)
ENHANCING = dict(enhance_below=255.0, max_highlight=1.0)


def test_mean_luma_uses_bt601_weights_in_bgr_order():
    blue = np.zeros((16, 16, 3), np.uint8)
    blue[..., 0] = 255
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 2] = 255
    assert mean_luma(blue) == pytest.approx(0.114 * 255, abs=1e-3)
    assert mean_luma(red) == pytest.approx(0.299 * 255, abs=1e-3)


def test_mean_luma_grey_and_single_channel():
    assert mean_luma(np.full((10, 10), 40, np.uint8)) == pytest.approx(40)
    assert mean_luma(np.full((10, 10, 1), 40, np.uint8)) == pytest.approx(40)
    with pytest.raises(ValueError, match="HxW"):
        mean_luma(np.zeros((2, 2, 2, 2)))


def test_mean_luma_subsamples():
    img = np.zeros((64, 64, 3), np.uint8)
    img[::8, ::8] = 200  # exactly the sampled pixels
    assert mean_luma(img, stride=8) == pytest.approx(200, abs=1e-3)


def test_frame_stats_counts_highlight_pixels_at_the_level():
    img = np.full((80, 80, 3), 10, np.uint8)
    img[:8] = 255  # one of ten sampled rows is a light source
    s = frame_stats(img, LowLightConfig(highlight_level=230))
    assert s.highlight == pytest.approx(0.1)
    assert s.luma == pytest.approx(0.9 * 10 + 0.1 * 255, abs=1e-3)
    assert frame_stats(img, LowLightConfig(highlight_level=255)).highlight == pytest.approx(0.1)
    assert frame_stats(np.full((80, 80, 3), 229, np.uint8), LowLightConfig()).highlight == 0.0


def test_hysteresis_between_enter_and_exit():
    gate = LowLightGate(LowLightConfig(enter_below=50, exit_above=80, smoothing=1.0))
    seq = [100, 60, 49, 60, 79, 80, 81, 60, 49]
    states = [gate.observe(v) for v in seq]
    # dark only after dropping below 50; stays dark up to 80 inclusive; light again above 80
    assert states == [False, False, True, True, True, True, False, False, True]


def test_smoothing_delays_the_switch_and_smooths_highlights_too():
    gate = LowLightGate(LowLightConfig(enter_below=50, exit_above=80, smoothing=0.5))
    gate.observe(100, 0.0)
    states = [gate.observe(0, 0.08) for _ in range(3)]  # ema: 50, 25, 12.5
    assert states == [False, True, True]
    assert gate.luma == pytest.approx(12.5)
    assert gate.highlight == pytest.approx(0.07)  # 0.04, 0.06, 0.07


def test_auto_enhances_dark_frames_below_enhance_below_without_light_sources():
    cfg = LowLightConfig(enter_below=55, exit_above=75, smoothing=1.0, enhance_below=20,
                         max_highlight=0.01)
    gate = LowLightGate(cfg)
    dark = np.full((80, 80, 3), 10, np.uint8)
    assert gate.update(dark) is True
    dim = np.full((80, 80, 3), 30, np.uint8)  # low-light, yet above enhance_below
    assert gate.update(dim) is False and gate.lowlight is True
    lamp = dark.copy()
    lamp[:8, :16] = 255  # 2% of the sampled pixels are a street lamp
    assert gate.update(lamp) is False and gate.lowlight is True


def test_default_rule_treats_every_low_light_frame_with_the_tuned_views():
    """The defaults follow the measurement (docs/BENCHMARKS.md, 'Seeing the dark frame smaller
    too'; bench night --tune on ExDark train, 6 Dec): every low-light frame seen as it is and
    mirrored, both also at 0.65 of the detector's size, boxes fused, beats raw in every
    brightness bin, lit scenes included; daylight frames stay raw."""
    cfg = LowLightConfig(smoothing=1.0)
    assert cfg.views == ("raw", "mirror", "zoom", "zoom_mirror")
    assert (cfg.merge, cfg.merge_iou, cfg.zoom) == ("wbf", 0.55, 0.65)
    gate = LowLightGate(cfg)
    lamp = np.full((32, 32, 3), 3, np.uint8)
    lamp[:4, :4] = 255  # a light source in view: no longer a reason to skip
    assert gate.update(lamp) is True and gate.lowlight is True
    assert gate.update(np.full((32, 32, 3), 200, np.uint8)) is False


@pytest.mark.parametrize("mode,expect", [("always", True), ("never", False)])
def test_overrides_ignore_the_state_but_track_it(mode, expect):
    gate = LowLightGate(LowLightConfig(smoothing=1.0, **ENHANCING), mode)
    assert gate.update(np.full((8, 8, 3), 10, np.uint8)) is expect
    assert gate.lowlight is True
    assert gate.update(np.full((8, 8, 3), 250, np.uint8)) is expect
    assert gate.lowlight is False


def test_auto_follows_state_and_reconfigure():
    gate = LowLightGate(LowLightConfig(smoothing=1.0, **ENHANCING))
    assert gate.update(np.full((8, 8, 3), 10, np.uint8)) is True
    gate.reconfigure(LowLightConfig(enter_below=5, exit_above=8, smoothing=1.0, **ENHANCING), "auto")
    assert gate.lowlight is False and gate.should_enhance is False
    gate.reconfigure(LowLightConfig(smoothing=1.0, enhance_below=5, max_highlight=1.0), "auto")
    assert gate.lowlight is True and gate.should_enhance is False
    with pytest.raises(ValueError, match="sometimes"):
        LowLightGate(LowLightConfig(), "sometimes")


def test_gate_fields_are_validated_and_unknown_keys_stay_errors():
    base = {"engines": {"detector": "d.onnx", "check_files": False}}
    cfg = parse_config({**base, "lowlight": {"enhance_below": 20, "max_highlight": 0.02}})
    assert cfg.lowlight.enhance_below == 20 and cfg.lowlight.highlight_level == 230
    with pytest.raises(ConfigError, match="max_highlight"):
        parse_config({**base, "lowlight": {"max_highlight": 1.5}})
    with pytest.raises(ConfigError, match="lowlight.enhance_bellow: unknown key"):
        parse_config({**base, "lowlight": {"enhance_bellow": 20}})


# -- views: what the detector sees for a picked frame, and the merge --------------------------------
def test_merge_keeps_one_box_per_object_and_class():
    from engines.detections import Detections
    from daemon.pipeline.views import merge

    names = {0: "person", 2: "car"}
    a = Detections.from_arrays([[0, 0, 10, 10], [50, 50, 60, 60]], [0.4, 0.9], [0, 2], names)
    b = Detections.from_arrays([[1, 0, 11, 10], [0, 0, 10, 10]], [0.8, 0.3], [0, 2], names)
    m = merge([a, b])
    # the two people overlap (IoU 0.82): one kept, the higher score; the car in b sits where
    # a's person is but is another class: kept; the far car: kept
    got = sorted(zip(m.names, [round(float(s), 2) for s in m.scores], m.boxes[:, 0].tolist()))
    assert got == [("car", 0.3, 0.0), ("car", 0.9, 50.0), ("person", 0.8, 1.0)]
    assert merge([a]) is a and len(merge([])) == 0


def test_views_config_is_checked():
    import pydantic

    from daemon.config import LowLightConfig

    assert LowLightConfig(views=["clahe", "raw"]).views == ("clahe", "raw")
    for bad in ([], ["raw", "raw"], ["sharpened"]):
        with pytest.raises(pydantic.ValidationError, match="views"):
            LowLightConfig(views=bad)


def test_mirror_view_boxes_come_back_in_frame_pixels():
    from engines.detections import Detections
    from daemon.pipeline.views import in_frame, mirror, picture

    frame = np.zeros((4, 10, 3), np.uint8)
    frame[:, :3] = 255  # something bright on the left
    flipped = picture("mirror", frame, None)
    assert np.array_equal(flipped, mirror(frame)) and flipped[:, -3:].min() == 255
    # the detector finds it on the right of the mirrored picture (x 7..10): it is at x 0..3
    found = Detections.from_arrays([[7.0, 1.0, 10.0, 3.0]], [0.8], [0], {0: "person"})
    assert in_frame("mirror", found, 10).boxes.tolist() == [[0.0, 1.0, 3.0, 3.0]]
    assert in_frame("clahe", found, 10) is found
    with pytest.raises(ValueError, match="enhancer"):
        picture("enhanced", frame, None)
