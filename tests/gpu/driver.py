"""The GPU check: every GPU figure the project lacks, in one time-boxed run, into one folder.

``tests/gpu/run.sh`` installs what is missing and then runs this driver; ``--dry`` runs the same
stages with tiny sizes on the CPU (CI runs it, ``tests/gpu/test_driver_dry.py``). Stages, each a
``duskwatch`` command in its own process with its own time limit, in this order:

1. ``pytest``: the GPU-marked tests (CUDA graphs, torch letterbox/NMS, the ONNX Runtime CUDA
   provider, TensorRT where importable);
2. ``bench_engine_b{1,8,32}``: the torch engine (fp16, CUDA graphs) beside the bare PyTorch
   forward, eager and replayed from a CUDA graph (``bench engine --compare-bare``);
3. ``bench_pipeline_{8,32}``: the daemon pipeline on 8 and 32 file streams with the enhancer on
   every frame (``--enhance always --views raw,enhanced``: the enhancer's network on every frame,
   as a view, since the picture alone is made only when looked at), 8 streams also beside ultralytics;
4. ``bench_pipeline_triton``: the detector (an ONNX export) served by the bundled Triton server
   of nvidia-pytriton (ONNX Runtime's CUDA provider inside its Python backend), the pipeline on
   8 streams sending it its batches (``tests/gpu/triton_stage.py``); skipped, and said so, when
   run.sh found no Triton wheels to carry (it is optional: the run is still ok without it);
5. ``train``: a time-boxed denoiser teacher run whose checkpoint is copied into the folder.

Every stage writes ``<stage>.log`` (its stdout and stderr) and, for the benchmarks, ``<stage>.json``
(the command's JSON summary line); ``summary.json`` lists every stage with its status (ok,
failed, timeout, skipped), its seconds and its summary. A failed stage does not stop the others:
the folder then says what worked. The whole run stays inside ``--budget`` seconds (default 510,
leaving ``run.sh`` half a minute to install under the 9-minute limit).

Inputs fall back to what a bare GPU box has: the shared data's real YOLO11n weights, sample clip
and clean photos when ``--data`` has them, else random-weight ``yolo11n.yaml``, a clip drawn with
OpenCV and drawn training images (no network, no ffmpeg binary needed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class Plan:
    """Sizes and limits of one run: :func:`full_plan` on a GPU, :func:`dry_plan` on a CPU."""

    device: str
    imgsz: int
    batches: tuple[int, ...]
    engine_seconds: float
    streams: tuple[int, ...]
    pipeline_seconds: float
    ultralytics_streams: tuple[int, ...]
    enhancer_format: str
    train_args: tuple[str, ...]
    clip_size: tuple[int, int] = (1280, 720)
    warmup: float = 1.0
    limits: dict[str, float] = field(default_factory=dict)


def full_plan() -> Plan:
    return Plan(device="cuda:0", imgsz=640, batches=(1, 8, 32), engine_seconds=5.0,
                streams=(8, 32), pipeline_seconds=20.0, ultralytics_streams=(8,),
                enhancer_format="pt2",
                train_args=("--time-budget", "75s", "--batch", "16", "--crop", "128",
                            "--save-every", "200", "--val-every", "400"),
                limits={"pytest": 120, "export": 150, "bench_engine": 75, "bench_pipeline": 110,
                        "triton": 120, "train": 120})


def dry_plan() -> Plan:
    return Plan(device="cpu", imgsz=64, batches=(1, 2), engine_seconds=0.2, streams=(2,),
                pipeline_seconds=3.0, ultralytics_streams=(), enhancer_format="onnx",
                warmup=0.2,
                train_args=("--steps", "2", "--batch", "2", "--crop", "64", "--widths", "8,8,8,8",
                            "--val-every", "1000", "--save-every", "1"),
                clip_size=(160, 90),
                limits={"pytest": 60, "export": 60, "bench_engine": 60, "bench_pipeline": 60,
                        "triton": 90, "train": 60})


# -- running one stage -----------------------------------------------------------------------
class Budget:
    """Seconds left of the whole run; a stage gets the smaller of its own limit and what is left."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.clock, self.deadline = clock, clock() + seconds

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def limit(self, stage_limit: float) -> float:
        return min(stage_limit, self.left())


def run_stage(name: str, argv: list[str], out: Path, limit: float, env: dict[str, str]
              ) -> dict[str, Any]:
    """Run ``argv`` with a time limit; log to ``out/<name>.log``; keep its JSON summary line."""
    if limit < 5:
        return {"stage": name, "status": "skipped", "reason": "no time left in the budget"}
    log_path = out / f"{name}.log"
    t0 = time.monotonic()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(argv) + "\n")
        log.flush()
        try:
            proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=log, text=True, timeout=limit)
            status, rc, stdout = ("ok" if proc.returncode == 0 else "failed"), proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            status, rc = "timeout", None
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        log.write(stdout)
    result: dict[str, Any] = {"stage": name, "status": status, "rc": rc,
                              "seconds": round(time.monotonic() - t0, 1), "log": log_path.name}
    summary = last_json_line(stdout)
    if summary is not None:
        (out / f"{name}.json").write_text(json.dumps(summary, indent=1) + "\n")
        result["summary"] = summary
    return result


