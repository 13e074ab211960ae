"""The one training loop, shared by teacher training and student distillation.

A run is a :class:`Task` (the network to train, its loss for one step, its evaluation and the
metadata its checkpoint carries) driven by :func:`run` with a :class:`Schedule`: AdamW, linear
warm-up then cosine learning rate (Loshchilov & Hutter 2017), gradient clipping, an EMA of the
weights (the EMA is what is scored and exported), validation every ``val_every`` steps, atomic
checkpoints every ``save_every`` steps, a time budget, a log file and a tqdm bar.

Resuming is exact: the checkpoint holds the weights, the EMA, the optimiser state, torch's RNG
states and the history; every step draws its data from generators seeded by ``(seed, step)``, and
tasks that keep state across steps (distillation's pool of teacher trajectories) rebuild it from
the step alone. A run stopped at step ``s`` and resumed ends with the same weights as one that
was never stopped (tested).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from export.denoiser import common
from export.denoiser.model import save_atomic


class Task(Protocol):
    """What a run supplies; the driver does everything else."""

    kind: str  # checkpoint kind: "teacher" or "student"
    title: str  # for the bar and the curves plot
    net: torch.nn.Module  # the trainable network

    def loss(self, step: int, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        """The training loss of step ``step``, drawing randomness only from ``rng``/``gen``."""

    def evaluate(self, ema: torch.nn.Module) -> dict[str, float]:
        """Validation metrics of the EMA network, as history entries (``val_psnr``, ...)."""

    def meta(self, ema: torch.nn.Module, step: int, history: list[dict]) -> dict:
        """The checkpoint's metadata: ``kind``, ``steps``, ``net_config``, ``diffusion``, ..."""

    def check_resume(self, ckpt: dict, path: str) -> None:
        """Raise ``ValueError`` when ``ckpt`` is not a checkpoint of this kind of run."""


@dataclass
class Schedule:
    """Optimiser, learning-rate, EMA, cadence and stopping settings of a run."""

    out: str
    total: int  # optimiser steps
    lr: float
    seed: int = 0
    warmup: int = 200
    weight_decay: float = 1e-4
    clip: float = 1.0
    ema: float = 0.999
    ema_warmup: int = 0  # steps before this use a fast EMA (0.9) so early weights do not linger
    val_every: int = 500
    save_every: int = 250
    log_every: int = 50  # loss lines in the log file
    resume: str | None = None
    time_limit: float | None = None  # seconds; stop and save when exceeded
    log_file: str | None = None
    progress: bool = True  # the tqdm bar
    best: str | None = None  # a history key to maximise: its best checkpoint goes to <out>.best.pt


@dataclass
class Result:
    out: Path
    step: int
    finished: bool  # False when the time budget stopped the run
    history: list[dict]
    ema: torch.nn.Module
    best: dict | None = None  # the checkpoint with the highest ``Schedule.best`` (None without one)


def best_path(out: str | Path) -> Path:
    return Path(out).with_suffix(".best.pt")


class Reporter:
    """Messages to the console (above the bar) and, with a time stamp, to the log file."""

    def __init__(self, log_file: str | None, log: Callable[[str], None]):
        self._log = log
        self._file = None
        if log_file:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(log_file, "a", buffering=1)

    def __call__(self, msg: str, console: bool = True) -> None:
        if console:
            self._log(msg)
        if self._file:
            self._file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")

    def close(self) -> None:
        if self._file:
            self._file.close()


def step_generators(seed: int, step: int) -> tuple[np.random.Generator, torch.Generator]:
    """The randomness of one step, a function of ``(seed, step)`` only."""
    rng = np.random.default_rng([seed, step])
    return rng, torch.Generator().manual_seed(int(rng.integers(2**62)))


