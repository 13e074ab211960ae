"""The physics-based low-light degradation model (export/degrade.py)."""

import numpy as np
import pytest

from export import degrade as dg


def clean_image(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0.05, 0.95, w, dtype=np.float32)[None, :, None]
    return np.clip(base + 0.2 * rng.random((h, w, 3), dtype=np.float32) - 0.1, 0, 1).astype(np.float32)


def test_same_seed_same_frame_other_seed_other_frame():
    img = clean_image()
    a, ta, pa = dg.degrade_seeded(img, 7)
    b, tb, pb = dg.degrade_seeded(img, 7)
    c, _, pc = dg.degrade_seeded(img, 8)
    assert pa == pb and np.array_equal(a, b) and np.array_equal(ta, tb)
    assert pc != pa and not np.array_equal(a, c)


def test_output_dtype_shape_range_and_8bit_grid():
    img = clean_image(31, 45)
    for seed in range(10):
        out, target, _ = dg.degrade_seeded(img, seed)
        assert out.shape == img.shape == target.shape
        assert out.dtype == np.float32 and target.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-3), "not quantised to 8 bits"


def test_sampled_parameters_stay_in_documented_ranges():
    r = dg.RANGES
    params = [dg.sample_params(np.random.default_rng(s)) for s in range(400)]
    for p in params:
        assert r["exposure"][0] <= p.exposure <= r["exposure"][1]
        assert r["gamma"][0] <= p.gamma <= r["gamma"][1]
        assert r["shot"][0] <= p.shot <= r["shot"][1]
        assert r["red_gain"][0] <= p.red_gain <= r["red_gain"][1]
        assert r["blue_gain"][0] <= p.blue_gain <= r["blue_gain"][1]
        assert r["wb_error"][0] <= p.wb_error_r <= r["wb_error"][1]
        assert p.jpeg_quality == 0 or r["jpeg_quality"][0] <= p.jpeg_quality <= r["jpeg_quality"][1]
    # read noise follows Brooks et al.: log(read) = 2.18 log(shot) + 1.20 + N(0, 0.26)
    resid = np.array([np.log(p.read) - 2.18 * np.log(p.shot) - 1.20 for p in params])
    assert abs(resid.mean()) < 0.05 and 0.2 < resid.std() < 0.32
    mono = np.mean([p.mono for p in params])
    assert 0.08 < mono < 0.22  # p_mono = 0.15
    exps = np.log([p.exposure for p in params])  # log-uniform: log spread covers the range
    assert exps.min() < np.log(0.02) and exps.max() > np.log(0.3)


def test_lower_exposure_is_darker():
    img = clean_image()
    p = dg.DegradeParams(jpeg_quality=0, shot=1e-4, read=1e-7)
    means = [dg.degrade(img, p.replace(exposure=e), np.random.default_rng(0)).mean() for e in (0.5, 0.1, 0.02)]
    assert means[0] > means[1] > means[2]
    assert means[0] < img.mean()


def test_more_shot_noise_is_noisier():
    img = np.full((64, 64, 3), 0.5, np.float32)
    def noise_std(shot):
        p = dg.DegradeParams(exposure=0.2, shot=shot, read=dg.read_from_shot(shot), jpeg_quality=0)
        return dg.degrade(img, p, np.random.default_rng(1)).std()
    assert noise_std(0.012) > 2 * noise_std(1e-4)


def test_poisson_mode_is_noisy_and_unbiased_in_linear_space():
    x = np.full((200, 200, 3), 0.05, np.float32)
    p = dg.DegradeParams(shot=0.01, read=1e-6, poisson=True)
    noisy = dg.add_sensor_noise(x, p, np.random.default_rng(0))
    assert abs(noisy.mean() - 0.05) < 2e-3
    assert abs(noisy.var() - (0.01 * 0.05 + 1e-6)) < 1e-4


def test_mono_mode_gives_grey_frames_and_grey_targets():
    img = clean_image()
    out, target, p = dg.degrade_seeded(img, 3, mono=True)
    assert p.mono
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert np.allclose(target[..., 0], target[..., 2])
    assert not np.allclose(target, img)
    colour, ctarget, pc = dg.degrade_seeded(img, 3, mono=False)
    assert not pc.mono and np.array_equal(ctarget, img)


def test_tone_curve_inverse_round_trip():
    x = np.linspace(0, 1, 101)
    assert np.allclose(dg.smoothstep(dg.inverse_smoothstep(x)), x, atol=1e-6)


