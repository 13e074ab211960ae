"""engines.enhancer.Enhancer on a real ONNX Runtime engine, and the enhance command."""

import cv2
import numpy as np
import pytest

from engines.base import EngineError, open_engine
from engines.enhancer import Enhancer
from export.denoiser import export as dx
from tests.denoiser_fixtures import tiny_checkpoint


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("enh")
    return dx.export_denoiser(tiny_checkpoint(d / "k2.pt"), 2, "onnx", d / "enh.onnx")


@pytest.fixture()
def enhancer(onnx_path):
    with Enhancer(onnx_path, device="cpu") as e:
        yield e


def _frames():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 60, (40, 56, 1), dtype=np.uint8)
    return {
        "black": np.zeros((64, 64, 3), np.uint8),
        "saturated": np.full((48, 80, 3), 255, np.uint8),
        "monochrome": np.repeat(grey, 3, axis=2),
        "odd": rng.integers(0, 40, (37, 53, 3), dtype=np.uint8),
        "tiny": rng.integers(0, 40, (1, 1, 3), dtype=np.uint8),
        "thin": rng.integers(0, 40, (2, 131, 3), dtype=np.uint8),
    }


def test_robust_frames_keep_size_and_are_finite(enhancer):
    frames = _frames()
    outs = enhancer(list(frames.values()))
    for (name, f), o in zip(frames.items(), outs):
        assert o.shape == f.shape, name
        assert o.dtype == np.uint8, name


def test_engine_output_on_extreme_inputs_has_no_nan_or_inf(onnx_path):
    with open_engine(onnx_path, "cpu") as eng:
        for value in (0.0, 1.0):
            out = eng.infer({"image": np.full((1, 3, 8, 12), value, np.float32)})["enhanced"]
            assert np.isfinite(out).all()


def test_same_size_frames_batched_and_order_kept(enhancer):
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 50, (2, 30, 30, 3), dtype=np.uint8)
    c = rng.integers(0, 50, (20, 44, 3), dtype=np.uint8)
    batched = enhancer([a, c, b])
    assert np.array_equal(batched[0], enhancer([a])[0])
    assert np.array_equal(batched[1], enhancer([c])[0])
    assert np.array_equal(batched[2], enhancer([b])[0])


def test_static_scene_is_stable(enhancer):
    f = _frames()["odd"]
    assert np.array_equal(enhancer([f])[0], enhancer([f.copy()])[0])


def test_greyscale_2d_frame_accepted(enhancer):
    (out,) = enhancer([np.full((10, 10), 30, np.uint8)])
    assert out.shape == (10, 10, 3)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((10, 10, 4), np.uint8), "HxWx3"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((0, 10, 3), np.uint8), "HxWx3"),
])
def test_wrong_frames_are_clear_errors(enhancer, bad, match):
    with pytest.raises(EngineError, match=match):
        enhancer([bad])


def test_wrong_shaped_tensor_to_engine_is_clear_error(onnx_path):
    with open_engine(onnx_path, "cpu") as eng:
        with pytest.raises(EngineError, match="rank"):
            eng.infer({"image": np.zeros((1, 3, 16), np.float32)})
        with pytest.raises(EngineError, match="dimension 1"):
            eng.infer({"image": np.zeros((1, 4, 16, 16), np.float32)})
        with pytest.raises(EngineError, match="missing"):
            eng.infer({"images": np.zeros((1, 3, 16, 16), np.float32)})


def test_detector_engine_is_refused(onnx_path, tmp_path):
    import json
    import shutil

    other = tmp_path / "det.onnx"
    shutil.copy(onnx_path, other)
    (tmp_path / "det.onnx.json").write_text(json.dumps({"kind": "detector"}))
    with pytest.raises(EngineError, match="not an enhancer"):
        Enhancer(other, device="cpu")


def test_warmup_runs(enhancer):
    enhancer.warmup(size=(40, 24), batch=2)


def test_enhance_command_writes_png_per_image(onnx_path, tmp_path):
    from daemon.cli.main import main

    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "night.jpg"), np.full((21, 35, 3), 20, np.uint8))
    cv2.imwrite(str(src / "gate.png"), np.full((16, 16, 3), 5, np.uint8))
    out = tmp_path / "out"
    rc = main(["enhance", "--engine", str(onnx_path), "--device", "cpu", "--out", str(out),
               str(src / "night.jpg"), str(src / "gate.png")])
    assert rc == 0
    assert cv2.imread(str(out / "night.png")).shape == (21, 35, 3)
    assert cv2.imread(str(out / "gate.png")).shape == (16, 16, 3)


