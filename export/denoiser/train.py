"""Teacher training: x0-prediction residual-shift diffusion (Yue et al. 2023) with an MSE loss.

Each step draws clean crops, darkens them with :mod:`export.degrade`, picks ``t ~ U{1..T}``,
forms ``x_t = x0 + eta_t (y - x0) + kappa sqrt(eta_t) eps`` and regresses ``x0`` (the posterior
mean that the deterministic sampler needs). An EMA of the weights is kept and scored on the
validation split with the full T-step sampler. Checkpoints are resumable: the data stream is
seeded by ``(seed, step)``, so a resumed run sees the batches the uninterrupted one would have.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from export.denoiser import common, data
from export.denoiser.model import DiffusionConfig, EnhancerGraph, normalize_exposure, save_atomic
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


def teacher_loss(net, x0: torch.Tensor, y: torch.Tensor, diff: DiffusionConfig, gen: torch.Generator) -> torch.Tensor:
    y = normalize_exposure(y)
    etas = torch.as_tensor(diff.etas(), dtype=torch.float32, device=x0.device)
    t = torch.randint(1, diff.T + 1, (x0.shape[0],), generator=gen, device="cpu").to(x0.device)
    eta = etas[t].view(-1, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=gen, device="cpu").to(x0.device)
    x_t = x0 + eta * (y - x0) + diff.kappa * eta.sqrt() * eps
    return F.mse_loss(net(x_t, y, eta.view(-1)), x0)


def evaluate_teacher(ema, diff: DiffusionConfig, val_y, val_x, device, steps: int | None = None) -> dict:
    graph = EnhancerGraph(ema, diff, steps or diff.T).to(device)
    return common.score(common.run_batched(graph, val_y, device), val_x)


def train_teacher(cfg: TrainConfig, log: Callable[[str], None] = print) -> Path:
    from tqdm import tqdm

    device = common.resolve_device(cfg.device)
    train_set, val_set = data.load_split(cfg.data, cfg.val_fraction, cfg.max_side)
    val_y, val_x = data.validation_pairs(val_set, cfg.val_size)
    diff = DiffusionConfig(**cfg.diffusion)
    net = build_net(cfg.net).to(device)
    ema = copy.deepcopy(net).eval()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, history = 0, []
    if cfg.resume:
        step, history = _resume(cfg.resume, net, ema, opt)
        log(f"resumed from {cfg.resume} at step {step}")
    total = total_steps(cfg, len(train_set))
    input_score = common.score(val_y, val_x)
    log(f"{len(train_set)} training / {len(val_set)} validation photos; dark input scores "
        f"PSNR {input_score['psnr']:.2f} dB SSIM {input_score['ssim']:.3f}; {total} steps on {device}")
    t0 = time.monotonic()
    bar = tqdm(total=total, initial=step, desc="teacher", unit="step", dynamic_ncols=True)
    while step < total:
        rng = np.random.default_rng([cfg.seed, step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        y, x0 = (torch.from_numpy(a).to(device) for a in data.training_batch(train_set, cfg.batch, cfg.crop, rng))
        for g in opt.param_groups:
            g["lr"] = common.cosine_lr(step, total, cfg.lr)
        loss = teacher_loss(net, x0, y, diff, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        common.ema_update(ema, net, cfg.ema if step > 500 else 0.9)
        step += 1
        bar.update(1)
        history.append({"step": step, "loss": loss.item()})
        bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        out_of_time = cfg.time_limit is not None and time.monotonic() - t0 > cfg.time_limit
        if step % cfg.val_every == 0 or step == total or out_of_time:
            s = evaluate_teacher(ema, diff, val_y, val_x, device)
            history.append({"step": step, "val_psnr": s["psnr"], "val_ssim": s["ssim"],
                            "input_psnr": input_score["psnr"]})
            bar.write(f"step {step}: val PSNR {s['psnr']:.2f} dB SSIM {s['ssim']:.3f} ({diff.T}-step sampler)")
        if step % cfg.save_every == 0 or step == total or out_of_time:
            _save(cfg, net, ema, opt, step, history, diff)
        if out_of_time:
            bar.write(f"time limit {cfg.time_limit:.0f} s reached at step {step}; saved, resume with --resume")
            break
    bar.close()
    _save(cfg, net, ema, opt, step, history, diff)
    common.plot_curves(history, Path(cfg.out).with_suffix(".png"), f"teacher ({diff.T} steps)")
    return Path(cfg.out)


def _save(cfg, net, ema, opt, step, history, diff) -> None:
    save_atomic({
        "kind": "teacher", "steps": diff.T, "net_config": net.cfg.to_dict(), "diffusion": diff.to_dict(),
        "model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
        "step": step, "history": history, "train_config": asdict(cfg),
    }, cfg.out)


def _resume(path: str, net, ema, opt) -> tuple[int, list]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("kind") != "teacher":
        raise ValueError(f"{path}: --resume needs a teacher checkpoint, this one is {ckpt.get('kind')!r}")
    net.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["opt"])
    return int(ckpt["step"]), list(ckpt["history"])
