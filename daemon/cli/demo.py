"""duskwatch demo: the whole pipeline with no config and no camera.

A built-in camera plays footage that goes from day to night (or ``--source FILE``), the default
engines are exported into a cache directory on the first run (by running ``duskwatch export``
as a subprocess: the daemon never imports the export tools), and the HTTP endpoints are served.
On a box whose engine choice is int8 the demo's detector goes int8 as the service's does
(:mod:`daemon.int8`), on the demo's own footage and faster (:data:`DEMO_INT8`): frames for about
a minute, then the build in the background; the int8 IR is cached with the f32 one.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from engines.errors import UserError

HELP = "run the pipeline on built-in day-to-night footage (no config, no camera needed)"

log = logging.getLogger("duskwatch.demo")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help="video file (or rtsp:// URL) instead of the built-in footage")
    p.add_argument("--darken", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the day-to-night cycle (default: on for the built-in footage, "
                   "off for --source)")
    p.add_argument("--duration", type=float, default=0.0, help="seconds to run (0: until Ctrl-C)")
    p.add_argument("--listen", default="127.0.0.1:9872", help="host:port for the HTTP endpoints")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where exported engines are kept (default $XDG_CACHE_HOME/duskwatch "
                   "or ~/.cache/duskwatch)")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second to process")
    p.add_argument("--imgsz", type=int, default=640, help="detector input size for the export")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    p.add_argument("--format", default="auto",
                   choices=("auto", "onnx", "openvino", "engine", "torchscript"),
                   help="detector engine format (the enhancer's follows it); auto = this box's "
                   "fastest (the rule of install-service, logged with its reason)")
    p.add_argument("--weights", default=None,
                   help="YOLO weights to export for the demo (.pt, or a .yaml for random weights); "
                   "default: a real COCO YOLO11n from $DUSKWATCH_DATA or shared/data (see "
                   "daemon/sample_data.py), else ./yolo11n.pt, else ultralytics downloads it")
    p.add_argument("--sink", default=None, help="JSON-lines output file, '-' for stdout, "
                   "'none' for no sink (default: demo-events.jsonl in the cache directory, so the "
                   "terminal stays readable)")


def cache_dir(arg: Path | None) -> Path:
    if arg is not None:
        return arg
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "duskwatch"


def demo_weights(arg: str | None) -> str:
    """The YOLO weights the demo exports: ``--weights``, else real COCO weights from the sample
    data, else ``yolo11n.pt`` (here, or downloaded by ultralytics where the internet is reachable)."""
    if arg:
        return arg
    from daemon.sample_data import YOLO_WEIGHTS, find

    found = find(YOLO_WEIGHTS)
    return str(found) if found else "yolo11n.pt"


def engine_choice(args: argparse.Namespace):
    """The demo's engine formats: the box's fastest (logged with the reason) unless ``--format``."""
    from daemon.install.engine_choice import ENHANCER_FOR, EngineChoice, choose_engines, probe_box

    if args.format != "auto":
        choice = EngineChoice(args.format, ENHANCER_FOR[args.format], "--format as asked")
    else:
        choice = choose_engines(probe_box(), args.device)
    log.info("engines: %s", choice.describe())
    return choice


def export_command(kind: str, out: Path, imgsz: int = 640, weights: str = "yolo11n.pt",
                   fmt: str = "onnx") -> list[str]:
    """The ``duskwatch export`` command line that builds the demo's engine ``kind`` as ``fmt``."""
    cmd = [sys.executable, "-m", "daemon.cli", "export", kind]
    if kind == "yolo":
        cmd += ["--weights", weights, "--imgsz", str(imgsz), "--dynamic", "--batch", "8"]
        if fmt == "engine":
            cmd.append("--half")
    else:  # the shipped weights change with upgrades: export again only when they did
        cmd += ["--if-changed"]
    cmd += ["--format", fmt, "--out", str(out)]
    return cmd