def run(task: Task, sched: Schedule, log: Callable[[str], None] = print) -> Result:
    """Train ``task.net`` by ``sched``; returns where the checkpoint is and how far it got."""
    from tqdm import tqdm

    net = task.net
    ema = copy.deepcopy(net).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=sched.lr,
                            weight_decay=sched.weight_decay)
    step, history = 0, []
    report = Reporter(sched.log_file, log)
    if sched.resume:
        step, history = _resume(sched.resume, task, net, ema, opt)
        report(f"resumed from {sched.resume} at step {step}")
    bar = tqdm(total=sched.total, initial=step, desc=task.title, unit="step", dynamic_ncols=True,
               disable=not sched.progress)
    say = _console(bar, report)
    t0, finished = time.monotonic(), step >= sched.total
    try:
        while step < sched.total:
            loss = _train_step(task, net, opt, sched, step)
            _ema_update(ema, net, sched, step)
            step += 1
            history.append({"step": step, "loss": loss})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
            if step % sched.log_every == 0:
                report(f"step {step}/{sched.total} loss {loss:.5g} lr {opt.param_groups[0]['lr']:.3g} "
                       f"({time.monotonic() - t0:.0f} s)", console=False)
            out_of_time = sched.time_limit is not None and time.monotonic() - t0 > sched.time_limit
            improved = False
            if step % sched.val_every == 0 or step == sched.total or out_of_time:
                improved = _validate(task, ema, step, history, say, sched.best)
            if step % sched.save_every == 0 or step == sched.total or out_of_time or improved:
                _save(task, net, ema, opt, sched, step, history)
            if improved:
                best_path(sched.out).write_bytes(Path(sched.out).read_bytes())
                say(f"step {step}: best {sched.best} so far; saved {best_path(sched.out)}")
            if out_of_time:
                say(f"time budget {sched.time_limit:.0f} s reached at step {step}; saved {sched.out}, "
                    f"continue with --resume {sched.out}")
                break
        finished = step >= sched.total
        _save(task, net, ema, opt, sched, step, history)
        common.plot_curves(history, Path(sched.out).with_suffix(".png"), task.title)
    finally:
        bar.close()
        report.close()
    best = None
    if sched.best and best_path(sched.out).is_file():
        best = torch.load(best_path(sched.out), map_location="cpu", weights_only=False)
    return Result(Path(sched.out), step, finished, history, ema, best)


def _console(bar, report: Reporter) -> Callable[[str], None]:
    def say(msg: str) -> None:
        report(msg, console=False)
        bar.write(msg) if not bar.disable else report._log(msg)

    return say


def _train_step(task: Task, net, opt, sched: Schedule, step: int) -> float:
    rng, gen = step_generators(sched.seed, step)
    for g in opt.param_groups:
        g["lr"] = common.cosine_lr(step, sched.total, sched.lr, warmup=sched.warmup)
    net.train()
    loss = task.loss(step, rng, gen)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: the loss is {loss.item()}; lower --lr or resume from "
                                 "the last checkpoint")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), sched.clip)
    opt.step()
    return float(loss.item())


@torch.no_grad()
def _ema_update(ema, net, sched: Schedule, step: int) -> None:
    common.ema_update(ema, net, sched.ema if step >= sched.ema_warmup else 0.9)


def _validate(task: Task, ema, step: int, history: list[dict], say, best_key: str | None) -> bool:
    """Score the EMA; True when ``best_key`` beat every earlier value in the history."""
    before = [h[best_key] for h in history if best_key and best_key in h]
    metrics = task.evaluate(ema)
    history.append({"step": step, **metrics})
    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
    say(f"step {step}: {shown}")
    return best_key is not None and best_key in metrics and (not before or metrics[best_key] > max(before))


def _save(task: Task, net, ema, opt, sched: Schedule, step: int, history: list[dict]) -> None:
    save_atomic({**task.meta(ema, step, history), "model": net.state_dict(), "ema": ema.state_dict(),
                 "opt": opt.state_dict(), "step": step, "history": history, "schedule": asdict(sched),
                 "rng": _rng_state()}, sched.out)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _resume(path: str, task: Task, net, ema, opt) -> tuple[int, list]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from; drop --resume to start afresh")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    task.check_resume(ckpt, path)
    net.load_state_dict(ckpt["model"])
    ema.load_state_dict(ckpt["ema"])
    opt.load_state_dict(ckpt["opt"])
    rng = ckpt.get("rng") or {}
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(ckpt["step"]), list(ckpt["history"])


def steps_for_epochs(epochs: int, n_train: int, batch: int) -> int:
    return epochs * math.ceil(n_train / batch)
