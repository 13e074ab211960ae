"""Soak: `duskwatch run` on 8 RTSP cameras under camera churn, reloads and HTTP load.

Not run in CI. Every ``--churn-s`` seconds one fault is injected, in turn: the RTSP server is
killed and restarted, frozen (SIGSTOP) for 8 s, a camera's URL is pointed at a garbage TCP
server and back, the config is reloaded with a changed fps, with garbage bytes, and back.
Meanwhile 10 scrapers, 5 snapshot viewers and 50 idle sockets hit HTTP. Each minute the
daemon's RSS, open file descriptors and threads are sampled; at the end the least-squares slope
of each (per hour) is printed as the last line (JSON).

    python tests/bench/soak.py --minutes 60            # the full soak
    python tests/bench/soak.py --minutes 10            # the short run in docs/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.conftest import RtspServer, free_port  # noqa: E402
from tests.rtsp.footage import ensure_footage  # noqa: E402

TOKEN = "soak-token-0123456789abcdef"


def sample(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(fields["Threads"].strip())}


def slope_per_hour(ts: list[float], ys: list[float]) -> float:
    n = len(ts)
    if n < 2:
        return float("nan")
    mt, my = sum(ts) / n, sum(ys) / n
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den * 3600 if den else 0.0


def garbage_server() -> tuple[socket.socket, int]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.5)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.recv(1024)
                    conn.sendall(b"\x00\xffgarbage\n" * 16)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, srv.getsockname()[1]


def http_load(base: str, port: int, cams: list[str], done: threading.Event, stats: dict) -> None:
    def get(path):
        req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def scraper():
        while not done.is_set():
            try:
                get("/metrics")
                stats["scrapes"] += 1
            except Exception:  # noqa: BLE001
                stats["scrape_failures"] += 1
            done.wait(0.2)

    def viewer(i):
        while not done.is_set():
            try:
                get(f"/snapshot/{cams[i % len(cams)]}.jpg")
            except Exception:  # noqa: BLE001
                pass
            done.wait(0.2)

    def idler():
        socks = []
        while not done.is_set():
            socks = [s for s in socks if s.fileno() >= 0]
            while len(socks) < 50:
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                except OSError:
                    break
            done.wait(5)
            for s in socks[:25]:
                s.close()
            socks = socks[25:]
        for s in socks:
            s.close()

    for fn, n in ((scraper, 10), (viewer, 5), (idler, 1)):
        for i in range(n):
            args = (i,) if fn is viewer else ()
            threading.Thread(target=fn, args=args, daemon=True).start()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=60)
    p.add_argument("--churn-s", type=float, default=20)
    p.add_argument("--detector", default=str(ROOT.parent / "shared/data/weights/"
                                             "yolo11n_coco_int8_640.onnx"))
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--warmup-min", type=float, default=2.0,
                   help="slopes are also reported without the samples of the first minutes "
                        "(allocator, decoder and ONNX Runtime arenas growing to their size)")
    p.add_argument("--prefix", default=None,
                   help="run the daemon under this command instead of the plain interpreter, "
                        "e.g. 'memray run --native -o soak.bin' (a heap profile of the soak)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the daemon (e.g. MALLOC_ARENA_MAX=2); repeatable")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="duskwatch-soak-"))
    footage = ensure_footage(work / "footage")
    names = [f"cam{i}" for i in range(8)]
    srv = RtspServer({n: str(footage["h264"]) for n in names}, work).start()
    junk, junk_port = garbage_server()
    port = free_port()
    cfg_path = work / "duskwatch.yaml"

    def write_cfg(fps=args.fps, garbage_cam=False):
        import yaml

        cams = [{"name": n, "url": srv.url(n), "fps": fps, "read_timeout_s": 3,
                 "backoff_max_s": 5} for n in names]
        if garbage_cam:
            cams[0]["url"] = f"rtsp://127.0.0.1:{junk_port}/x"
        cfg_path.write_text(yaml.safe_dump({
            "cameras": cams, "engines": {"detector": args.detector, "device": "cpu"},
            "sinks": [], "events": {"evidence": {"dir": str(work / "evidence")}},
            "http": {"listen": f"127.0.0.1:{port}",
                                  "auth": {"bearer_token_env": "SOAK_TOKEN"}}}))

    write_cfg()
    log = open(work / "daemon.log", "wb")
    prefix = shlex.split(args.prefix) if args.prefix else [sys.executable]
    proc = subprocess.Popen([*prefix, "-m", "daemon.cli", "run", "--config", str(cfg_path)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, SOAK_TOKEN=TOKEN, OMP_NUM_THREADS="1",
                                     **dict(e.split("=", 1) for e in args.env)))
    time.sleep(20)
    done = threading.Event()
    stats = {"scrapes": 0, "scrape_failures": 0}
    http_load(f"http://127.0.0.1:{port}", port, names, done, stats)
    faults = [
        ("kill+restart server", lambda: srv.restart()),
        ("freeze server 8 s", lambda: (srv.freeze(), time.sleep(8), srv.thaw())),
        ("camera -> garbage server", lambda: (write_cfg(garbage_cam=True), proc.send_signal(signal.SIGHUP))),
        ("camera back", lambda: (write_cfg(), proc.send_signal(signal.SIGHUP))),
        ("reload fps change", lambda: (write_cfg(fps=args.fps * 2), proc.send_signal(signal.SIGHUP))),
        ("reload garbage bytes", lambda: (cfg_path.write_bytes(os.urandom(4096)), proc.send_signal(signal.SIGHUP))),
        ("reload back", lambda: (write_cfg(), proc.send_signal(signal.SIGHUP))),
    ]
    t0 = time.monotonic()
    samples, next_sample, next_fault, k = [], t0, t0 + args.churn_s, 0
    end = t0 + args.minutes * 60
    while time.monotonic() < end and proc.poll() is None:
        now = time.monotonic()
        if now >= next_sample:
            s = sample(proc.pid)
            s["t_s"] = round(now - t0, 1)
            samples.append(s)
            print(json.dumps(s), flush=True)
            next_sample += 60
        if now >= next_fault:
            name, fault = faults[k % len(faults)]
            fault()
            k += 1
            next_fault += args.churn_s
        time.sleep(0.5)
    alive = proc.poll() is None
    done.set()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = "killed"
    srv.stop()
    junk.close()
    ts = [s["t_s"] for s in samples]
    summary = {"minutes": args.minutes, "cameras": len(names), "faults_injected": k,
               "alive_at_end": alive, "exit_code": code, "samples": len(samples),
               **stats, "log": str(work / "daemon.log"),
               **{f"{key}_first": samples[0][key] for key in ("rss_mb", "fds", "threads")},
               **{f"{key}_last": samples[-1][key] for key in ("rss_mb", "fds", "threads")},
               **{f"{key}_slope_per_h": round(slope_per_hour(ts, [s[key] for s in samples]), 2)
                  for key in ("rss_mb", "fds", "threads")},
               **{f"{key}_slope_per_h_after_warmup": round(slope_per_hour(
                   [t for t in ts if t >= args.warmup_min * 60],
                   [s[key] for s in samples if s["t_s"] >= args.warmup_min * 60]), 2)
                  for key in ("rss_mb", "fds", "threads")}}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
