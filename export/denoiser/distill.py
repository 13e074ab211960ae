"""Distilling the T-step teacher into a K-step student by trajectory matching.

Method (argued in docs/DENOISER.md): the student starts as a copy of the teacher. For a pool of
training crops we run the teacher's deterministic T-step sampler from ``x_T = y + kappa
sqrt(eta_T) eps`` (``eps = 0`` by default, as in the exported graph) and keep its states at the K+1 times the student will visit. Each of the
student's K steps is then trained to land, in *one* update, where the teacher lands after
``T/K`` updates: the regression target is the ``x0`` that makes the DDIM step hit the teacher's
state exactly (:func:`export.denoiser.diffusion.x0_for_target`; Salimans & Ho 2022, Eq. 8),
i.e. knowledge distillation of an iterative sampler (Luhman & Luhman 2021) done per segment as
in TRACT (Berthelot et al. 2023), one phase, because the residual-shift process already starts
from the degraded frame and needs few steps. The pool is regenerated every ``refresh`` steps.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from export.denoiser import common, data, diffusion
from export.denoiser.model import (DiffusionConfig, EnhancerGraph, denoiser_fn, file_sha256,
                                   load_checkpoint, normalize_exposure, save_atomic, save_weights_only)
from export.denoiser.net import build_net


@dataclass(kw_only=True)
class DistillConfig(common.RunConfig):
    teacher: str
    steps: int
    iters: int = 2000
    lr: float = 5e-4
    pool: int = 192
    refresh: int = 200
    seed: int = 1
    ema: float = 0.995
    weights_out: str | None = None
    noise: str = "zero"  # starting noise of the trajectories: "zero" (as the exported graph) or "random"
    skip_enc: tuple[int, ...] = ()  # student leaves out these levels' encoder blocks (cheaper)
    skip_dec: tuple[int, ...] = ()  # ... and these levels' decoder blocks
    clean_weight: float = 0.0  # last segment's target: (1 - w) * teacher's image + w * clean photo


def student_from_teacher(teacher, skip_enc=(), skip_dec=()):
    """A student initialised from the teacher: the same network, or a cheaper one without some
    residual blocks (their residual branch starts at zero, i.e. as if the block were the identity;
    the remaining weights are the teacher's). Returns a trainable float32 copy."""
    if not skip_enc and not skip_dec:
        student = copy.deepcopy(teacher)
    else:
        cfg = replace(teacher.cfg, skip_enc=tuple(sorted(set(teacher.cfg.skip_enc) | set(skip_enc))),
                      skip_dec=tuple(sorted(set(teacher.cfg.skip_dec) | set(skip_dec))))
        student = build_net(cfg).to(next(teacher.parameters()).device)
        state = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict()}
        student.load_state_dict(state, strict=True)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


