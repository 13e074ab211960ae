"""What a test needs from outside the project, so that it skips with the reason when the machine
lacks it instead of failing: the real detector weights, or internet access to fetch them."""

from __future__ import annotations

import socket
from pathlib import Path

#: Where ultralytics downloads the official weights from (its GitHub release assets).
DOWNLOAD_HOST = ("github.com", 443)


def real_weights() -> Path | None:
    """The shared data's real COCO YOLO11n, where this machine has it (daemon/sample_data.py)."""
    from daemon.sample_data import YOLO_WEIGHTS, find

    return find(YOLO_WEIGHTS)


def online(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ultralytics' download host opens."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


def weights_or_internet_missing() -> str | None:
    """Why a test that exports the default detector cannot run here, or None when it can."""
    if real_weights() is not None or online():
        return None
    return ("needs the real YOLO11n weights (../shared/data/weights/yolo11n_coco_fp32.pt, or "
            "$DUSKWATCH_DATA/weights) or internet access so that ultralytics can download "
            "yolo11n.pt: the demo's first run exports its detector from them; this machine has "
            "neither")
