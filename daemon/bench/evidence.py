"""duskwatch bench evidence: what evidence retention costs, and whether clip encoding feels it.

Builds an evidence tree of ``--files`` files (``<camera>/<day>/<id>.jpg``, ``--file-bytes``
each) in a temporary folder, then measures:

1. retention: one full cycle of :class:`~daemon.events.retention.Retention` over the tree (the
   quota holds everything: the cost is the scan), the steps it took and the longest step
   (each bounded by ``--budget-ms``);
2. clip encoding, ``--clips`` clips of ``--frames`` frames (``--width`` pixels wide, PyAV's
   H.264 as the writer uses), three ways: with no retention; with the retention thread as
   the writer runs it now (its own thread, poked after every clip, a cycle at most every
   5 s, steps of at most ``--budget-ms``); with a whole retention pass after every clip on
   the encoding thread (what the writer did before issue 21).

The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = "evidence retention's cost over a large evidence tree, and clip encoding beside it"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--files", type=int, default=10_000, help="files in the evidence tree")
    p.add_argument("--file-bytes", type=int, default=2048, help="size of each file")
    p.add_argument("--budget-ms", type=float, default=50.0, help="retention step budget")
    p.add_argument("--clips", type=int, default=10, help="clips per mode and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three modes, interleaved")
    p.add_argument("--frames", type=int, default=30, help="frames per clip")
    p.add_argument("--width", type=int, default=640, help="clip width (height: 9/16 of it)")
    p.add_argument("--dir", help="where to build the tree (default: a temporary folder)")


def build_tree(root: Path, files: int, size: int, per_day: int = 500) -> None:
    payload = b"\xff" * size
    for i in range(files):
        folder = root / f"cam{i % 4}" / f"2026-11-{1 + (i // per_day) % 28:02d}"
        if i % per_day < 4:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:016x}.jpg").write_bytes(payload)


def retention_cycle(root: Path, budget_s: float) -> dict:
    from daemon.config import EvidenceConfig
    from daemon.events.retention import Retention

    cfg = EvidenceConfig(dir=root, max_bytes=10**13, max_age_days=3650)
    r = Retention(lambda: cfg, budget_s=budget_s)
    steps: list[float] = []
    t0 = time.perf_counter()
    done = False
    while not done:
        s0 = time.perf_counter()
        done = r.step()
        steps.append(time.perf_counter() - s0)
    return {"cycle_s": round(time.perf_counter() - t0, 3), "steps": len(steps),
            "longest_step_ms": round(max(steps) * 1000, 1),
            "whole_pass_s": round(_whole_pass(root), 3)}


def _whole_pass(root: Path) -> float:
    from daemon.events.evidence import enforce_retention

    t0 = time.perf_counter()
    enforce_retention(root, 3650 * 86400, 10**13)
    return time.perf_counter() - t0


def encode_clips(out: Path, args: argparse.Namespace, after_clip=None) -> tuple[float, float]:
    """(clips per second, CPU seconds of the whole process per clip) encoding ``args.clips``
    clips; ``after_clip()`` runs after each."""
    from daemon.events.evidence import ClipEncoder, RingFrame

    h = args.width * 9 // 16 // 2 * 2
    rng = np.random.default_rng(0)
    frames = [RingFrame(float(i), rng.integers(0, 255, (h, args.width, 3), np.uint8), 1.0,
                        [((10.0, 10.0, 80.0, 80.0), "person #1")]) for i in range(8)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for c in range(args.clips):
        enc = ClipEncoder(out / f"clip{c}.mp4", 10)
        for i in range(args.frames):
            enc.write(frames[i % len(frames)])
        enc.close()
        if after_clip is not None:
            after_clip()
    return args.clips / (time.perf_counter() - t0), (time.process_time() - cpu0) / args.clips


def _with_retention_thread(root: Path, out: Path, args: argparse.Namespace):
    from daemon.config import EvidenceConfig
    from daemon.events.retention import Retention

    cfg = EvidenceConfig(dir=root, max_bytes=10**13, max_age_days=3650)
    r = Retention(lambda: cfg, budget_s=args.budget_ms / 1000)  # the writer's settings
    r.start()
    try:
        measured = encode_clips(out, args, after_clip=r.poke)  # as the writer pokes it
    finally:
        r.close(5.0)
    return measured, r.cycles


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="duskwatch-bench-evidence-", dir=args.dir) as tmp:
        root, out = Path(tmp) / "tree", Path(tmp) / "clips"
        out.mkdir()
        t0 = time.perf_counter()
        build_tree(root, args.files, args.file_bytes)
        print(f"tree: {args.files} files in {time.perf_counter() - t0:.1f} s", flush=True)
        cycle = retention_cycle(root, args.budget_ms / 1000)
        print(f"retention: {cycle}", flush=True)
        runs: dict[str, list[tuple[float, float]]] = {
            "no_retention": [], "retention_thread": [], "retention_after_each_clip": []}
        cycles = 0
        encode_clips(out, argparse.Namespace(**{**vars(args), "clips": 1}))  # codec warm-up
        for _ in range(args.rounds):  # interleaved, so a busy spell of the machine hits all
            runs["no_retention"].append(encode_clips(out, args))
            measured, n = _with_retention_thread(root, out, args)
            runs["retention_thread"].append(measured)
            cycles += n
            runs["retention_after_each_clip"].append(
                encode_clips(out, args, after_clip=lambda: _whole_pass(root)))
            print(f"(clips/s, CPU s per clip): "
                  f"{ {k: tuple(round(x, 3) for x in v[-1]) for k, v in runs.items()} }", flush=True)
        summary = {
            "bench": "evidence", "files": args.files, "budget_ms": args.budget_ms,
            "retention": cycle,
            "clip": {"clips": args.clips, "frames": args.frames, "width": args.width},
            "rounds": args.rounds,
            "clips_per_s_median": {k: round(float(np.median([r for r, _ in v])), 3)
                                   for k, v in runs.items()},
            "cpu_s_per_clip_median": {k: round(float(np.median([c for _, c in v])), 3)
                                      for k, v in runs.items()},
            "retention_cycles_during_encoding": cycles,
        }
    print(json.dumps(summary))
    return 0
