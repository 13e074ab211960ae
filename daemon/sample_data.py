"""Where the demo finds sample footage and real detector weights, when the machine has them.

duskwatch ships no weights and no footage (their licences are not ours to grant). The demo
looks, in order, in ``$DUSKWATCH_DATA``, then in a ``shared/data`` folder in or beside the
current directory, or beside the folder that holds the ``daemon`` package (the layout of a
development checkout: ``<work>/duskwatch`` next to ``<work>/shared/data``), for:

* ``weights/yolo11n_coco_fp32.pt``: a real COCO-trained YOLO11n, so the demo draws real boxes;
* ``video/vtest.avi``: OpenCV's pedestrian clip, as the demo camera.

Whatever is missing has a fallback the demo says out loud (``yolo11n.pt`` in the current folder
or downloaded by ultralytics; generated footage).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "DUSKWATCH_DATA"
YOLO_WEIGHTS = "weights/yolo11n_coco_fp32.pt"
DEMO_VIDEO = "video/vtest.avi"


def candidate_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[1]  # the folder holding the daemon package
    dirs = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    for base in (Path.cwd(), Path.cwd().parent, here.parent):
        dirs.append(base / "shared" / "data")
    return dirs


def find(relative: str) -> Path | None:
    """The first existing ``<data dir>/<relative>``, or None."""
    for folder in candidate_dirs():
        path = folder / relative
        if path.is_file():
            return path
    return None