def last_json_line(text: str) -> Any:
    """The last stdout line that parses as a JSON object (the bench commands' summary), or None."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def duskwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "daemon.cli", *args]


# -- inputs ----------------------------------------------------------------------------------
def pick_weights(data: Path) -> str:
    """The shared data's real YOLO11n, else the random-weight definition."""
    real = data / "weights" / "yolo11n_coco_fp32.pt"
    return str(real) if real.is_file() else "yolo11n.yaml"


def make_clip(data: Path, work: Path, size: tuple[int, int]) -> Path:
    """A clip for the file streams: the shared sample clip scaled to ``size`` (MJPEG, written by
    OpenCV: no ffmpeg binary needed), or a drawn one when the shared data is absent."""
    import cv2

    sys.path.insert(0, str(ROOT))
    from tests.rtsp.footage import synthetic_clip

    src = data / "video" / "vtest.avi"
    out = work / f"clip_{size[0]}x{size[1]}.avi"
    if not src.is_file():
        return synthetic_clip(out, seconds=4.0, size=size)
    cap = cv2.VideoCapture(str(src))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 15, size)
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    cap.release()
    writer.release()
    return out


def training_images(data: Path, work: Path, count: int = 24, drawn: bool = False) -> Path:
    """The shared clean photos, else (or with ``drawn``) ``count`` drawn images."""
    clean = data / "images" / "clean"
    if not drawn and clean.is_dir() and any(clean.glob("*.jpg")):
        return clean
    import cv2
    import numpy as np

    folder = work / "train_images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        img = np.tile(np.linspace(20, 230, 256, dtype=np.uint8)[None, :, None], (192, 1, 3))
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 200, 2))
            cv2.rectangle(img, (x, y), (x + 40, y + 30), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(folder / f"img{i:02d}.png"), img)
    return folder


