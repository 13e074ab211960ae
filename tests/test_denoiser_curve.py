"""The curve head: identity at start, bounded, monotone, smooth (no block pattern), exportable."""

import math
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


# -- the shipped enhancer's form: sampler at half size, guided upsampling, edge-aware gains --------
WORK2 = replace(GUIDED, work=2, edge_aware=True)  # frame multiple 16


def _lamp_frame(size: int = 64, radius: int = 9) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    lamp = ((yy - size // 2) ** 2 + (xx - size // 2) ** 2) <= radius ** 2
    return torch.where(lamp, 0.8, 0.03).float().expand(1, 3, size, size).contiguous(), lamp


def test_edge_aware_gains_follow_the_lamp_not_the_grid_cells():
    """The halo's cause and its cure, at the mechanism: cells holding the lamp were given gain 1,
    dark cells gain 10. Bilinear upsampling lowers the gain of the dark pixels beside the lamp
    (the dark ring); the edge-aware fit gives them the dark cells' gain, and the lamp its own."""
    from torch.nn import functional as F

    from export.denoiser.net import gain_maps_edge_aware

    frame, lamp = _lamp_frame()
    r = 8
    cell_lamp = F.avg_pool2d(lamp[None, None].float(), r) > 0.5
    log_g = torch.where(cell_lamp, 0.0, math.log(10.0)).expand(1, 3, -1, -1).contiguous()
    bilinear = torch.exp(F.interpolate(log_g, scale_factor=r, mode="bilinear", align_corners=False))[0, 0]
    edge = gain_maps_edge_aware(log_g, frame, r, max_gain=4.0)[0, 0]
    ring = ~lamp & (F.max_pool2d(lamp[None, None].float(), 9, stride=1, padding=4)[0, 0] > 0)  # 4 px around it
    assert bilinear[ring].min() < 4.0  # the dark ring: gains down to 2.8 (mean 7.2)
    assert edge[ring].min() > 9.0  # dark pixels keep the dark cells' gain (measured 10.4 .. 11.4)
    assert edge[lamp].mean() < bilinear[lamp].mean()  # the lamp is lifted less: less blow-out


def test_work_scale_two_keeps_a_ramp_and_quiets_flat_noise():
    """The sampler at half size plus the guided upsampling gives, for a fresh net (the frame's
    exposure gain), the full-size result on smooth content, and less noise on flat content."""
    torch.manual_seed(0)
    full, half = build_net(GUIDED).eval(), build_net(WORK2).eval()
    ramp = torch.linspace(0.01, 0.06, 64).view(1, 1, 1, 64).expand(1, 3, 64, 64).contiguous()
    noisy = (0.03 + 0.004 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    with torch.no_grad():
        g_full, g_half = EnhancerGraph(full, DiffusionConfig(), 2), EnhancerGraph(half, DiffusionConfig(), 2)
        assert g_half(ramp).shape == ramp.shape
        assert (g_half(ramp) - g_full(ramp))[..., 4:-4, 4:-4].abs().max() < 0.02
        assert _roughness(g_half(ramp)) < 0.6
        assert g_half(noisy).std() < 0.7 * g_full(noisy).std()


WORK4 = replace(WORK2, work=4, widths=(8, 16, 16, 16), headroom=0.3)  # frame multiple 128 (as shipped)


@pytest.mark.parametrize("cfg, multiple", [(WORK2, 16), (WORK4, 128)], ids=["work2", "work4-headroom"])
def test_a_reduced_work_scale_exports_to_onnx_and_matches(cfg, multiple, tmp_path):
    """Exported at any frame multiple (the trace's example image is rounded up to it), the same
    function as in PyTorch, the roll-off included."""
    pytest.importorskip("onnxruntime")
    from export.denoiser import export as dx

    net = _randomised(cfg, 0.05)
    ckpt = tmp_path / "work.pt"
    torch.save({"kind": "student", "steps": 2, "net_config": cfg.to_dict(),
                "diffusion": DiffusionConfig().to_dict(), "model": net.state_dict()}, ckpt)
    out = dx.export_denoiser(ckpt, 2, "onnx", tmp_path / "work.onnx")
    graph, _ = dx.build_graph(ckpt, 2)
    assert graph.multiple == multiple
    x = np.random.default_rng(0).random((2, 3, multiple, 2 * multiple), dtype=np.float32) * 0.3
    x[:, :, :8, :8] = 0.95  # a bright corner, where the roll-off acts
    assert dx.parity(graph, out, x) < 1e-4


def test_headroom_keeps_a_share_of_each_pixels_distance_to_white():
    from export.denoiser.net import keep_headroom

    frame = torch.linspace(0, 1, 101).view(1, 1, 1, -1).expand(1, 3, 4, -1)
    lifted = torch.ones_like(frame)  # the worst a gain can do: everything white
    out = keep_headroom(lifted, frame, 0.3)
    assert torch.all(1 - out >= 0.3 * (1 - frame) - 1e-6)
    assert torch.all(out.diff(dim=-1) > 0)  # a halo's gradation survives: strictly increasing
    assert torch.all(out[..., -1] == 1.0)  # the frame's own white stays white
    dark = torch.full_like(frame, 0.4)  # far from white: untouched
    assert torch.equal(keep_headroom(dark, frame, 0.3), dark)
    assert torch.equal(keep_headroom(lifted, frame, 0.0), lifted)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_headroom_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="headroom"):
        replace(GUIDED, headroom=bad)
    with pytest.raises(ValueError, match="headroom"):
        replace(TINY, headroom=0.3)  # the residual head has no curve to roll off


def test_a_guided_net_with_headroom_does_not_blow_out_a_lamps_halo():
    """A fresh guided network lifts a dark frame by its exposure gain (about 15x here), which
    takes the bright part of a lamp's halo (raw 0.8-0.93) to white; with headroom 0.3 no halo
    pixel reaches 250/255."""
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    r = torch.hypot(yy - 128, xx - 128)
    frame = torch.where(r < 4, 1.0, 0.02 + 0.88 * torch.exp(-(r - 4).clamp_min(0) / 5)).expand(1, 3, 256, 256)
    halo = (r >= 4) & (frame[0, 0] < 0.93)
    outs = {}  # a fresh net: its head's weights are zero, the output is the exposure gain's
    for k in (0.0, 0.3):
        net = build_net(replace(GUIDED, headroom=k)).eval()
        with torch.no_grad():
            outs[k] = EnhancerGraph(net, DiffusionConfig(), 2)(frame.contiguous())[0, 0]
    assert (outs[0.0][halo] >= 250 / 255).sum() >= 30  # without it: a white ring (36 pixels)
    assert (outs[0.3][halo] >= 250 / 255).sum() == 0
    assert outs[0.3][r < 4].min() > 0.99  # the lamp itself stays white
    assert outs[0.3].mean() > 3 * frame[0, 0].mean()  # the dark frame is still lifted
