"""The HTTP stack alone: requests/s and latency with the daemon's engines and cameras faked.

    PYTHONPATH=$PWD python tests/bench/http_stack.py [SCRAPERS VIEWERS IDLE] [--seconds 10]

The service of tests/daemon_fakes.py (two fake cameras, a fake detector: no inference competes
for the CPU) with bearer auth, loaded from a separate process by the clients of
``duskwatch bench http`` (scrapers on /metrics, viewers on /snapshot/<camera>.jpg, idle
sockets). Run it against another checkout with PYTHONPATH=that checkout to compare servers.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time

from daemon.bench import http as bench
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, make_config


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("counts", nargs="*", type=int, default=[50, 50, 500])
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    scrapers, viewers, idle = args.counts
    os.environ["DUSKWATCH_BENCH_TOKEN"] = bench.TOKEN
    cfg = make_config(http={"listen": "127.0.0.1:0",
                            "auth": {"bearer_token_env": "DUSKWATCH_BENCH_TOKEN"}})
    sources: dict[str, FakeSource] = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(cfg, source_factory=factory, detector_factory=lambda e, b: FakeDetector(),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}))
    svc.start()
    try:
        for src in sources.values():
            src.push(value=200)
        time.sleep(1.0)
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        counts = {"scrapers": scrapers, "viewers": viewers, "idle": idle}
        child = ctx.Process(target=bench._load_main, daemon=True, args=(
            svc.http.address, svc.view.camera_names(), counts, args.seconds, theirs))
        child.start()
        got = ours.recv()
        child.join(15)
    finally:
        svc.stop()
    scrapes = got["scrapes"]
    print(json.dumps({
        "seconds": args.seconds, **counts, "load_average": os.getloadavg()[0],
        "scrapes": len(scrapes), "scrape_failures": got["scrape_failures"],
        "scrape_p50_s": round(bench._pct(scrapes, 0.5), 4),
        "scrape_p99_s": round(bench._pct(scrapes, 0.99), 4),
        "snapshots": got["snapshots"], "snapshot_failures": got["snapshot_failures"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