def test_jpeg_changes_pixels_only_when_enabled():
    img = clean_image(64, 64)
    p = dg.DegradeParams(exposure=0.3, shot=1e-4, read=1e-7)
    raw = dg.degrade(img, p.replace(jpeg_quality=0), np.random.default_rng(0))
    jpg = dg.degrade(img, p.replace(jpeg_quality=30), np.random.default_rng(0))
    assert not np.array_equal(raw, jpg) and np.abs(raw - jpg).mean() < 0.05


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="uint8"):
        dg.degrade(np.zeros((8, 8, 3), np.uint8), dg.DegradeParams(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="HxWx3"):
        dg.degrade(np.zeros((8, 8), np.float32), dg.DegradeParams(), np.random.default_rng(0))


def test_bgr_uint8_wrapper_keeps_shape_and_dtype():
    bgr = (clean_image(17, 23) * 255).astype(np.uint8)
    out = dg.degrade_bgr_u8(bgr, dg.DegradeParams(exposure=0.1), np.random.default_rng(0))
    assert out.shape == bgr.shape and out.dtype == np.uint8 and out.mean() < bgr.mean()


# -- night scenes ---------------------------------------------------------------------------
QUIET = dg.DegradeParams(exposure=0.05, shot=1e-6, read=1e-10, jpeg_quality=0, wb_error_r=0.0, wb_error_b=0.0)


def test_night_scene_is_deterministic_per_seed_and_in_range():
    img = clean_image(40, 56)
    a, ta, pa = dg.degrade_night_seeded(img, 3)
    b, tb, pb = dg.degrade_night_seeded(img, 3)
    assert pa == pb and np.array_equal(a, b) and np.array_equal(ta, tb)
    for seed in range(12):
        dark, target, p = dg.degrade_night_seeded(img, seed)
        assert dark.shape == target.shape == img.shape
        assert 0 <= dark.min() and dark.max() <= 1 and 0 <= target.min() and target.max() <= 1
        assert dg.NIGHT_RANGES["lights"][0] <= len(p.lights) <= dg.NIGHT_RANGES["lights"][1]


def test_without_lights_at_full_exposure_the_target_is_the_clean_photo():
    img = clean_image()
    _, target = dg.degrade_night(img, dg.NightParams(camera=QUIET.replace(exposure=1.0)), np.random.default_rng(0))
    assert np.abs(target - img).max() < 1e-4


def test_a_lamp_lights_its_pool_and_leaves_the_rest_dark():
    img = np.full((64, 96, 3), 0.5, np.float32)
    lamp = dg.Light(x=0.1, y=0.5, radius=0.08, strength=1.5, colour=3)
    p = dg.NightParams(camera=QUIET, lights=(lamp,))
    dark, target = dg.degrade_night(img, p, np.random.default_rng(0))
    near, far = dark[28:36, 4:14].mean(), dark[28:36, 80:92].mean()
    assert near > 0.4 and far < 0.3  # a lit pool next to a dark region
    assert np.abs(target[:, 60:] - img[:, 60:]).max() < 0.02  # the dark region's target is the photo
    assert target[28:36, 4:14].mean() >= img[28:36, 4:14].mean()  # lit above normal stays bright


def test_a_lamp_in_view_is_clipped_in_frame_and_target_alike():
    img = np.full((64, 64, 3), 0.3, np.float32)
    lamp = dg.Light(x=0.5, y=0.5, radius=0.05, strength=0.2, colour=0, visible=True, core_peak=20.0,
                    core_sigma=0.03, halo_sigma=0.1, halo_peak=0.2)
    p = dg.NightParams(camera=QUIET, lights=(lamp,))
    dark, target = dg.degrade_night(img, p, np.random.default_rng(0))
    assert dark[31:33, 31:33].min() > 0.99 and target[31:33, 31:33].min() > 0.99
    glare = dg.glare(64, 64, p)
    assert glare[32, 32].max() > 1 and glare[0, 0].max() < 0.01
    assert not dg.glare(64, 64, dg.NightParams(camera=QUIET, lights=(dg.Light(0.5, 0.5, 0.1, 1.0, 3),))).any()


def test_sodium_light_casts_orange():
    img = np.full((32, 32, 3), 0.5, np.float32)
    sodium = dg.NightParams(camera=QUIET.replace(exposure=0.01), lights=(dg.Light(0.5, 0.5, 0.5, 0.5, 0),))
    dark, _ = dg.degrade_night(img, sodium, np.random.default_rng(0))
    r, g, b = dark.reshape(-1, 3).mean(0)
    assert r > g > b
