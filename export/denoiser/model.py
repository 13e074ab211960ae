"""Joins network and schedule: the K-step enhancer graph and checkpoint I/O.

The exported graph (:class:`EnhancerGraph`) takes ``image`` (``[N,3,H,W]`` RGB in [0,1], H and W
multiples of the net's multiple) and returns ``enhanced`` of the same shape, with all K sampler
steps unrolled and deterministic starting noise: zero (the default; measured better, see
docs/DENOISER.md) or a fixed pattern (a 64x64 table from a fixed seed, tiled over the frame),
so that a static scene gives the same picture every frame.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export.denoiser import diffusion
from export.denoiser.net import DenoiserUNet, build_net

NOISE_TILE = 64
NOISE_SEED = 20240607


@dataclass(frozen=True)
class DiffusionConfig:
    T: int = 16
    kappa: float = 0.5
    eta_1: float = 1e-3
    eta_T: float = 0.999
    p: float = 0.3

    def etas(self) -> np.ndarray:
        return diffusion.eta_schedule(self.T, self.eta_1, self.eta_T, self.p)

    def sampling_etas(self, K: int) -> list[float]:
        return diffusion.sampling_etas(self.etas(), K)

    def to_dict(self) -> dict:
        return asdict(self)


def fixed_noise_table(seed: int = NOISE_SEED, size: int = NOISE_TILE) -> torch.Tensor:
    """The fixed starting noise, ``[1,3,size,size]`` standard normal from numpy's PCG64."""
    table = np.random.default_rng(seed).standard_normal((1, 3, size, size)).astype(np.float32)
    return torch.from_numpy(table)


def tile_noise(table: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """Repeat the table over an ``h x w`` frame (and ``n`` frames) and crop."""
    s = table.shape[-1]
    reps_h, reps_w = h // s + 1, w // s + 1
    return table.repeat(1, 1, reps_h, reps_w)[:, :, :h, :w].expand(n, -1, -1, -1)


def normalize_exposure(y: torch.Tensor, target: float = 0.45, max_gain: float = 20.0) -> torch.Tensor:
    """Global exposure pre-gain of the dark frame: ``y * clamp(target / mean(y), 1, max_gain)``.

    The residual-shift bridge then runs between the clean image and this brightened frame
    (as ResShift bridges to the bicubic-upsampled low-resolution image), so the network learns
    denoising, local tone and colour rather than a large multiplicative gain, which a
    convolutional network with additive skips represents poorly. Values are not clipped, so
    bright lamps keep their detail above 1.
    """
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    return y * (target / (mean + 1e-4)).clamp(1.0, max_gain)


def bridge_endpoint(net: DenoiserUNet, image: torch.Tensor) -> torch.Tensor:
    """Where the residual-shift bridge ends for ``net``: the pre-gained frame for the residual
    head, the dark frame itself for the curve head (which brightens it by a bounded local curve)."""
    return image if net.cfg.curve else normalize_exposure(image)


def denoiser_fn(net: DenoiserUNet):
    """Adapt the network to the sampler's ``denoise(x_t, y, eta)`` contract."""

    def denoise(x_t, y, eta):
        return net(x_t, y, torch.full((1,), float(eta), device=x_t.device))

    return denoise


class EnhancerGraph(nn.Module):
    """image -> enhanced: the bridge's endpoint (:func:`bridge_endpoint`), then K deterministic
    residual-shift steps, unrolled; with ``NetConfig.work > 1`` they run on the frame averaged
    down and a guided upsampling gives the full-resolution picture (:meth:`DenoiserUNet.expand`)."""

    def __init__(self, net: DenoiserUNet, diff: DiffusionConfig, steps: int, noise: str = "zero",
                 noise_seed: int = NOISE_SEED):
        super().__init__()
        if noise not in ("zero", "fixed"):
            raise ValueError(f"noise must be 'zero' or 'fixed', got {noise!r}")
        self.net = net
        self.noise_mode = noise
        self.kappa = diff.kappa
        self.etas = diff.sampling_etas(steps)
        self.steps = steps
        self.register_buffer("noise", fixed_noise_table(noise_seed))

    @property
    def multiple(self) -> int:
        return self.net.cfg.frame_multiple

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        small = self.net.shrink(image)  # the frame itself unless the net works at a reduced size
        n, _, h, w = small.shape
        if self.noise_mode == "zero":
            eps = torch.zeros_like(small)
        else:
            eps = tile_noise(self.noise, n, h, w)
        y = bridge_endpoint(self.net, small)
        out = diffusion.sample(denoiser_fn(self.net), y, self.etas, self.kappa, eps)
        return self.net.expand(image, small, out.clamp(0.0, 1.0))


# -- checkpoints -----------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[DenoiserUNet, dict]:
    """Network (EMA weights when present, float32, eval mode) and the checkpoint's metadata."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found; train one with `duskwatch train denoiser`")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "net_config" not in ckpt:
        raise ValueError(f"{path}: not a duskwatch denoiser checkpoint (no 'net_config' entry)")
    net = build_net(ckpt["net_config"])
    state = ckpt.get("ema") or ckpt["model"]
    net.load_state_dict({k: v.float() for k, v in state.items()})
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "ema", "opt")}
    return net.to(device).eval(), meta


def save_atomic(obj: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def save_weights_only(net: DenoiserUNet, meta: dict, path: str | Path) -> None:
    """A small fp16 inference checkpoint (what ships in export/weights/)."""
    state = {k: v.detach().half() for k, v in net.state_dict().items()}
    save_atomic({**meta, "model": state}, path)
