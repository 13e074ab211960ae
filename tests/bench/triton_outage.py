"""deploy/README.md, "When the server goes away": one camera (a fake at the source seam, 10
frames/s) on a real service whose detector is on the bundled Triton server; the server is
SIGKILLed for 6 s and started again. Prints the frame counts and /readyz's body before, during
and after, with the service's own log lines.

::

    duskwatch export triton --out /tmp/doc/repo --detector yolo11n-640.onnx --server cpu --threads 2
    python -m tests.bench.triton_outage --repo /tmp/doc/repo --work /tmp/doc
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--down", type=float, default=6.0, help="seconds the server stays dead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("duskwatch.scheduler").setLevel(logging.WARNING)

    from daemon.service.service import Service
    from daemon.service.systemd import Notifier
    from tests.daemon_fakes import FakeSource, make_config
    from tests.triton_server import TritonServer

    srv = TritonServer(args.repo, args.work).start()
    cfg = make_config(cameras=("gate",), engines={"detector": srv.url("yolo", timeout="10")})
    sources: dict[str, FakeSource] = {}

    def factory(cam, events):
        sources[cam.name] = FakeSource(cam, events)
        return sources[cam.name]

    svc = Service(cfg, source_factory=factory, enhancer_factory=lambda e: None,
                  notifier=Notifier(environ={}), serve_http=False)
    svc.start()
    stop = threading.Event()

    def push() -> None:
        while not stop.is_set():
            sources["gate"].push(value=140)
            stop.wait(0.1)

    threading.Thread(target=push, daemon=True).start()

    def counts() -> dict:
        r = svc.metrics.registry
        return {o: r.get_sample_value("duskwatch_frames_total", {"camera": "gate", "outcome": o})
                for o in ("processed", "failed")}

    try:
        time.sleep(3)
        print("BEFORE", counts(), json.dumps(svc.view.readiness()[1]))
        srv.kill()
        time.sleep(args.down)
        print("DURING", counts(), json.dumps(svc.view.readiness()[1]), "failed_calls",
              svc.detector.engine.wire["failed_calls"])
        srv.start()
        up = time.monotonic()
        while counts()["processed"] == 0 or svc.view.readiness()[0] is False:
            time.sleep(0.05)
        print(f"RESUMED {time.monotonic() - up:.1f} s after the server was ready", counts(),
              json.dumps(svc.view.readiness()[1]))
    finally:
        stop.set()
        svc.stop()
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
