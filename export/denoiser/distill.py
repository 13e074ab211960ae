"""Distilling the T-step teacher into a K-step student by trajectory matching.

Method (argued in docs/DENOISER.md): the student starts as a copy of the teacher. For a pool of
training crops we run the teacher's deterministic T-step sampler from ``x_T = y + kappa
sqrt(eta_T) eps`` (``eps = 0`` by default, as in the exported graph) and keep its states at the K+1 times the student will visit. Each of the
student's K steps is then trained to land, in *one* update, where the teacher lands after
``T/K`` updates: the regression target is the ``x0`` that makes the DDIM step hit the teacher's
state exactly (:func:`export.denoiser.diffusion.x0_for_target`; Salimans & Ho 2022, Eq. 8),
i.e. knowledge distillation of an iterative sampler (Luhman & Luhman 2021) done per segment as
in TRACT (Berthelot et al. 2023), one phase, because the residual-shift process already starts
from the degraded frame and needs few steps. The pool is regenerated every ``refresh`` steps. The loop is :mod:`export.denoiser.driver`'s.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from engines.device import resolve_device
from export.denoiser import common, data, diffusion, driver
from export.denoiser.model import (DiffusionConfig, EnhancerGraph, denoiser_fn, file_sha256,
                                   load_checkpoint, bridge_endpoint, save_weights_only)
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
    headroom: float | None = None  # the student's highlight roll-off (NetConfig.headroom); None: the teacher's
    work: int | None = None  # the student's working scale (NetConfig.work); None: the teacher's
    clean_weight: float = 0.0  # last segment's target: (1 - w) * teacher's image + w * clean photo
    init: str = "teacher"  # "teacher": a copy; "identity": the teacher's trunk with a zeroed head (curve head only)
    distill_weight: float = 1.0  # weight of the trajectory-matching loss
    # detection-aware term (export.denoiser.detection): a frozen YOLO's loss on enhanced real night photos
    detector: str | None = None  # ultralytics .pt, e.g. ../shared/data/weights/yolo11n_coco_fp32.pt
    det_data: str | None = None  # labelled photos to train on (exdark_dev/train), never the val split
    det_weight: float = 0.0
    det_batch: int = 4
    det_crop: int = 320
    det_val: str | None = None  # labelled photos to score AP on at each validation (choosing settings)
    det_val_limit: int | None = 100
    feat_weight: float = 0.0  # detector-feature distance between enhanced night crops and their targets
    feat_batch: int = 4
    pair_weight: float = 0.0  # the K-step graph's own output against the target (end to end, both steps)


def student_from_teacher(teacher, skip_enc=(), skip_dec=(), headroom: float | None = None,
                         work: int | None = None):
    """A student initialised from the teacher: the same network, or a cheaper one without some
    residual blocks (their residual branch starts at zero, i.e. as if the block were the identity;
    the remaining weights are the teacher's), with the teacher's highlight roll-off and working
    scale unless ``headroom`` or ``work`` is given (``NetConfig.headroom``, ``NetConfig.work``:
    a smaller working scale keeps every weight). Returns a trainable float32 copy."""
    cfg = replace(teacher.cfg, skip_enc=tuple(sorted(set(teacher.cfg.skip_enc) | set(skip_enc))),
                  skip_dec=tuple(sorted(set(teacher.cfg.skip_dec) | set(skip_dec))),
                  headroom=teacher.cfg.headroom if headroom is None else headroom,
                  work=teacher.cfg.work if work is None else work)
    if cfg == teacher.cfg:
        student = copy.deepcopy(teacher)
    else:
        student = build_net(cfg).to(next(teacher.parameters()).device)
        state = {k: v for k, v in teacher.state_dict().items() if k in student.state_dict()}
        student.load_state_dict(state, strict=False)
        missing = set(student.state_dict()) - set(state)
        if missing - {"guide_log_eps"}:  # a work scale > 1 from a work-1 teacher starts its own
            raise ValueError(f"the student's weights {sorted(missing)} are not in the teacher")
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def zero_head(net):
    """Make a curve-head network the identity (its head's weights zeroed) and keep the trunk:
    a student that starts by doing no harm, with the teacher's features to learn from."""
    if not net.cfg.curve:
        raise ValueError("--init identity needs a teacher with a curve head (train it with --head curve or guided)")
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    return net


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
        y, x0 = data.training_batch(photos, cfg.batch, cfg.crop, rng, cfg.degradation)
        ys.append(y)
        x0s.append(x0)
    y = bridge_endpoint(teacher, teacher.shrink(torch.from_numpy(np.concatenate(ys)).to(device)))
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    eps = torch.randn(y.shape, generator=gen).to(device)
    if cfg.noise == "zero":  # the exported graph starts from zero noise: distil on that path
        eps = torch.zeros_like(y)
    states = teacher_trajectories(teacher, diff, K, y, eps)
    if cfg.clean_weight > 0:  # pull the final image towards the clean photo (less leftover noise)
        x0 = teacher.shrink(torch.from_numpy(np.concatenate(x0s)).to(device))
        states[-1] = (1 - cfg.clean_weight) * states[-1] + cfg.clean_weight * x0
    return {"y": y, "states": states}


def student_loss(student, pool: dict, etas_k: list[float], batch: int, rng, ssim_weight: float = 0.0) -> torch.Tensor:
    n, K = pool["y"].shape[0], len(etas_k) - 1
    idx = torch.from_numpy(rng.integers(0, n, batch))
    seg = torch.from_numpy(rng.integers(0, K, batch))
    dev = pool["y"].device
    idx, seg = idx.to(dev), seg.to(dev)
    e = torch.tensor(etas_k, dtype=torch.float32, device=dev)
    eta_t, eta_s = e[seg].view(-1, 1, 1, 1), e[seg + 1].view(-1, 1, 1, 1)
    y, x_t, x_s = pool["y"][idx], pool["states"][seg, idx], pool["states"][seg + 1, idx]
    target = diffusion.x0_for_target(x_s, x_t, y, eta_t, eta_s)
    return common.image_loss(student(x_t, y, eta_t.view(-1)), target, ssim_weight)


class StudentTask:
    """The student's part of a run (:mod:`export.denoiser.driver`): trajectory-matching loss on a
    pool of teacher trajectories, scored with the K-step sampler against the teacher's T steps.

    The pool in use at step ``s`` is built from the generator of step ``s - s % refresh`` only,
    so a resumed run rebuilds exactly the pool the uninterrupted run had."""

    kind = "student"

    def __init__(self, cfg: DistillConfig, device):
        self.cfg, self.device = cfg, device
        self.teacher, tmeta = load_checkpoint(cfg.teacher, device)
        self.diff = DiffusionConfig(**tmeta["diffusion"])
        self.etas_k = self.diff.sampling_etas(cfg.steps)  # validates K against T
        self.train_set, val_set = data.load_split(cfg.data, cfg.val_fraction, cfg.max_side)
        self.val_y, self.val_x = data.validation_pairs(val_set, cfg.val_size, cfg.degradation)
        self.net = student_from_teacher(self.teacher, cfg.skip_enc, cfg.skip_dec, cfg.headroom, cfg.work)
        if cfg.init == "identity":
            zero_head(self.net)
        self.graph = EnhancerGraph(self.net, self.diff, cfg.steps)  # differentiable, shares the weights
        self.title = f"distill K={cfg.steps}"
        self._setup_detection(cfg, device)
        self.teacher_meta, self.teacher_sha = tmeta, file_sha256(cfg.teacher)
        graph = EnhancerGraph(self.teacher, self.diff, self.diff.T).to(device)
        self.teacher_score = common.score(common.run_batched(graph, self.val_y, device), self.val_x)
        self.input_score = common.score(self.val_y, self.val_x)
        self._pool, self._pool_step = None, None

    def pool_at(self, step: int) -> dict:
        pool_step = step - step % self.cfg.refresh
        if self._pool_step != pool_step:
            rng = np.random.default_rng([self.cfg.seed, pool_step, 1])
            self._pool = make_pool(self.teacher, self.diff, self.cfg.steps, self.train_set, self.cfg, rng, self.device)
            self._pool_step = pool_step
        return self._pool

    def _setup_detection(self, cfg: DistillConfig, device) -> None:
        self.detector = self.det_photos = self.det_score = None
        if cfg.det_weight > 0 or cfg.det_val or cfg.feat_weight > 0:
            if not cfg.detector:
                raise ValueError("detection-aware distillation needs --detector (a YOLO .pt)")
            from export.denoiser import detection

            self.detector = detection.FrozenDetector(cfg.detector, _det_classes(cfg), device)
        if cfg.det_weight > 0:
            if not cfg.det_data:
                raise ValueError("--det-weight needs --det-data (labelled night photos, e.g. exdark_dev/train)")
            self.det_photos, _ = detection.load_box_photos(cfg.det_data, cfg.det_crop, _det_classes(cfg))
        if cfg.det_val:
            self.det_score = detection.DetectionScore(self.detector, cfg.det_val, cfg.det_val_limit,
                                                      multiple=self.net.cfg.frame_multiple)
            self.det_raw = self.det_score(None)

    def loss(self, step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        loss = torch.zeros((), device=self.device)
        if self.cfg.distill_weight > 0:
            loss = self.cfg.distill_weight * student_loss(self.net, self.pool_at(step), self.etas_k, self.cfg.batch,
                                                          rng, self.cfg.ssim_weight)
        if self.cfg.pair_weight > 0:  # what the exported graph outputs, against the target
            y, x0 = (torch.from_numpy(a).to(self.device) for a in data.training_batch(
                self.train_set, self.cfg.batch, self.cfg.crop, rng, self.cfg.degradation))
            loss = loss + self.cfg.pair_weight * common.image_loss(self.graph(y), x0, self.cfg.ssim_weight)
        if self.det_photos is not None:
            from export.denoiser.detection import detection_batch

            batch = detection_batch(self.det_photos, self.cfg.det_batch, self.cfg.det_crop, rng)
            enhanced = self.graph(batch["img"].to(self.device))
            loss = loss + self.cfg.det_weight * self.detector.loss(enhanced, batch)
        if self.cfg.feat_weight > 0:
            from export.denoiser.detection import feature_distance

            y, x0 = (torch.from_numpy(a).to(self.device) for a in data.training_batch(
                self.train_set, self.cfg.feat_batch, self.cfg.crop, rng, self.cfg.degradation))
            loss = loss + self.cfg.feat_weight * feature_distance(self.detector, self.graph(y), x0)
        return loss

    def evaluate(self, ema) -> dict[str, float]:
        graph = EnhancerGraph(ema, self.diff, self.cfg.steps).to(self.device)
        s = common.score(common.run_batched(graph, self.val_y, self.device), self.val_x)
        out = {"val_psnr": s["psnr"], "val_ssim": s["ssim"], "teacher_psnr": self.teacher_score["psnr"],
               "teacher_ssim": self.teacher_score["ssim"], "input_psnr": self.input_score["psnr"]}
        if self.det_score is not None:
            graph = EnhancerGraph(ema, self.diff, self.cfg.steps).to(self.device).eval()
            d = self.det_score(graph)
            out.update(val_ap50=d["ap50"], val_ap50_95=d["ap50_95"], raw_ap50=self.det_raw["ap50"],
                       raw_ap50_95=self.det_raw["ap50_95"])
        return out

    def meta(self, ema, step: int, history: list[dict]) -> dict:
        vals = [h for h in history if "val_psnr" in h]
        return {"kind": "student", "steps": self.cfg.steps, "net_config": self.net.cfg.to_dict(),
                "diffusion": self.diff.to_dict(), "teacher_sha256": self.teacher_sha, "step": step,
                "val": vals[-1] if vals else None, "distill_config": asdict(self.cfg)}

    def check_resume(self, ckpt: dict, path: str) -> None:
        if ckpt.get("kind") != "student" or ckpt.get("steps") != self.cfg.steps:
            raise ValueError(f"{path}: --resume needs a K={self.cfg.steps} student checkpoint, this one is "
                             f"{ckpt.get('kind')!r} with steps={ckpt.get('steps')}")


def _det_classes(cfg: DistillConfig) -> tuple[int, ...]:
    from engines.evaluation import EXDARK_COCO_IDS

    return EXDARK_COCO_IDS


def schedule(cfg: DistillConfig) -> driver.Schedule:
    return driver.Schedule(out=cfg.out, total=cfg.iters, lr=cfg.lr, seed=cfg.seed, warmup=50, ema=cfg.ema,
                           val_every=cfg.val_every, save_every=cfg.save_every, resume=cfg.resume,
                           time_limit=cfg.time_limit, log_file=cfg.log_file, progress=cfg.progress,
                           best="val_ap50" if cfg.det_val else None)


def distill(cfg: DistillConfig, log: Callable[[str], None] = print) -> Path:
    """Distil ``cfg.teacher`` into a K-step student; returns the student checkpoint's path and,
    with ``weights_out``, also writes the small fp16 inference weights there."""
    device = resolve_device(cfg.device, "distillation")
    task = StudentTask(cfg, device)
    t, i = task.teacher_score, task.input_score
    log(f"teacher ({task.diff.T} steps) val PSNR {t['psnr']:.2f} dB SSIM {t['ssim']:.3f}; "
        f"dark input {i['psnr']:.2f} dB; distilling to K={cfg.steps} on {device}")
    result = driver.run(task, schedule(cfg), log)
    if cfg.weights_out:  # also after a time-budget stop: that is a normal end of a sitting
        ema, meta = result.ema, task.meta(result.ema, result.step, result.history)
        if result.best is not None:  # the validation-best EMA (by detection AP50), not the last
            ema.load_state_dict(result.best["ema"])
            meta = {k: v for k, v in result.best.items() if k not in ("model", "ema", "opt", "rng")}
        save_weights_only(ema, meta, cfg.weights_out)
        log(f"inference weights (fp16): {cfg.weights_out} (step {meta.get('step')})")
    return result.out
