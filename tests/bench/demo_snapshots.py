"""Run `duskwatch demo` and save what an operator sees at /snapshot/demo.jpg by day and by night.

    python tests/bench/demo_snapshots.py docs/img/demo_snapshots.jpg

Polls /cameras until the footage is at night (the camera low-light), grabs the snapshot (with
the detector's boxes) as decoded (``?picture=raw``) and as people see it (the enhanced picture),
and puts them beside a daylight snapshot. Also prints the
/cameras entry and the frame counters at both moments, for the docs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

BASE = "http://127.0.0.1:9872"


def get(path: str) -> bytes:
    with urllib.request.urlopen(BASE + path, timeout=5) as r:
        return r.read()


def camera() -> dict | None:
    try:
        return json.loads(get("/cameras"))["cameras"]["demo"]
    except (OSError, ValueError, KeyError):
        return None


def wait_for(predicate, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cam = camera()
        if cam and predicate(cam):
            return cam
        time.sleep(0.5)
    raise TimeoutError("the demo camera never reached the wanted state")


def grab(label: str, query: str = "") -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(get("/snapshot/demo.jpg" + query), np.uint8), cv2.IMREAD_COLOR)
    cv2.putText(img, label, (12, img.shape[0] - 16), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 255), 2)
    return img


def main(out: str) -> int:
    demo = subprocess.Popen([sys.executable, "-m", "daemon.cli", "demo", "--duration", "150",
                             "--sink", "none"])
    try:
        day = wait_for(lambda c: c.get("last_result") and not c["lowlight"], 120)
        day_img = grab(f"day: luma {day['luma']:.0f}, not enhanced")
        night = wait_for(lambda c: c["lowlight"] and c.get("brightness_gain", 1) <= 0.1
                         and c.get("last_result"), 120)
        enhanced = night["last_result"]["enhanced"]
        raw_img = grab(f"night: luma {night['luma']:.0f}, as decoded", "?picture=raw")
        night_img = grab("night: " + ("the enhanced picture" if enhanced else "not enhanced"))
        print(json.dumps(night, indent=1))
        print(get("/metrics").decode().count("\n"), "metric lines")
    finally:
        demo.terminate()
        demo.wait(10)
    h = min(day_img.shape[0], night_img.shape[0])
    row = np.hstack([cv2.resize(i, (int(i.shape[1] * h / i.shape[0]), h)) for i in (day_img, raw_img, night_img)])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(out, row, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/img/demo_snapshots.jpg"))