def ensure_engine(kind: str, out: Path, imgsz: int = 640, weights: str = "yolo11n.pt",
                  fmt: str = "onnx") -> Path | None:
    """Export ``kind`` to ``out`` unless it is there (the denoiser: unless it holds the shipped
    weights); the path, or None when the export failed."""
    if kind == "yolo" and out.is_file() and out.stat().st_size > 0:
        log.info("using cached %s engine %s", kind, out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = export_command(kind, out, imgsz, weights, fmt)
    cached = out.is_file()
    if cached:
        log.info("checking the cached %s engine %s against the shipped weights", kind, out)
    else:
        log.info("exporting the default %s engine (first run only): %s", kind, " ".join(cmd[1:]))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not out.is_file():
        tail = "\n".join(proc.stdout.strip().splitlines()[-8:])
        log.error("export %s failed (exit %d):\n%s", kind, proc.returncode, tail)
        return None
    if cached and "up to date" not in proc.stdout:
        log.info("the shipped %s weights changed: re-exported %s", kind, out)
    return out


def demo_int8_settings():
    """The service's int8 upgrade, sped up for a demo: a frame every 0.5 s, 120 frames (about
    a minute of the built-in footage, day and night), the build in the background."""
    from daemon.int8.upgrader import Settings

    return Settings(every_s=0.5, calib_frames=96, check_frames=24, progress_every_s=30.0)


def demo_config(detector: Path, enhancer: Path | None, args: argparse.Namespace):
    from daemon.config import parse_config

    url = args.source if args.source and "://" in args.source else "file:///duskwatch-demo"
    sinks = [] if args.sink == "none" else [{"type": "jsonl", "path": args.sink}]
    return parse_config({
        "cameras": [{"name": "demo", "url": url, "fps": args.fps, "loop": True,
                     # a line and a zone, so that the review page has crossings to show
                     "lines": [{"name": "middle", "points": [[0.05, 0.5], [0.95, 0.5]]}],
                     "zones": [{"name": "left", "points": [[0, 0], [0.4, 0], [0.4, 1], [0, 1]]}]}],
        "engines": {"detector": str(detector), "enhancer": str(enhancer) if enhancer else None,
                    "device": args.device},
        # The demo's footage ramps down within ~30 s: react faster than the service default.
        "lowlight": {"smoothing": 0.3},
        "sinks": sinks,
        # snapshots and clips of the demo's events next to its engines, not in /var/lib
        "events": {"evidence": {"dir": str(cache_dir(args.cache_dir) / "events"),
                                "max_bytes": 200_000_000}},
        "http": {"listen": args.listen},
    }, "demo config")


def source_factory(args: argparse.Namespace):
    from daemon.pipeline.synthetic import DayNight, synthetic_factory

    if args.source and "://" in args.source:
        return None  # the real RTSP/HTTP source
    if args.source and not Path(args.source).is_file():
        raise UserError(f"--source {args.source}: no such file", exit_code=2)
    darken = args.darken if args.darken is not None else args.source is None
    return synthetic_factory(args.source, DayNight() if darken else None)


def print_where_to_look(host: str, port: int, enhancer: Path | None, sink: str) -> None:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    base = f"http://{shown}:{port}"
    lines = [
        "",
        f"duskwatch demo is running. Open {base}/ in a browser: the review page (the live",
        "  camera, its events with snapshots and clips). The same as JSON and files:",
        f"  {base}/cameras  {base}/events  {base}/snapshot/demo.jpg",
        f"  {base}/metrics (Prometheus)  {base}/healthz  {base}/readyz",
    ]
    if sink not in ("-", "none"):
        lines.append(f"  {sink}   detections, one JSON line per processed frame")
    if enhancer is None:
        lines.append("  (no enhancer engine: dark frames are detected without enhancement)")
    lines.append("Stop with Ctrl-C.\n")
    print("\n".join(lines), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from daemon.cli.run import install_signals
    from daemon.config import ConfigError
    from daemon.service.service import Service

    factory = source_factory(args)
    cache = cache_dir(args.cache_dir) / "engines"
    if args.sink is None:
        args.sink = str(cache.parent / "demo-events.jsonl")
    weights = demo_weights(args.weights)
    choice = engine_choice(args)
    detector = ensure_engine("yolo", cache / f"{Path(weights).stem}-{args.imgsz}{choice.detector_suffix}",
                             args.imgsz, weights, choice.detector)
    if detector is None:
        raise UserError("could not export the demo's detector; see the log above (it needs the "
                        "export extra, pip install 'duskwatch[export]', and YOLO weights: "
                        "--weights PATH.pt, or internet access to fetch yolo11n.pt)")
    enhancer = ensure_engine("denoiser", cache / f"denoiser{choice.enhancer_suffix}",
                             fmt=choice.enhancer)
    if enhancer is None:
        log.warning("no enhancer engine could be exported: the demo runs without enhancement")
    try:
        cfg = demo_config(detector, enhancer, args)
    except ConfigError as exc:
        raise UserError(str(exc), exit_code=2) from None
    stop = threading.Event()
    install_signals(stop, threading.Event())
    svc = Service(cfg, source_factory=factory, int8_settings=demo_int8_settings())
    try:
        svc.start()
        print_where_to_look(*svc.http.address, enhancer, args.sink)
        if args.duration > 0:
            timer = threading.Timer(args.duration, stop.set)
            timer.daemon = True  # a SIGTERM before the duration ends must not wait for it
            timer.start()
        svc.serve(stop)
    except OSError as exc:
        raise UserError(f"cannot start: {exc}") from None
    finally:
        svc.stop()
    return 0
