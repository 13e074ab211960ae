"""Residual-shift schedule and the deterministic sampler, against golden numbers and identities."""

import math

import numpy as np
import pytest
import torch

from export.denoiser import diffusion as d

# eta_schedule(16) with eta_1=1e-3, eta_T=0.999, p=0.3 (ResShift Eq. 10).
GOLDEN_ETAS = [
    0.0, 0.001, 0.02143690979555086, 0.04353643680379488, 0.07093057486979343,
    0.10415126991785392, 0.14366691597168774, 0.1899517497970016, 0.24349732563643012,
    0.30481508987857736, 0.37443705966471674, 0.4529160737491952, 0.5408259791624674,
    0.6387618455399118, 0.7473402250175734, 0.8671994554241549, 0.9990000000000026,
]

# Full sampling loop, float64, toy denoiser below, kappa 0.25, no clipping.
GOLDEN_SAMPLES = {
    1: [[0.14256874218359114, 0.03516251563281698], [0.22750622655077388, 0.35133437109179544]],
    2: [[0.20258234808003125, 0.11165914857618153], [0.27527113279431553, 0.3926748939285927]],
    4: [[0.23195642075392053, 0.17034648830529392], [0.2843498886908633, 0.4141311525227408]],
}

Y = torch.tensor([[0.1, 0.2], [0.05, 0.4]], dtype=torch.float64)
NOISE = torch.tensor([[0.5, -1.0], [1.5, 0.25]], dtype=torch.float64)


def toy_denoise(x, y, eta):
    return 0.5 * x + 0.3 * y + 0.1 * (1 - eta)


def test_schedule_golden_numbers_and_shape():
    etas = d.eta_schedule(16)
    assert etas.shape == (17,)
    np.testing.assert_allclose(etas, GOLDEN_ETAS, rtol=1e-12, atol=0)
    assert np.all(np.diff(etas) > 0)


def test_schedule_geometric_in_sqrt_eta_for_p_1():
    etas = d.eta_schedule(8, eta_1=0.01, eta_T=0.81, p=1.0)
    ratios = np.sqrt(etas[2:]) / np.sqrt(etas[1:-1])
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    assert etas[1] == pytest.approx(0.01) and etas[-1] == pytest.approx(0.81)


@pytest.mark.parametrize("bad", [dict(T=0), dict(T=4, eta_1=0.5, eta_T=0.4), dict(T=4, eta_T=1.0)])
def test_schedule_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match="eta_schedule"):
        d.eta_schedule(**bad)


def test_step_indices():
    assert d.step_indices(16, 1) == [16, 0]
    assert d.step_indices(16, 2) == [16, 8, 0]
    assert d.step_indices(16, 4) == [16, 12, 8, 4, 0]
    with pytest.raises(ValueError, match="must divide"):
        d.step_indices(16, 3)


@pytest.mark.parametrize("K", [1, 2, 4])
def test_sampling_loop_golden_numbers(K):
    etas = d.sampling_etas(d.eta_schedule(16), K)
    out = d.sample(toy_denoise, Y, etas, 0.25, NOISE, clip_x0=False)
    np.testing.assert_allclose(out.numpy(), GOLDEN_SAMPLES[K], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("K", [1, 2, 4, 16])
def test_sampling_loop_matches_eps_form_written_out(K):
    """The docstring's eps-parameterised DDIM update, written independently, gives the same."""
    etas = d.sampling_etas(d.eta_schedule(16), K)
    kappa = 0.25
    x = Y + kappa * math.sqrt(etas[0]) * NOISE
    for eta_t, eta_s in zip(etas[:-1], etas[1:]):
        x0 = toy_denoise(x, Y, eta_t)
        eps = (x - x0 - eta_t * (Y - x0)) / (kappa * math.sqrt(eta_t))
        x = x0 + eta_s * (Y - x0) + kappa * math.sqrt(eta_s) * eps
    out = d.sample(toy_denoise, Y, etas, kappa, NOISE, clip_x0=False)
    np.testing.assert_allclose(out.numpy(), x.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("K", [1, 2, 4, 16])
def test_oracle_denoiser_recovers_x0_from_any_noise(K):
    x0 = torch.tensor([[0.7, 0.3], [0.9, 0.5]], dtype=torch.float64)
    etas = d.sampling_etas(d.eta_schedule(16), K)
    out = d.sample(lambda x, y, eta: x0, Y, etas, 0.25, NOISE * 3)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-12)


def test_ddim_step_consistent_with_forward_marginal():
    """With the true x0 and the true noise, one step maps q(x_t) onto q(x_s) with the same noise."""
    x0 = torch.rand(4, 4, dtype=torch.float64)
    y = torch.rand(4, 4, dtype=torch.float64)
    eps = torch.randn(4, 4, dtype=torch.float64)
    x_t = d.q_sample(x0, y, 0.6, 0.25, eps)
    x_s = d.ddim_step(x_t, x0, y, 0.6, 0.2)
    torch.testing.assert_close(x_s, d.q_sample(x0, y, 0.2, 0.25, eps))
    torch.testing.assert_close(d.ddim_step(x_t, x0, y, 0.6, 0.0), x0)


def test_x0_for_target_inverts_the_step():
    x_t, y, x_s = (torch.rand(3, 5, dtype=torch.float64) for _ in range(3))
    for eta_t, eta_s in [(0.999, 0.2435), (0.2435, 0.0), (0.5, 0.1)]:
        x0 = d.x0_for_target(x_s, x_t, y, eta_t, eta_s)
        torch.testing.assert_close(d.ddim_step(x_t, x0, y, eta_t, eta_s), x_s)


def test_callback_sees_every_step_and_bad_etas_rejected():
    seen = []
    d.sample(toy_denoise, Y, d.sampling_etas(d.eta_schedule(16), 4), 0.25, NOISE,
             callback=lambda i, x, x0: seen.append(i))
    assert seen == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="strictly decreasing"):
        d.sample(toy_denoise, Y, [0.5, 0.7, 0.0], 0.25, NOISE)
    with pytest.raises(ValueError, match="end in 0"):
        d.sample(toy_denoise, Y, [0.9, 0.5], 0.25, NOISE)


def test_space_to_depth_conv_equals_pixel_unshuffle():
    from torch.nn import functional as F

    from export.denoiser.net import space_to_depth_kernel

    x = torch.rand(2, 6, 16, 24)
    for r in (2, 4):
        got = F.conv2d(x, space_to_depth_kernel(6, r), stride=r)
        assert torch.equal(got, F.pixel_unshuffle(x, r))
