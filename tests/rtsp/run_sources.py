"""Run camera sources in a process of their own, so a test can read everything they print.

``python -m tests.rtsp.run_sources SPEC_JSON`` where SPEC is
``{"seconds": 8, "cameras": [{"name": ..., "url": ..., **CameraConfig fields}]}``. Logs every
state change like the service does (DEBUG level, to stderr), and prints one JSON line on stdout:
``{"status": {name: status()}, "reasons": {name: [reason, ...]}, "reconnects": {name: n}}``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from daemon.config import CameraConfig
from daemon.pipeline.sources import OpenCVSource
from tests.rtsp.helpers import EventRecorder

log = logging.getLogger("duskwatch.test-runner")


class LoggingRecorder(EventRecorder):
    def on_state(self, change):
        super().on_state(change)
        log.warning("camera %s: %s -> %s (%s)", change.camera, change.old.value,
                    change.new.value, change.reason)


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    events = LoggingRecorder()
    sources = [OpenCVSource(CameraConfig(**cam), events) for cam in spec["cameras"]]
    for src in sources:
        src.start()
    time.sleep(spec["seconds"])
    out = {
        "status": {s.name: s.status() for s in sources},
        "reasons": {s.name: [c.reason for c in events.changes if c.camera == s.name]
                    for s in sources},
        "reconnects": events.reconnects,
    }
    for src in sources:
        src.stop(timeout=5)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
