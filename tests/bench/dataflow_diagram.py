"""Draw docs/img/dataflow.png: where a frame goes, folder by folder (README "How it is built").

    python tests/bench/dataflow_diagram.py [--out docs/img/dataflow.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# (x, y, w, h, title, subtitle, colour)
PIPELINE = "#dbe9f6"
ENGINES = "#fde8c8"
SERVICE = "#e2f0d9"
OFFLINE = "#eeeeee"
BOXES = {
    "camera": (0.2, 6.0, 2.0, 1.0, "camera", "RTSP / file", "#ffffff"),
    "source": (2.8, 6.0, 2.6, 1.0, "pipeline/sources.py", "reader thread, lifecycle.py,\nlatest.py (newest frame only)", PIPELINE),
    "sched": (6.0, 6.0, 2.6, 1.0, "pipeline/scheduler.py", "cross-camera batches,\nfps budgets, commands", PIPELINE),
    "gate": (9.2, 6.0, 2.4, 1.0, "pipeline/gate.py", "dark frame? then its\nviews (views.py)", PIPELINE),
    "enh": (9.2, 4.1, 2.4, 1.0, "engines/enhancer.py", "K-step denoiser:\none view (+ raw, CLAHE)", ENGINES),
    "det": (6.0, 4.1, 2.6, 1.0, "engines/yolo.py", "every view, one call, NMS\n-> engines/detections.py", ENGINES),
    "result": (2.8, 4.1, 2.6, 1.0, "pipeline/process.py", "one batch through gate,\nengines, merge -> Result", PIPELINE),
    "sinks": (0.2, 2.2, 2.4, 1.0, "pipeline/sinks.py", "JSON lines, ...", PIPELINE),
    "snaps": (2.9, 2.2, 2.4, 1.0, "pipeline/snapshots.py", "newest frame + boxes", PIPELINE),
    "metrics": (6.0, 2.2, 2.6, 1.0, "metrics.py", "Prometheus contract", SERVICE),
    "http": (4.2, 0.3, 3.3, 1.0, "service/http.py", "/metrics /snapshot /cameras\n/healthz /readyz", SERVICE),
    "service": (0.2, -1.6, 4.6, 1.0, "service/service.py", "owns the threads: start, reload (commands\nto the scheduler), watchdog, stop", SERVICE),
    "cli": (5.1, -1.6, 2.8, 1.0, "cli/  bench/  install/", "duskwatch run | demo |\ncheck-config | bench | ...", SERVICE),
    "export": (8.2, -1.6, 3.4, 1.0, "export/  (offline)", "YOLO + denoiser -> engine files;\ntraining, degradation model", OFFLINE),
}
ARROWS = [("camera", "source"), ("source", "sched"), ("sched", "gate"), ("gate", "enh"),
          ("enh", "det"), ("gate", "det"), ("det", "result"), ("result", "sinks"),
          ("result", "snaps"), ("result", "metrics"), ("snaps", "http"), ("metrics", "http")]


def centre(name: str, side: str) -> tuple[float, float]:
    x, y, w, h = BOXES[name][:4]
    return {"l": (x, y + h / 2), "r": (x + w, y + h / 2), "t": (x + w / 2, y + h),
            "b": (x + w / 2, y)}[side]


def sides(a: str, b: str) -> tuple[str, str]:
    ax, ay = BOXES[a][:2]
    bx, by = BOXES[b][:2]
    if abs(ay - by) < 0.5:
        return ("r", "l") if bx > ax else ("l", "r")
    return ("b", "t") if by < ay else ("t", "b")


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(12, 10), dpi=110)
    ax.set_xlim(0, 11.8)
    ax.set_ylim(-2.6, 7.6)
    ax.axis("off")
    for name, (x, y, w, h, title, sub, colour) in BOXES.items():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                    fc=colour, ec="#555555", lw=1.2))
        ax.text(x + w / 2, y + h * 0.70, title, ha="center", va="center", fontsize=10,
                fontweight="bold", family="monospace")
        ax.text(x + w / 2, y + h * 0.30, sub, ha="center", va="center", fontsize=8.2)
    for a, b in ARROWS:
        sa, sb = sides(a, b)
        ax.add_patch(FancyArrowPatch(centre(a, sa), centre(b, sb), arrowstyle="-|>",
                                     mutation_scale=16, lw=1.6, color="#2b5d8a"))
    ax.text(5.9, 7.35, "daemon/: where a frame goes (one scheduler thread runs the blue and orange "
            "stages; camera readers feed it)", ha="center", fontsize=10.5)
    legend = [("daemon/pipeline/: the frame's path", PIPELINE), ("engines/: runtimes", ENGINES),
              ("daemon/: service, contracts, commands", SERVICE), ("export/: offline tools", OFFLINE)]
    for x, (label, colour) in zip((0.25, 3.5, 5.6, 8.9), legend):
        ax.add_patch(FancyBboxPatch((x, -2.4), 0.25, 0.25, boxstyle="square,pad=0",
                                    fc=colour, ec="#555555"))
        ax.text(x + 0.35, -2.28, label, va="center", fontsize=8.2)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "dataflow.png")
    draw(parser.parse_args().out)
