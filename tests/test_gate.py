import numpy as np
import pytest

from daemon.config import LowLightConfig
from daemon.pipeline.gate import LowLightGate, mean_luma


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


def test_hysteresis_between_enter_and_exit():
    gate = LowLightGate(LowLightConfig(enter_below=50, exit_above=80, smoothing=1.0))
    seq = [100, 60, 49, 60, 79, 80, 81, 60, 49]
    states = [gate.observe(v) for v in seq]
    # dark only after dropping below 50; stays dark up to 80 inclusive; light again above 80
    assert states == [False, False, True, True, True, True, False, False, True]


def test_smoothing_delays_the_switch():
    gate = LowLightGate(LowLightConfig(enter_below=50, exit_above=80, smoothing=0.5))
    gate.observe(100)
    states = [gate.observe(0) for _ in range(3)]  # ema: 50, 25, 12.5
    assert states == [False, True, True]
    assert gate.luma == pytest.approx(12.5)


@pytest.mark.parametrize("mode,expect", [("always", True), ("never", False)])
def test_overrides_ignore_the_state_but_track_it(mode, expect):
    gate = LowLightGate(LowLightConfig(smoothing=1.0), mode)
    assert gate.update(np.full((8, 8, 3), 10, np.uint8)) is expect
    assert gate.lowlight is True
    assert gate.update(np.full((8, 8, 3), 250, np.uint8)) is expect
    assert gate.lowlight is False


def test_auto_follows_state_and_reconfigure():
    gate = LowLightGate(LowLightConfig(smoothing=1.0))
    assert gate.update(np.full((8, 8, 3), 10, np.uint8)) is True
    gate.reconfigure(LowLightConfig(enter_below=5, exit_above=8, smoothing=1.0), "auto")
    assert gate.lowlight is False and gate.should_enhance is False
    with pytest.raises(ValueError, match="sometimes"):
        LowLightGate(LowLightConfig(), "sometimes")
