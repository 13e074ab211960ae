"""duskwatch bench http: detection rate and scrape latency while HTTP is under load.

Runs the real service in-process (file cameras looping recorded footage, a real ONNX detector,
the real HTTP server with bearer auth) and measures two phases of ``--seconds`` each:

1. quiet: no HTTP client;
2. loaded: ``--scrapers`` clients scraping /metrics back to back, ``--viewers`` clients polling
   /snapshot/<camera>.jpg back to back, and ``--idle`` sockets connected and silent (reopened
   as the server evicts or expires them).

The clients run in a separate process (so their threads do not share the daemon's GIL, as
real clients would not). Reported: frames processed per second (all cameras) before, during
and after the load, and the scrapes' latency percentiles and failures. The last stdout line is
the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HELP = "detection rate and /metrics latency under scrapers, snapshot viewers and idle sockets"
TOKEN = "bench-token-0123456789abcdef"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", help="ONNX detector (default: the sample COCO int8 yolo11n)")
    p.add_argument("--video", help="footage each camera loops (default: the sample vtest.avi)")
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--fps", type=float, default=5.0, help="per-camera fps limit")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--scrapers", type=int, default=50)
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--idle", type=int, default=500)
    p.add_argument("--max-connections", type=int, default=256, help="http.max_connections")


def _defaults(args: argparse.Namespace) -> tuple[str, str]:
    from daemon.sample_data import find
    from engines.errors import UserError

    det = args.detector or find("weights/yolo11n_coco_int8_640.onnx")
    video = args.video or find("video/vtest.avi")
    if not det or not video:
        raise UserError("pass --detector and --video (no sample data found; see "
                        "daemon/sample_data.py)", exit_code=2)
    return str(det), str(video)


def _service(args: argparse.Namespace, det: str, video: str):
    from daemon.config import HttpConfig, parse_config
    from daemon.service.service import Service

    os.environ["DUSKWATCH_BENCH_TOKEN"] = TOKEN
    http = {"listen": "127.0.0.1:0", "auth": {"bearer_token_env": "DUSKWATCH_BENCH_TOKEN"},
            "max_connections": args.max_connections}
    # the same bench against an older checkout (PYTHONPATH=...) that has neither option
    http = {k: v for k, v in http.items() if k in HttpConfig.model_fields}
    cfg = parse_config({
        "cameras": [{"name": f"cam{i}", "url": video, "loop": True, "fps": args.fps}
                    for i in range(args.cameras)],
        "engines": {"detector": det, "device": "cpu"},
        "sinks": [],
        "http": http,
    })
    return Service(cfg)


def _processed(svc) -> float:
    r = svc.metrics.registry
    return sum(r.get_sample_value("duskwatch_frames_total",
                                  {"camera": c, "outcome": "processed"}) or 0
               for c in svc.view.camera_names())


def _rate(svc, seconds: float) -> float:
    n0, t0 = _processed(svc), time.monotonic()
    time.sleep(seconds)
    return (_processed(svc) - n0) / (time.monotonic() - t0)


class _Load:
    """Scrapers, viewers and idle sockets against ``base`` until :meth:`stop`."""

    def __init__(self, base: str, address: tuple[str, int], cameras: list[str], args):
        self.base, self.address, self.cameras, self.args = base, address, cameras, args
        self.done = threading.Event()
        self.scrapes: list[float] = []
        self.scrape_failures = 0
        self.snapshots = 0
        self.snapshot_failures = 0
        self.threads: list[threading.Thread] = []

    def _get(self, path: str) -> bytes:
        req = urllib.request.Request(self.base + path,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def _scraper(self) -> None:
        while not self.done.is_set():
            t0 = time.monotonic()
            try:
                self._get("/metrics")
                self.scrapes.append(time.monotonic() - t0)
            except (OSError, urllib.error.URLError):
                self.scrape_failures += 1

    def _viewer(self, i: int) -> None:
        while not self.done.is_set():
            try:
                self._get(f"/snapshot/{self.cameras[i % len(self.cameras)]}.jpg")
                self.snapshots += 1
            except (OSError, urllib.error.URLError):
                self.snapshot_failures += 1
                time.sleep(0.05)

    def _idler(self) -> None:
        socks: list[socket.socket] = []
        while not self.done.is_set():
            socks = [s for s in socks if not _closed(s)]
            while len(socks) < self.args.idle and not self.done.is_set():
                try:
                    socks.append(socket.create_connection(self.address, timeout=2))
                except OSError:
                    break
            self.done.wait(0.5)
        for s in socks:
            s.close()

    def start(self) -> None:
        self.threads = [threading.Thread(target=self._idler, daemon=True)]
        self.threads += [threading.Thread(target=self._scraper, daemon=True)
                         for _ in range(self.args.scrapers)]
        self.threads += [threading.Thread(target=self._viewer, args=(i,), daemon=True)
                         for i in range(self.args.viewers)]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.done.set()
        for t in self.threads:
            t.join(15)


def _closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def _load_main(address: tuple[str, int], cameras: list[str], counts: dict, seconds: float,
               conn) -> None:
    """The client process: run the load for ``seconds``, send back what it measured."""
    load = _Load(f"http://{address[0]}:{address[1]}", tuple(address), cameras,
                 argparse.Namespace(**counts))
    load.start()
    time.sleep(seconds)
    load.stop()
    conn.send({"scrapes": load.scrapes, "scrape_failures": load.scrape_failures,
               "snapshots": load.snapshots, "snapshot_failures": load.snapshot_failures})
    conn.close()


def run(args: argparse.Namespace) -> int:
    import multiprocessing

    det, video = _defaults(args)
    svc = _service(args, det, video)
    svc.start()
    try:
        address = svc.http.address
        time.sleep(10.0)  # cameras open, first batches
        quiet = _rate(svc, args.seconds)
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        counts = {"scrapers": args.scrapers, "viewers": args.viewers, "idle": args.idle}
        child = ctx.Process(target=_load_main, daemon=True,
                            args=(address, svc.view.camera_names(), counts, args.seconds + 5, theirs))
        child.start()
        time.sleep(3.0)  # the clients start, the idle sockets connect
        loaded = _rate(svc, args.seconds)
        measured = ours.recv() if ours.poll(args.seconds + 60) else {}
        child.join(30)
        after = _rate(svc, args.seconds)
        closed = {r: svc.metrics.registry.get_sample_value(
            "duskwatch_http_connections_closed_total", {"reason": r})
            for r in ("idle", "slow", "evicted")}
    finally:
        svc.stop()
    scrapes = measured.get("scrapes", [])
    summary = {
        "bench": "http", "detector": Path(det).name, "cameras": args.cameras, "fps": args.fps,
        "seconds": args.seconds, "scrapers": args.scrapers, "viewers": args.viewers,
        "idle_sockets": args.idle, "max_connections": args.max_connections, "cpus": os.cpu_count(),
        "frames_per_s_quiet": round(quiet, 2), "frames_per_s_loaded": round(loaded, 2),
        "frames_per_s_after": round(after, 2),
        "loaded_over_quiet": round(loaded / quiet, 3) if quiet else None,
        "scrapes": len(scrapes), "scrape_failures": measured.get("scrape_failures"),
        "scrape_p50_s": round(_pct(scrapes, 0.5), 4),
        "scrape_p99_s": round(_pct(scrapes, 0.99), 4),
        "scrape_max_s": round(max(scrapes, default=float("nan")), 4),
        "snapshots": measured.get("snapshots"),
        "snapshot_failures": measured.get("snapshot_failures"),
        "snapshot_encodes": getattr(getattr(svc, "snapshots", None), "encodes", None),
        "server_closed": closed,
    }
    print(json.dumps(summary))
    return 0