@torch.no_grad()
def teacher_trajectories(teacher, diff: DiffusionConfig, K: int, y: torch.Tensor, eps: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """Teacher states at the student's K+1 times, ``[K+1, N, 3, H, W]``."""
    keep = set(diffusion.step_indices(diff.T, K))
    etas = diff.sampling_etas(diff.T)  # eta_T ... eta_0, index i <-> schedule index T - i
    out = []
    for i in range(0, len(y), chunk):
        states = []

        def grab(j, x_t, x0_hat):
            if diff.T - j in keep:
                states.append(x_t)

        final = diffusion.sample(denoiser_fn(teacher), y[i:i + chunk], etas, diff.kappa, eps[i:i + chunk], callback=grab)
        out.append(torch.stack(states + [final]))
    return torch.cat(out, dim=1)


def make_pool(teacher, diff, K, photos, cfg: DistillConfig, rng, device) -> dict:
    ys, x0s = [], []
    for _ in range(0, cfg.pool, cfg.batch):
        y, x0 = data.training_batch(photos, cfg.batch, cfg.crop, rng)
        ys.append(y)
        x0s.append(x0)
    y = normalize_exposure(torch.from_numpy(np.concatenate(ys)).to(device))  # the bridge's endpoint
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    eps = torch.randn(y.shape, generator=gen).to(device)
    if cfg.noise == "zero":  # the exported graph starts from zero noise: distil on that path
        eps = torch.zeros_like(y)
    states = teacher_trajectories(teacher, diff, K, y, eps)
    if cfg.clean_weight > 0:  # pull the final image towards the clean photo (less leftover noise)
        x0 = torch.from_numpy(np.concatenate(x0s)).to(device)
        states[-1] = (1 - cfg.clean_weight) * states[-1] + cfg.clean_weight * x0
    return {"y": y, "states": states}


def student_loss(student, pool: dict, etas_k: list[float], batch: int, rng) -> torch.Tensor:
    n, K = pool["y"].shape[0], len(etas_k) - 1
    idx = torch.from_numpy(rng.integers(0, n, batch))
    seg = torch.from_numpy(rng.integers(0, K, batch))
    dev = pool["y"].device
    idx, seg = idx.to(dev), seg.to(dev)
    e = torch.tensor(etas_k, dtype=torch.float32, device=dev)
    eta_t, eta_s = e[seg].view(-1, 1, 1, 1), e[seg + 1].view(-1, 1, 1, 1)
    y, x_t, x_s = pool["y"][idx], pool["states"][seg, idx], pool["states"][seg + 1, idx]
    target = diffusion.x0_for_target(x_s, x_t, y, eta_t, eta_s)
    return F.mse_loss(student(x_t, y, eta_t.view(-1)), target)


def distill(cfg: DistillConfig, log: Callable[[str], None] = print) -> Path:
    from tqdm import tqdm

    device = common.resolve_device(cfg.device)
    teacher, meta = load_checkpoint(cfg.teacher, device)
    diff = DiffusionConfig(**meta["diffusion"])
    K = cfg.steps
    etas_k = diff.sampling_etas(K)  # validates K against T
    train_set, val_set = data.load_split(cfg.data, cfg.val_fraction, cfg.max_side)
    val_y, val_x = data.validation_pairs(val_set, cfg.val_size)
    student = student_from_teacher(teacher, cfg.skip_enc, cfg.skip_dec)
    ema = copy.deepcopy(student).eval()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=1e-4)
    step, history = 0, []
    if cfg.resume:
        step, history = _resume(cfg.resume, student, ema, opt, K)
        log(f"resumed from {cfg.resume} at step {step}")
    t_score = common.score(common.run_batched(EnhancerGraph(teacher, diff, diff.T).to(device), val_y, device), val_x)
    in_score = common.score(val_y, val_x)
    log(f"teacher ({diff.T} steps) val PSNR {t_score['psnr']:.2f} dB SSIM {t_score['ssim']:.3f}; "
        f"dark input {in_score['psnr']:.2f} dB; distilling to K={K} on {device}")
    teacher_sha = file_sha256(cfg.teacher)
    t0, pool = time.monotonic(), None
    bar = tqdm(total=cfg.iters, initial=step, desc=f"distill K={K}", unit="step", dynamic_ncols=True)
    while step < cfg.iters:
        rng = np.random.default_rng([cfg.seed, step])
        if pool is None or step % cfg.refresh == 0:
            pool = make_pool(teacher, diff, K, train_set, cfg, rng, device)
        for g in opt.param_groups:
            g["lr"] = common.cosine_lr(step, cfg.iters, cfg.lr, warmup=50)
        loss = student_loss(student, pool, etas_k, cfg.batch, rng)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        common.ema_update(ema, student, cfg.ema)
        step += 1
        bar.update(1)
        history.append({"step": step, "loss": loss.item()})
        bar.set_postfix(loss=f"{loss.item():.5f}", refresh=False)
        out_of_time = cfg.time_limit is not None and time.monotonic() - t0 > cfg.time_limit
        if step % cfg.val_every == 0 or step == cfg.iters or out_of_time:
            s = common.score(common.run_batched(EnhancerGraph(ema, diff, K).to(device), val_y, device), val_x)
            history.append({"step": step, "val_psnr": s["psnr"], "val_ssim": s["ssim"],
                            "teacher_psnr": t_score["psnr"], "teacher_ssim": t_score["ssim"],
                            "input_psnr": in_score["psnr"]})
            bar.write(f"step {step}: student K={K} val PSNR {s['psnr']:.2f} dB SSIM {s['ssim']:.3f} "
                      f"(teacher {t_score['psnr']:.2f} dB)")
        if step % cfg.save_every == 0 or step == cfg.iters or out_of_time:
            _save(cfg, student, ema, opt, step, history, diff, {**meta, "net_config": student.cfg.to_dict()}, teacher_sha)
        if out_of_time:
            bar.write(f"time limit reached at step {step}; saved, resume with --resume")
            break
    bar.close()
    _save(cfg, student, ema, opt, step, history, diff, {**meta, "net_config": student.cfg.to_dict()}, teacher_sha)
    common.plot_curves(history, Path(cfg.out).with_suffix(".png"), f"student K={K}")
    if cfg.weights_out:
        save_weights_only(ema, _meta(cfg, diff, {**meta, "net_config": student.cfg.to_dict()}, teacher_sha, step, history),
                          cfg.weights_out)
        log(f"inference weights (fp16): {cfg.weights_out}")
    return Path(cfg.out)


def _meta(cfg, diff, tmeta, teacher_sha, step, history) -> dict:
    vals = [h for h in history if "val_psnr" in h]
    return {"kind": "student", "steps": cfg.steps, "net_config": tmeta["net_config"],
            "diffusion": diff.to_dict(), "teacher_sha256": teacher_sha, "step": step,
            "val": vals[-1] if vals else None}


def _save(cfg, student, ema, opt, step, history, diff, tmeta, teacher_sha) -> None:
    save_atomic({**_meta(cfg, diff, tmeta, teacher_sha, step, history),
                 "model": student.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                 "history": history, "distill_config": asdict(cfg)}, cfg.out)


def _resume(path, student, ema, opt, K) -> tuple[int, list]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("kind") != "student" or ckpt.get("steps") != K:
        raise ValueError(f"{path}: --resume needs a K={K} student checkpoint, this one is "
                         f"{ckpt.get('kind')!r} with steps={ckpt.get('steps')}")
    student.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["opt"])
    return int(ckpt["step"]), list(ckpt["history"])
