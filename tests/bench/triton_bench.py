"""docs/BENCHMARKS.md, "Shared Triton": `bench pipeline` with a local engine vs the same model on
the bundled Triton server, what goes on the wire, and N daemons sharing one server vs N with
their own engines. Prints one JSON line per run and, last, the whole table as JSON.

::

    python -m tests.bench.triton_bench --engine yolo11n-640.onnx --work /tmp/triton-bench \\
        --seconds 15 --warmup 4 [--daemons 1,2,4] [--threads 2]

Sources: the 640x360 15 fps H.264 test clip served by the tests' RTSP server (one mount per
stream). The server runs the Python-backend repository of ``duskwatch export triton --server
cpu`` (ONNX Runtime inside, ``--threads`` intra-op threads, one instance).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with GStreamer's RTSP server (tests/rtsp/server.py)


def start_rtsp(work: Path, streams: int) -> tuple[subprocess.Popen, list[str]]:
    from tests.conftest import free_port
    from tests.rtsp.footage import ensure_footage

    clip = ensure_footage(work / "footage", ("h264",))["h264"]
    port = free_port()
    mounts = [arg for i in range(streams) for arg in ("--mount", f"cam{i}={clip}")]
    proc = subprocess.Popen([SYSTEM_PYTHON, str(ROOT / "tests/rtsp/server.py"), "--port", str(port),
                             *mounts], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.stdout.readline()  # the server prints a line once it listens
    return proc, [f"rtsp://127.0.0.1:{port}/cam{i}" for i in range(streams)]


def start_triton(work: Path, engine: Path, threads: int):
    from export.triton_repo import RepoOptions, write_repository
    from tests.triton_server import TritonServer

    repo = work / "repo"
    base = dict(server="cpu", threads=threads)
    write_repository(repo, {"yolo": ("detector", engine)}, RepoOptions(**base))
    write_repository(repo, {"yolo_fp16": ("detector", engine)}, RepoOptions(**base, outputs="fp16"))
    write_repository(repo, {"yolo_f32": ("detector", engine)}, RepoOptions(**base, wire="float32"))
    write_repository(repo, {"yolo_top1000": ("detector", engine)},
                     RepoOptions(**base, candidates=1000))
    # a copy only the overhead measurement calls, so that its statistics are its own
    write_repository(repo, {"yolo_calls": ("detector", engine)}, RepoOptions(**base))
    return TritonServer(repo, work).start(120)


def bench(sources: list[str], engine: str, seconds: float, warmup: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "daemon.cli", "bench", "pipeline", *[a for s in sources for a in
           ("--source", s)], "--engine", engine, "--seconds", str(seconds), "--warmup",
           str(warmup), "--device", "cpu", "--no-ultralytics", "--no-budget"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)


def summary(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench pipeline failed ({proc.returncode}): {out[-2000:]}")
    p = json.loads(out.strip().splitlines()[-1])["pipeline"]
    row = {"fps": p["fps"], "detect_p50_ms": p["stages"]["detect"]["p50_ms"],
           "detect_p99_ms": p["stages"]["detect"]["p99_ms"], "mean_batch": p["mean_batch"],
           "end_to_end_p50_ms": p["stages"]["end_to_end"]["p50_ms"],
           "end_to_end_p99_ms": p["stages"]["end_to_end"]["p99_ms"], "failed": p["failed"],
           "cpu_seconds": p["cpu_seconds"]}
    if "wire" in p:
        row["wire"] = p["wire"]
    return row


def overhead(engine: Path, triton, model: str, calls: int) -> dict:
    """One engine call at a time (batch 1, the 640x360 clip's 384x640 input) locally and through
    Triton, and Triton's own split of its time (queue, input copy, inference, output copy): what
    a round trip adds to a frame."""
    import numpy as np

    from engines.base import open_engine

    x = np.random.default_rng(0).integers(0, 256, (1, 3, 384, 640)).astype(np.float32) / 255
    out = {}
    for name, ref in (("local", str(engine)), ("triton", triton.url(model, timeout="30"))):
        with open_engine(ref, device="cpu") as eng:
            for _ in range(3):
                eng.infer({"images": x})
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                eng.infer({"images": x})
                times.append(time.perf_counter() - t0)
        out[name] = {"p50_ms": round(1000 * float(np.median(times)), 1),
                     "mean_ms": round(1000 * float(np.mean(times)), 1)}
    out["server_split_ms"] = server_split(triton, model)
    return out


def server_split(triton, model: str) -> dict:
    """Mean per-request times from the server's statistics extension (microseconds -> ms)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(triton.grpc_address)
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    n = int(stats["inference_stats"]["success"]["count"]) or 1
    return {k: round(int(stats["inference_stats"][k]["ns"]) / n / 1e6, 1)
            for k in ("queue", "compute_input", "compute_infer", "compute_output", "success")}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", type=Path, required=True, help=".onnx detector (--dynamic)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=4)
    ap.add_argument("--daemons", default="1,2,4", help="'' for none")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the server")
    ap.add_argument("--calls", type=int, default=30, help="calls of the overhead measurement")
    ap.add_argument("--only-overhead", action="store_true")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    ns = [int(n) for n in args.daemons.split(",") if n]
    rtsp, urls = start_rtsp(args.work, max([4, *ns]))
    triton = start_triton(args.work, args.engine, args.threads)
    results: dict = {"load_average_start": load()}
    try:
        results["overhead_batch1"] = overhead(args.engine, triton, "yolo_calls", args.calls)
        print(json.dumps({"overhead_batch1": results["overhead_batch1"], "load": load()}), flush=True)
        if args.only_overhead:
            return 0
        engines = {"local": str(args.engine), "triton": triton.url("yolo", timeout="30"),
                   "triton_fp16": triton.url("yolo_fp16", timeout="30"),
                   "triton_f32wire": triton.url("yolo_f32", timeout="30"),
                   "triton_top1000": triton.url("yolo_top1000", timeout="30")}
        for name, engine in engines.items():  # one process, 2 streams
            results[f"2streams/{name}"] = row = summary(bench(urls[:2], engine, args.seconds, args.warmup))
            print(json.dumps({f"2streams/{name}": row, "load": load()}), flush=True)
        for n in ns:  # n processes ("daemons"), one stream each, at once
            for name in ("local", "triton"):
                procs = [bench([urls[i]], engines[name], args.seconds, args.warmup) for i in range(n)]
                rows = [summary(p) for p in procs]
                agg = {"daemons": n, "fps_total": round(sum(r["fps"] for r in rows), 2),
                       "detect_p50_ms": [r["detect_p50_ms"] for r in rows],
                       "end_to_end_p50_ms": [r["end_to_end_p50_ms"] for r in rows],
                       "end_to_end_p99_ms": [r["end_to_end_p99_ms"] for r in rows],
                       "failed": sum(r["failed"] for r in rows)}
                results[f"{n}daemons/{name}"] = agg
                print(json.dumps({f"{n}daemons/{name}": agg, "load": load()}), flush=True)
                time.sleep(1)
    finally:
        triton.stop()
        rtsp.terminate()
        rtsp.wait(10)
    results["load_average_end"] = load()
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
