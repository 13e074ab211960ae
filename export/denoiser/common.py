"""Pieces shared by teacher training and distillation: the run configuration, schedule of the
learning rate, validation scoring (PSNR/SSIM), EMA and the curves plot. The device comes from
:func:`engines.device.resolve_device` (one resolver for the whole project); the loop itself is
:mod:`export.denoiser.driver`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch


@dataclass(kw_only=True)
class RunConfig:
    """What every training run (teacher or student) takes: data, output, batch shape, device,
    resume, validation and checkpoint cadence. Subclasses add their own schedule."""

    data: str
    out: str
    batch: int = 16
    crop: int = 128
    device: str = "auto"
    resume: str | None = None
    val_every: int = 500
    save_every: int = 250
    val_size: int = 256
    val_fraction: float = 0.1
    max_side: int = 512
    time_limit: float | None = None  # seconds; stop (and save) early when exceeded
    log_file: str | None = None  # append progress lines here (for long background runs)
    degradation: str = "global"  # "night" (export.degrade.degrade_night) or "global" (degrade)
    progress: bool = True  # tqdm bar
    ssim_weight: float = 0.0  # loss = MSE + ssim_weight * (1 - SSIM): structure, not only mean error


def cosine_lr(step: int, total: int, base: float, warmup: int = 200, floor: float = 0.02) -> float:
    """Linear warm-up then cosine decay to ``floor * base`` (Loshchilov & Hutter 2017)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.mul_(decay).add_(p.detach(), alpha=1 - decay)


def ssim_torch(a: "torch.Tensor", b: "torch.Tensor", sigma: float = 1.5, radius: int = 5) -> "torch.Tensor":
    """Mean SSIM of two ``[N,C,H,W]`` batches in [0, 1] (Wang et al. 2004: Gaussian window
    sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, valid region only), differentiable; the same definition
    as :func:`ssim`, for use in a loss."""
    from torch.nn import functional as F

    x = torch.arange(-radius, radius + 1, dtype=a.dtype, device=a.device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    c = a.shape[1]
    kh, kw = g.view(1, 1, -1, 1).expand(c, 1, -1, 1), g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(v):
        return F.conv2d(F.conv2d(v, kh, groups=c), kw, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.mean()


def image_loss(pred: "torch.Tensor", target: "torch.Tensor", ssim_weight: float = 0.0) -> "torch.Tensor":
    """``MSE + ssim_weight * (1 - SSIM)``: the MSE optimum is the posterior mean (what the
    deterministic sampler needs); the SSIM term asks for local structure and contrast as well
    (Zhao et al. 2017, "Loss Functions for Image Restoration with Neural Networks")."""
    from torch.nn import functional as F

    loss = F.mse_loss(pred, target)
    if ssim_weight > 0:
        loss = loss + ssim_weight * (1.0 - ssim_torch(pred, target))
    return loss


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two CHW images in [0,1] (Wang et al. 2004, scikit-image's Gaussian-window form)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(
        np.clip(a, 0, 1).transpose(1, 2, 0), np.clip(b, 0, 1).transpose(1, 2, 0),
        channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    ))


@torch.no_grad()
def run_batched(fn: Callable[[torch.Tensor], torch.Tensor], ys: np.ndarray, device: torch.device, batch: int = 8) -> np.ndarray:
    outs = []
    for i in range(0, len(ys), batch):
        outs.append(fn(torch.from_numpy(ys[i : i + batch]).to(device)).float().cpu().numpy())
    return np.concatenate(outs)


def score(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    return {
        "psnr": float(np.mean([psnr(o, t) for o, t in zip(outputs, targets)])),
        "ssim": float(np.mean([ssim(o, t) for o, t in zip(outputs, targets)])),
    }


def plot_curves(history: list[dict], path: str | Path, title: str) -> None:
    """Training loss and validation PSNR/SSIM against step, to a PNG; with detection AP in the
    history (detection-aware distillation) a third panel shows AP50 against the raw photos'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vals = [h for h in history if "val_psnr" in h]
    det = [h for h in vals if "val_ap50" in h]
    fig, axes = plt.subplots(1, 3 if det else 2, figsize=(15 if det else 10, 3.6))
    ax1, ax2 = axes[0], axes[1]
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    if losses:
        s, l = zip(*losses)
        ax1.semilogy(s, l, lw=0.8)
    ax1.set(xlabel="step", ylabel="training loss", title=title)
    if vals:
        ax2.plot([h["step"] for h in vals], [h["val_psnr"] for h in vals], "o-", label="PSNR (dB)")
        ax3 = ax2.twinx()
        ax3.plot([h["step"] for h in vals], [h["val_ssim"] for h in vals], "s--", color="tab:orange", label="SSIM")
        ax3.set_ylabel("SSIM")
        if "input_psnr" in vals[0]:
            ax2.axhline(vals[0]["input_psnr"], color="gray", ls=":", label="dark input PSNR")
        if "teacher_psnr" in vals[0]:
            ax2.axhline(vals[0]["teacher_psnr"], color="tab:green", ls="--", label="teacher PSNR")
        ax2.legend(loc="lower right", fontsize=8)
    ax2.set(xlabel="step", ylabel="validation PSNR (dB)", title="synthetic validation split")
    if det:
        ax = axes[2]
        ax.plot([h["step"] for h in det], [h["val_ap50"] for h in det], "o-", label="enhanced AP50")
        ax.axhline(det[0]["raw_ap50"], color="gray", ls=":", label="raw photos AP50")
        ax.set(xlabel="step", ylabel="AP50", title="detector on labelled night photos")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