# -- the stages ------------------------------------------------------------------------------
def stage_pytest(plan: Plan) -> list[str]:
    """The GPU-marked tests: only the files that have some (a fast collection)."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py")
                   if "mark.gpu" in p.read_text(errors="ignore"))
    return [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *files]


def export_steps(plan: Plan, weights: str, work: Path) -> dict[str, tuple[Path, list[str]]]:
    """The engines the benchmarks need, and the commands that make them."""
    det = work / f"yolo11n_{plan.imgsz}_dyn.torchscript"
    enh = work / f"denoiser_k2.{plan.enhancer_format}"
    onnx = work / f"yolo11n_{plan.imgsz}_dyn.onnx"
    return {
        "export_detector": (det, duskwatch(
            "export", "yolo", "--weights", weights, "--imgsz", str(plan.imgsz), "--format",
            "torchscript", "--dynamic", "--batch", str(max(max(plan.batches), max(plan.streams))),
            "--out", str(det))),
        "export_enhancer": (enh, duskwatch(
            "export", "denoiser", "--steps", "2", "--format", plan.enhancer_format,
            "--out", str(enh))),
        "export_detector_onnx": (onnx, duskwatch(
            "export", "yolo", "--weights", weights, "--imgsz", str(plan.imgsz), "--format", "onnx",
            "--dynamic", "--batch", str(max(plan.streams)), "--out", str(onnx))),
    }


def bench_engine_steps(plan: Plan, detector: Path) -> dict[str, list[str]]:
    return {f"bench_engine_b{b}": duskwatch(
        "bench", "engine", "--engine", str(detector), "--batch", str(b), "--imgsz", str(plan.imgsz),
        "--device", plan.device, "--seconds", str(plan.engine_seconds), "--warmup", str(plan.warmup),
        "--compare-bare", "yolo11n.yaml") for b in plan.batches}


def bench_pipeline_steps(plan: Plan, detector: Path, enhancer: Path, clip: Path,
                         weights: str) -> dict[str, list[str]]:
    steps = {}
    for n in plan.streams:
        argv = duskwatch("bench", "pipeline", *[a for _ in range(n) for a in ("--source", str(clip))],
                         "--engine", str(detector), "--enhancer", str(enhancer), "--enhance",
                         "always", "--views", "raw,enhanced", "--device", plan.device, "--seconds", str(plan.pipeline_seconds),
                         "--warmup", str(5.0 * plan.warmup),
                         "--max-batch", str(min(n, 32)), "--no-budget")
        if n in plan.ultralytics_streams:
            argv += ["--weights", weights, "--ultralytics", "torch"]
        else:
            argv += ["--no-ultralytics"]
        steps[f"bench_pipeline_{n}"] = argv
    return steps


def triton_step(plan: Plan, onnx: Path, clip: Path, work: Path) -> list[str]:
    streams = min(plan.streams)
    return [sys.executable, str(ROOT / "tests" / "gpu" / "triton_stage.py"), "--onnx", str(onnx),
            "--clip", str(clip), "--streams", str(streams), "--seconds", str(plan.pipeline_seconds),
            "--warmup", str(5.0 * plan.warmup), "--device", plan.device, "--work", str(work)]


def triton_result(res: dict[str, Any]) -> dict[str, Any]:
    """A Triton stage that found no carried Triton environment is skipped, not failed."""
    skipped = (res.get("summary") or {}).get("skipped")
    if res["status"] == "ok" and skipped:
        return {**res, "status": "skipped", "reason": skipped, "optional": True}
    return {**res, "optional": True}


def train_step(plan: Plan, images: Path, out: Path) -> list[str]:
    return duskwatch("train", "denoiser", "--data", str(images), "--out",
                     str(out / "denoiser_teacher.pt"), "--device", plan.device, "--no-progress",
                     "--log-file", str(out / "train_progress.log"), *plan.train_args)


# -- the run ---------------------------------------------------------------------------------
def environment(dry: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.setdefault("YOLO_OFFLINE", "1")  # ultralytics: never reach for the network
    if dry:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is the CPU path, even on a GPU box
    return env


def run_all(plan: Plan, out: Path, data: Path, budget: Budget, dry: bool) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    work.mkdir(exist_ok=True)
    env = environment(dry)
    weights = pick_weights(data)
    results = [run_stage("pytest", stage_pytest(plan), out, budget.limit(plan.limits["pytest"]), env)]
    engines = {}
    for name, (path, argv) in export_steps(plan, weights, work).items():
        res = run_stage(name, argv, out, budget.limit(plan.limits["export"]), env)
        results.append(res)
        engines[name] = path if res["status"] == "ok" else None
    detector, enhancer = engines["export_detector"], engines["export_enhancer"]
    clip = None
    if detector is not None:
        for name, argv in bench_engine_steps(plan, detector).items():
            results.append(run_stage(name, argv, out, budget.limit(plan.limits["bench_engine"]), env))
    if detector is not None and enhancer is not None:
        clip = make_clip(data, work, plan.clip_size)
        for name, argv in bench_pipeline_steps(plan, detector, enhancer, clip, weights).items():
            results.append(run_stage(name, argv, out, budget.limit(plan.limits["bench_pipeline"]), env))
    if engines["export_detector_onnx"] is not None:
        clip = clip or make_clip(data, work, plan.clip_size)
        argv = triton_step(plan, engines["export_detector_onnx"], clip, work)
        results.append(triton_result(run_stage("bench_pipeline_triton", argv, out,
                                               budget.limit(plan.limits["triton"]), env)))
    images = training_images(data, work, drawn=dry)  # dry: two dozen small images, not 294 photos
    results.append(run_stage("train", train_step(plan, images, out), out,
                             budget.limit(plan.limits["train"]), env))
    return {"dry": dry, "device": plan.device, "weights": weights, "data": str(data),
            "budget_left_s": round(budget.left(), 1), "stages": results,
            "ok": all(r["status"] == "ok" or (r["status"] == "skipped" and r.get("optional"))
                      for r in results), "machine": machine()}


def machine() -> dict[str, Any]:
    """What this ran on: GPU name, torch/CUDA and ONNX Runtime versions, its providers."""
    info: dict[str, Any] = {"cpus": os.cpu_count()}
    try:
        import torch

        info.update(torch=torch.__version__, cuda=torch.version.cuda,
                    gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        info["torch"] = None
    try:
        import onnxruntime

        info.update(onnxruntime=onnxruntime.__version__,
                    ort_providers=onnxruntime.get_available_providers())
    except ImportError:
        info["onnxruntime"] = None
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="the GPU check (see tests/gpu/run.sh)")
    p.add_argument("--out", type=Path, required=True, help="folder for every summary and log")
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU (CI)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the shared data folder (weights, sample clip, clean photos), if present")
    p.add_argument("--budget", type=float, default=510.0, help="seconds for the whole run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = dry_plan() if args.dry else full_plan()
    summary = run_all(plan, args.out, args.data, Budget(args.budget), args.dry)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    shutil.rmtree(args.out / "work", ignore_errors=True)
    for r in summary["stages"]:
        print(f"{r['stage']:24s} {r['status']:8s} {r.get('seconds', '')}", file=sys.stderr)
    print(json.dumps({"gpu_check": "done", "ok": summary["ok"], "out": str(args.out)}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
