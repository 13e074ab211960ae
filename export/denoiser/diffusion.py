"""Residual-shift diffusion: schedule and deterministic sampler, as pure functions.

Formulation (Yue et al. 2023, "ResShift: Efficient Diffusion Model for Image Super-resolution by
Residual Shifting", NeurIPS): the forward process shifts the clean image ``x0`` towards the
degraded frame ``y`` while adding noise,

    q(x_t | x0, y) = N(x0 + eta_t * (y - x0), kappa^2 * eta_t * I),      0 = eta_0 < ... < eta_T ~ 1,

so sampling starts from the degraded frame itself, ``x_T = y + kappa * sqrt(eta_T) * eps``, not
from pure noise. That is why few steps suffice for restoration (cf. I2SB, Liu et al. 2023).

The network predicts ``x0`` (``denoise(x_t, y, eta_t) -> x0_hat``). The sampler used here is the
deterministic DDIM-style update for this process (Song et al. 2021, "Denoising Diffusion
Implicit Models", applied to the residual-shift marginals): keep the implied noise
``eps_hat = (x_t - x0_hat - eta_t (y - x0_hat)) / (kappa sqrt(eta_t))`` and move to ``eta_s``:

    x_s = x0_hat + eta_s * (y - x0_hat) + kappa * sqrt(eta_s) * eps_hat.

``kappa`` cancels out of the update; it only sets the starting noise. With ``eta_s = 0`` the step
returns ``x0_hat``. The schedule knows nothing of the network and the network nothing of the
schedule; :func:`sample` is the one loop that joins them.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Denoise = Callable[["Tensor", "Tensor", float], "Tensor"]  # (x_t, y, eta) -> x0_hat  # noqa: F821


def eta_schedule(T: int, eta_1: float = 1e-3, eta_T: float = 0.999, p: float = 0.3) -> np.ndarray:
    """ResShift's non-uniform shifting schedule (Yue et al. 2023, Eq. 10), with ``eta_0 = 0``.

    ``sqrt(eta_t) = sqrt(eta_1) * b0 ** beta_t``, ``beta_t = ((t-1)/(T-1))**p * (T-1)``,
    ``b0 = exp(log(eta_T / eta_1) / (2 (T-1)))``. Returns float64 ``[eta_0, ..., eta_T]``
    (length ``T + 1``), strictly increasing.
    """
    if T < 1:
        raise ValueError(f"eta_schedule: T must be >= 1, got {T}")
    if not 0.0 < eta_1 < eta_T < 1.0:
        raise ValueError(f"eta_schedule: need 0 < eta_1 < eta_T < 1, got eta_1={eta_1}, eta_T={eta_T}")
    if T == 1:
        return np.array([0.0, eta_T])
    t = np.arange(1, T + 1, dtype=np.float64)
    beta = ((t - 1) / (T - 1)) ** p * (T - 1)
    b0 = math.exp(math.log(eta_T / eta_1) / (2 * (T - 1)))
    sqrt_eta = math.sqrt(eta_1) * b0**beta
    return np.concatenate([[0.0], sqrt_eta**2])


def step_indices(T: int, K: int) -> list[int]:
    """The K+1 schedule indices a K-step sampler visits: ``T, T - T/K, ..., 0``."""
    if K < 1 or T % K != 0:
        raise ValueError(f"step_indices: K={K} must divide the teacher's T={T} (use one of "
                         f"{[k for k in range(1, T + 1) if T % k == 0]})")
    return [T - i * (T // K) for i in range(K + 1)]


def sampling_etas(etas: np.ndarray, K: int) -> list[float]:
    """The eta values (descending, ending in 0) of a K-step sampler on schedule ``etas``."""
    return [float(etas[i]) for i in step_indices(len(etas) - 1, K)]


def q_sample(x0, y, eta: float, kappa: float, noise):
    """Forward marginal: ``x_t = x0 + eta (y - x0) + kappa sqrt(eta) noise`` (ResShift Eq. 4)."""
    return x0 + eta * (y - x0) + kappa * eta**0.5 * noise


def prior_sample(y, eta_T: float, kappa: float, noise):
    """Starting point of sampling, ``x_T = y + kappa sqrt(eta_T) noise`` (ResShift, Sec. 3)."""
    return y + kappa * math.sqrt(eta_T) * noise


def ddim_step(x_t, x0_hat, y, eta_t: float, eta_s: float):
    """Deterministic update from ``eta_t`` to ``eta_s < eta_t`` given the prediction ``x0_hat``.

    Written as ``x_s = (1-eta_s) x0 + eta_s y + r (x_t - (1-eta_t) x0 - eta_t y)``,
    ``r = sqrt(eta_s / eta_t)``; identical to the eps form in the module docstring.
    """
    r = (eta_s / eta_t) ** 0.5
    return (1.0 - eta_s) * x0_hat + eta_s * y + r * (x_t - (1.0 - eta_t) * x0_hat - eta_t * y)


def x0_for_target(x_s, x_t, y, eta_t: float, eta_s: float):
    """The ``x0_hat`` whose :func:`ddim_step` from ``x_t`` lands exactly on ``x_s``.

    ``eta_t``/``eta_s`` may be floats or tensors broadcastable to ``x_t`` (per-sample steps).
    Solves the (linear) update for ``x0`` -- the distillation target of Salimans & Ho 2022,
    "Progressive Distillation for Fast Sampling of Diffusion Models", Eq. 8, for this process.
    """
    r = (eta_s / eta_t) ** 0.5
    denom = (1.0 - eta_s) - r * (1.0 - eta_t)
    return (x_s - r * x_t - (eta_s - r * eta_t) * y) / denom


def sample(
    denoise: Denoise,
    y,
    etas: Sequence[float],
    kappa: float,
    noise,
    clip_x0: bool = True,
    callback: Callable[[int, object, object], None] | None = None,
):
    """Run the deterministic sampler through ``etas`` (descending, last one 0).

    ``denoise(x_t, y, eta) -> x0_hat``; ``noise`` is the starting noise (zeros or a fixed
    pattern make sampling fully deterministic). ``callback(i, x_t, x0_hat)`` sees every step.
    Returns the final ``x0`` estimate.
    """
    _check_etas(etas)
    x = prior_sample(y, etas[0], kappa, noise)
    for i, (eta_t, eta_s) in enumerate(zip(etas[:-1], etas[1:])):
        x0_hat = denoise(x, y, eta_t)
        if clip_x0:
            x0_hat = x0_hat.clamp(0.0, 1.0)
        if callback is not None:
            callback(i, x, x0_hat)
        x = ddim_step(x, x0_hat, y, eta_t, eta_s)
    return x


def _check_etas(etas: Sequence[float]) -> None:
    if len(etas) < 2 or etas[-1] != 0.0 or any(a <= b for a, b in zip(etas[:-1], etas[1:])):
        raise ValueError(f"sample: etas must be strictly decreasing and end in 0, got {list(etas)}")