def test_enhance_command_unreadable_image_fails(onnx_path, tmp_path):
    from daemon.cli.main import main

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    rc = main(["enhance", "--engine", str(onnx_path), "--device", "cpu", "--out", str(tmp_path / "o"), str(bad)])
    assert rc == 1


# -- temporal pre-filter ----------------------------------------------------------------------
def _noisy_clip(n=12, seed=0, moving=False):
    """A dark textured scene with fresh noise per frame; optionally a bright square moving right."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:64]
    scene = (20 + 10 * np.sin(xx / 5.0) + 8 * np.cos(yy / 7.0))[..., None].repeat(3, axis=2)
    frames, truth = [], []
    for i in range(n):
        s = scene.copy()
        if moving:
            s[16:32, 4 * i:4 * i + 16] = 90.0
        truth.append(s)
        frames.append(np.clip(s + rng.normal(0, 6, s.shape), 0, 255).astype(np.uint8))
    return frames, truth


def test_temporal_filter_removes_flicker_of_a_still_scene():
    from engines.enhancer import TemporalFilter

    frames, truth = _noisy_clip()
    filt = TemporalFilter()
    out = [filt(f) for f in frames]
    raw_change = np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(frames[1:], frames[:-1])])
    out_change = np.mean([np.abs(a - b).mean() for a, b in zip(out[6:], out[5:-1])])
    assert out_change < 0.3 * raw_change
    assert np.abs(out[-1] - truth[-1]).mean() < 0.6 * np.abs(frames[-1].astype(np.float32) - truth[-1]).mean()
    assert out[-1].dtype == np.float32 and out[-1].shape == frames[-1].shape


def test_temporal_filter_follows_motion_and_restarts_on_a_new_scene():
    from engines.enhancer import TemporalFilter

    frames, truth = _noisy_clip(moving=True)
    filt = TemporalFilter()
    out = [filt(f) for f in frames]
    last = len(frames) - 1
    square = np.s_[18:30, 4 * last + 2:4 * last + 14]  # where the square is now
    trail = np.s_[18:30, 4 * last - 14:4 * last - 2]  # where it was two frames ago
    assert np.abs(out[last][square] - 90.0).mean() < 8.0  # no lag on the moving object
    assert np.abs(out[last][trail] - truth[last][trail]).mean() < 8.0  # no ghost behind it
    bright = np.full_like(frames[0], 200)
    np.testing.assert_array_equal(filt(bright), bright.astype(np.float32))  # scene change: start again
    small = frames[0][:20, :20]
    np.testing.assert_array_equal(filt(small), small.astype(np.float32))  # new size: start again


def test_enhancer_temporal_state_is_per_stream(onnx_path):
    frames, _ = _noisy_clip(n=6)
    other = [np.ascontiguousarray(f[::-1]) for f in frames]
    with Enhancer(onnx_path, device="cpu", temporal=True) as enh:
        mixed = [enh([a, b], streams=["cam1", "cam2"]) for a, b in zip(frames, other)]
        enh.reset()
        alone = [enh([a], streams=["cam1"])[0] for a in frames]
        with pytest.raises(EngineError, match="stream keys"):
            enh([frames[0]], streams=["a", "b"])
    with Enhancer(onnx_path, device="cpu", temporal=True) as enh:
        second = [enh([b], streams=["cam2"])[0] for b in other]
    for (m1, m2), a1, b2 in zip(mixed, alone, second):
        np.testing.assert_array_equal(m1, a1)
        np.testing.assert_array_equal(m2, b2)
    with Enhancer(onnx_path, device="cpu") as plain:
        single = plain([frames[3]])[0]
        assert np.array_equal(plain([frames[3]], streams=["cam1"])[0], single)  # temporal off: ignored
    assert not np.array_equal(alone[3], single)  # the filter did change what was enhanced
    with Enhancer(onnx_path, device="cpu", temporal=True) as enh:  # no streams given: frame alone
        enh([frames[2]], streams=["cam1"])
        assert np.array_equal(enh([frames[3]])[0], single)
