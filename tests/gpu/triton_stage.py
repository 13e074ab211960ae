"""The GPU check's Triton stage: the detector served by Triton, the daemon pipeline using it.

::

    python tests/gpu/triton_stage.py --onnx DET.onnx --clip CLIP --streams 8 --seconds 20 \\
        --warmup 5 --device cuda:0 --work DIR

Writes a Python-backend repository (``duskwatch export triton --server cpu --device cuda:0``:
ONNX Runtime's CUDA provider inside Triton's Python backend, the only backend the bundled server
of nvidia-pytriton has), starts that server from ``$DUSKWATCH_TRITON_VENV`` (tests/gpu/run.sh
builds it from the carried wheels), runs ``bench pipeline --engine triton://...`` on the clip,
and prints its JSON summary with Triton's own per-request split (``server_split_ms``) as the
last line. Exits 0 with ``{"skipped": reason}`` when no Triton environment was carried.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--work", type=Path, required=True)
    args = p.parse_args(argv)

    from tests.triton_server import TritonServer, triton_missing

    if (why := triton_missing()) is not None:
        print(json.dumps({"skipped": why}))
        return 0
    from export.triton_repo import RepoOptions, write_repository
    from tests.bench.triton_bench import server_split

    repo = args.work / "triton_repo"
    write_repository(repo, {"yolo": ("detector", args.onnx)},
                     RepoOptions(server="cpu", device=args.device, max_batch=max(8, args.streams)))
    srv = TritonServer(repo, args.work).start(180)
    try:
        cmd = [sys.executable, "-m", "daemon.cli", "bench", "pipeline",
               *[a for _ in range(args.streams) for a in ("--source", str(args.clip))],
               "--engine", srv.url("yolo", timeout="30"), "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--max-batch", str(min(args.streams, 32)),
               "--no-ultralytics", "--no-budget"]
        proc = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                              stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            return proc.returncode
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        summary["server_split_ms"] = server_split(srv, "yolo")
        summary["triton_device"] = args.device
        print(json.dumps(summary))
        return 0
    finally:
        srv.stop()


if __name__ == "__main__":
    raise SystemExit(main())
