"""A tiny denoiser checkpoint for tests (random weights, seconds to build)."""

from pathlib import Path

import numpy as np
import torch

from export.denoiser.model import DiffusionConfig
from export.denoiser.net import NetConfig, build_net

TINY = NetConfig(widths=(8, 16), unshuffle=2, emb=16, bottleneck_blocks=1)  # multiple 4


def tiny_checkpoint(path: Path, steps: int = 2, kind: str = "student", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = build_net(TINY)
    with torch.no_grad():  # no zero-initialised layers: every weight matters for parity
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    meta = {"kind": kind, "steps": steps, "net_config": TINY.to_dict(), "diffusion": DiffusionConfig().to_dict()}
    # fp32 here (tests compare exact graphs); shipped weights are fp16
    torch.save({**meta, "model": net.state_dict()}, path)
    return path


def write_photos(folder: Path, n: int = 8, size=(72, 96)) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = size
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([(xx * (i + 1)) % 255, (yy * 3 + i * 20) % 255, ((xx + yy) * 2) % 255], -1)
        img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"photo_{i:02d}.png"), img)
    return folder
