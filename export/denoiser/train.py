"""Teacher training: x0-prediction residual-shift diffusion (Yue et al. 2023) with an MSE loss.

Each step draws clean crops, darkens them with :mod:`export.degrade`, picks ``t ~ U{1..T}``,
forms ``x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) eps`` and regresses ``x0`` (the posterior
mean that the deterministic sampler needs). The loop itself (schedule, EMA, validation,
checkpoints, exact resume, time budget, log file) is :mod:`export.denoiser.driver`'s; the EMA is
scored on the validation split with the full T-step sampler.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from engines.device import resolve_device
from export.denoiser import common, data, driver
from export.denoiser.model import DiffusionConfig, EnhancerGraph, bridge_endpoint
from export.denoiser.net import NetConfig, build_net


@dataclass(kw_only=True)
class TrainConfig(common.RunConfig):
    steps: int | None = None
    epochs: int | None = None
    lr: float = 1e-3
    seed: int = 0
    ema: float = 0.999
    net: dict = field(default_factory=lambda: NetConfig().to_dict())
    diffusion: dict = field(default_factory=lambda: DiffusionConfig().to_dict())


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    if cfg.steps:
        return cfg.steps
    epochs = cfg.epochs or 100
    return epochs * math.ceil(n_train / cfg.batch)


def teacher_loss(net, x0: torch.Tensor, y: torch.Tensor, diff: DiffusionConfig, gen: torch.Generator,
                 ssim_weight: float = 0.0) -> torch.Tensor:
    y = bridge_endpoint(net, y)
    etas = torch.as_tensor(diff.etas(), dtype=torch.float32, device=x0.device)
    t = torch.randint(1, diff.T + 1, (x0.shape[0],), generator=gen, device="cpu").to(x0.device)
    eta = etas[t].view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=gen, device="cpu").to(x0.device)
    x_t = x0 + eta * (y - x0) + diff.kappa * eta.sqrt() * eps
    return common.image_loss(net(x_t, y, eta.view(-1)), x0, ssim_weight)


def evaluate_teacher(ema, diff: DiffusionConfig, val_y, val_x, device, steps: int | None = None) -> dict:
    graph = EnhancerGraph(ema, diff, steps or diff.T).to(device)
    return common.score(common.run_batched(graph, val_y, device), val_x)


class TeacherTask:
    """The teacher's part of a run (:mod:`export.denoiser.driver`): its loss and its score."""

    kind = "teacher"

    def __init__(self, cfg: TrainConfig, device):
        self.cfg, self.device = cfg, device
        self.train_set, val_set = data.load_split(cfg.data, cfg.val_fraction, cfg.max_side)
        self.n_val = len(val_set)
        self.val_y, self.val_x = data.validation_pairs(val_set, cfg.val_size, cfg.degradation)
        self.diff = DiffusionConfig(**cfg.diffusion)
        with torch.random.fork_rng(devices=[]):  # the initial weights depend on the seed only
            torch.manual_seed(cfg.seed)
            self.net = build_net(cfg.net).to(device)
        self.title = f"teacher ({self.diff.T} steps)"
        self.input_score = common.score(self.val_y, self.val_x)

    def loss(self, step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        batch = data.training_batch(self.train_set, self.cfg.batch, self.cfg.crop, rng, self.cfg.degradation)
        y, x0 = (self.net.shrink(torch.from_numpy(a).to(self.device)) for a in batch)  # its working size
        return teacher_loss(self.net, x0, y, self.diff, gen, self.cfg.ssim_weight)

    def evaluate(self, ema) -> dict[str, float]:
        s = evaluate_teacher(ema, self.diff, self.val_y, self.val_x, self.device)
        return {"val_psnr": s["psnr"], "val_ssim": s["ssim"], "input_psnr": self.input_score["psnr"]}

    def meta(self, ema, step: int, history: list[dict]) -> dict:
        return {"kind": "teacher", "steps": self.diff.T, "net_config": self.net.cfg.to_dict(),
                "diffusion": self.diff.to_dict(), "train_config": asdict(self.cfg)}

    def check_resume(self, ckpt: dict, path: str) -> None:
        if ckpt.get("kind") != "teacher":
            raise ValueError(f"{path}: --resume needs a teacher checkpoint, this one is {ckpt.get('kind')!r}")


def schedule(cfg: TrainConfig, total: int) -> driver.Schedule:
    return driver.Schedule(out=cfg.out, total=total, lr=cfg.lr, seed=cfg.seed, warmup=200, ema=cfg.ema,
                           ema_warmup=500, val_every=cfg.val_every, save_every=cfg.save_every,
                           resume=cfg.resume, time_limit=cfg.time_limit, log_file=cfg.log_file,
                           progress=cfg.progress)


def train_teacher(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    """Train the teacher by ``cfg``; returns the checkpoint's path (curves beside it, ``.png``)."""
    device = resolve_device(cfg.device, "training")
    task = TeacherTask(cfg, device)
    total = total_steps(cfg, len(task.train_set))
    s = task.input_score
    log(f"{len(task.train_set)} training / {task.n_val} validation photos; dark input scores "
        f"PSNR {s['psnr']:.2f} dB SSIM {s['ssim']:.3f}; {total} steps on {device}")
    return driver.run(task, schedule(cfg, total), log).out
