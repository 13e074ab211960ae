"""The curve head: identity at start, bounded, monotone, smooth (no block pattern), exportable."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from export.denoiser.model import DiffusionConfig, EnhancerGraph
from export.denoiser.net import NetConfig, build_net, gain_curve
from tests.denoiser_fixtures import TINY

CURVE = replace(TINY, head="curve", upsample="bilinear", unshuffle=4)  # multiple 8
GUIDED = replace(CURVE, head="guided", max_gain=32.0)  # the picture for people
HEADS = pytest.mark.parametrize("cfg", [CURVE, GUIDED], ids=["curve", "guided"])


def _randomised(cfg: NetConfig, scale: float = 0.5, seed: int = 0):
    torch.manual_seed(seed)
    net = build_net(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net


def test_a_fresh_curve_net_is_the_identity():
    torch.manual_seed(0)
    net = build_net(CURVE).eval()
    y = torch.rand(2, 3, 32, 48) * 0.3
    with torch.no_grad():
        assert torch.allclose(net(y, y, torch.tensor([0.5])), y, atol=1e-6)
        out = EnhancerGraph(net, DiffusionConfig(), 2)(y)
    assert torch.allclose(out, y, atol=1e-6)


def test_gain_curve_is_monotone_bounded_and_fixes_black_and_white():
    x = torch.linspace(0, 1, 101)
    for g in (1 / 8, 0.5, 1.0, 3.0, 8.0):
        gt = torch.full_like(x, g)
        y = gain_curve(x, gt, gt - 1)
        assert y[0] == 0 and abs(y[-1].item() - 1) < 1e-6
        assert torch.all(y.diff() > 0) and torch.all((y >= 0) & (y <= 1))
    dark = gain_curve(torch.tensor(0.01), torch.tensor(8.0), torch.tensor(7.0))
    assert 0.07 < dark < 0.08  # the shadows get (almost) the full gain


@HEADS
def test_outputs_stay_in_range_and_keep_highlights_whatever_the_weights(cfg):
    net = _randomised(cfg, scale=2.0)
    y = torch.rand(2, 3, 32, 32)
    y[:, :, :8, :8] = 1.0  # a clipped lamp
    with torch.no_grad():
        out = EnhancerGraph(net, DiffusionConfig(), 2)(y)
    assert torch.all((out >= 0) & (out <= 1))
    assert out[:, :, 2:6, 2:6].min() > 0.99  # a blown-out area stays white (curve fixes 1)


def test_a_fresh_guided_net_lifts_a_dark_frame_by_its_exposure_gain_and_leaves_a_bright_one():
    torch.manual_seed(0)
    net = build_net(GUIDED).eval()
    dark, bright = torch.rand(1, 3, 32, 48) * 0.06, 0.5 + torch.rand(1, 3, 32, 48) * 0.3
    with torch.no_grad():
        lifted = EnhancerGraph(net, DiffusionConfig(), 2)(dark)
        kept = EnhancerGraph(net, DiffusionConfig(), 2)(bright)
    assert torch.allclose(kept, bright, atol=1e-6)  # mean above 0.45: gain 1, no smoothing yet
    assert 0.25 < lifted.mean() < 0.45 and torch.all(lifted >= dark)  # ~15x in the shadows, never clipped


def _roughness(img: torch.Tensor) -> float:
    """Mean |second difference| over mean |first difference| along rows: near 0 for a smooth
    image, above 1 for a block or checkerboard pattern."""
    d1 = img[..., 1:] - img[..., :-1]
    d2 = d1[..., 1:] - d1[..., :-1]
    return float(d2.abs().mean() / d1.abs().mean())


@HEADS
def test_no_block_pattern_on_a_smooth_input(cfg):
    """A smooth ramp stays smooth through a curve net with random weights; the residual head's
    pixel-shuffle output with random weights does not (so the check can fail)."""
    ramp = torch.linspace(0.02, 0.3, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    with torch.no_grad():
        curve = _randomised(cfg, 0.5)(ramp, ramp, torch.tensor([0.5]))
        resid = _randomised(replace(TINY, unshuffle=4), 0.05)(ramp, ramp, torch.tensor([0.5]))
    assert (curve - ramp).abs().max() > 0.01  # the random curve net does change the image
    assert _roughness(curve) < 0.6  # bilinear maps: kinks at the grid, no steps (measured ~0.35)
    assert _roughness(resid) > 1.0  # measured ~1.7


@HEADS
def test_curve_student_exports_to_onnx_and_matches(cfg, tmp_path):
    pytest.importorskip("onnxruntime")
    from export.denoiser import export as dx

    net = _randomised(cfg, 0.05)  # trained-like weights (huge random ones amplify float rounding)
    ckpt = tmp_path / "curve.pt"
    torch.save({"kind": "student", "steps": 2, "net_config": cfg.to_dict(),
                "diffusion": DiffusionConfig().to_dict(), "model": net.state_dict()}, ckpt)
    out = dx.export_denoiser(ckpt, 2, "onnx", tmp_path / "curve.onnx")
    graph, _ = dx.build_graph(ckpt, 2)
    x = np.random.default_rng(0).random((2, 3, 40, 56), dtype=np.float32) * 0.3
    assert dx.parity(graph, out, x) < 1e-4


def test_guided_smoothing_averages_flat_noise_and_keeps_an_edge():
    from export.denoiser.net import guided_smooth

    g = torch.Generator().manual_seed(0)
    img = torch.full((1, 3, 32, 32), 0.05)
    img[..., 16:] = 0.25  # an edge
    noisy = img + 0.005 * torch.randn(img.shape, generator=g)
    out = guided_smooth(noisy, torch.full((1, 1, 32, 32), 1e-4))
    assert (out - img)[..., 2:14].std() < 0.5 * (noisy - img)[..., 2:14].std()  # flat: averaged
    assert (out[..., 18] - out[..., 13]).mean() > 0.19  # the 0.2 step survives
