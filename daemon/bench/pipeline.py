"""duskwatch bench pipeline: the daemon's own pipeline on N streams, beside ultralytics' predict.

The service runs as in production (sources, gate, scheduler, batching, engines, metrics) on the
given files or RTSP URLs for ``--seconds``. Timings are taken at the seams, without touching the
pipeline: the frames handed to the scheduler (decode time, age when taken), the engine calls
(enhance, detect) and the results reaching a sink (end to end). The per-stage budget of one frame
follows (:mod:`daemon.bench.budget`). Then, unless ``--no-ultralytics``, ultralytics' own
``YOLO(model).predict(source=..., stream=True)`` runs on the same sources for the same time (one
thread and model per stream, its multi-stream recipe), once per ``--ultralytics`` path: its
PyTorch model (``torch``) and its own OpenVINO export of the same weights (``openvino``,
ultralytics' best CPU path), and the throughput ratios are printed. Each side's process CPU time
over its window is recorded too: ``frames_per_cpu_second`` and ``cpu_efficiency_ratios`` compare
what a frame costs each, which a machine shared with other jobs distorts far less than frames/s
(there, a side with more runnable threads simply gets a larger share of the cores). Progress goes to stderr; the
last stdout line is the JSON summary.

The enhanced picture of a low-light camera is made only when someone looks at it
(:mod:`daemon.pipeline.picture`); ``bench pipeline`` has no viewer unless ``--watch HZ`` (each
camera's live snapshot fetched HZ times a second) or ``--evidence`` (event snapshots and clips
written) gives it one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from engines.errors import UserError

HELP = "run the daemon pipeline on N streams for a set time (JSON summary), beside ultralytics"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", action="append", required=True, metavar="FILE_OR_URL",
                   help="video file or rtsp:// URL; repeat for N streams")
    p.add_argument("--engine", required=True,
                   help="detector engine (.onnx, .engine, ...) or triton://HOST:PORT/MODEL")
    p.add_argument("--enhancer", default=None, help="enhancer engine (optional)")
    p.add_argument("--views", default=None, metavar="V,V",
                   help="lowlight.views for the run (default: the daemon's); e.g. raw,enhanced runs the "
                        "enhancer's network on every low-light frame, as the detector's view")
    p.add_argument("--enhance", choices=["auto", "always", "never"], default="auto",
                   help="the cameras' enhance setting (always: every frame is enhanced)")
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per measurement")
    p.add_argument("--warmup", type=float, default=3.0, help="untimed seconds after start")
    p.add_argument("--fps", type=float, default=120.0, help="per-camera fps limit (120: none)")
    p.add_argument("--max-batch", type=int, default=8, help="scheduler.max_batch")
    p.add_argument("--batch-timeout-ms", type=float, default=10.0, help="scheduler.batch_timeout_ms")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    p.add_argument("--weights", default=None,
                   help="weights/yaml for the ultralytics run (default: from the engine sidecar)")
    p.add_argument("--no-ultralytics", action="store_true", help="skip the ultralytics comparison")
    p.add_argument("--ultralytics", default="torch", metavar="PATHS",
                   help="ultralytics paths to compare, comma separated: torch (its PyTorch model), "
                   "openvino (its own OpenVINO export of the same weights); default torch")
    p.add_argument("--ultralytics-cache", type=Path, default=None,
                   help="folder for ultralytics' OpenVINO export (default: a folder in the "
                   "system temp dir, reused across runs)")
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat pipeline and ultralytics runs this many times, alternating their "
                   "order; figures are totals over the rounds (a shared machine's load drifts)")
    p.add_argument("--day-night", action="store_true",
                   help="the same streams by day (enhance: never) and at night (enhance: always: the "
                        "low-light views, and the enhanced picture with --enhancer), alternating per "
                        "round; reports night / day frames/s (no ultralytics)")
    p.add_argument("--decoder", choices=["thread", "process", "both"], default="thread",
                   help="cameras[].decoder: thread (OpenCV in this process), process (PyAV in a "
                   "child process per camera; its CPU time is counted in decoder_cpu_seconds), or "
                   "both (the pipeline alone with each, alternating per round; no ultralytics)")
    p.add_argument("--no-budget", dest="budget", action="store_false",
                   help="skip the per-stage budget of one frame")
    p.add_argument("--watch", type=float, default=0.0, metavar="HZ",
                   help="a live view being watched: fetch each camera's snapshot JPEG this many "
                   "times a second (through the service's snapshot cache, as /snapshot/<camera>.jpg "
                   "does), so that pictures are made; 0: nobody looks (default)")
    p.add_argument("--evidence", action="store_true",
                   help="write event snapshots and clips (into a temporary folder, deleted after), "
                   "so that the pictures of the frames that go into them are made")


# -- timing at the seams ------------------------------------------------------------------------
class Recorder:
    """Thread-safe lists of samples per key, switched on only inside the timed window."""

    def __init__(self):
        self.on = False
        self._lock = threading.Lock()
        self.samples: dict[str, list[float]] = {}

    def add(self, key: str, value: float) -> None:
        if self.on:
            with self._lock:
                self.samples.setdefault(key, []).append(value)

    def timed(self, key: str, fn: Callable) -> Callable:
        def call(images, *args, **kwargs):  # the enhancer also takes streams= (temporal filter)
            t0 = time.perf_counter()
            out = fn(images, *args, **kwargs)
            self.add(key, time.perf_counter() - t0)
            return out

        for attr in ("names", "warmup", "reset", "close", "engine", "backend", "temporal",
                     "placement"):
            if hasattr(fn, attr):
                setattr(call, attr, getattr(fn, attr))
        return call


class _TimedEnhancer:
    """Wraps the enhancer: times its network (``enhance``, wherever it runs: the scheduler
    thread for the enhanced view, the threads that make pictures) and counts the frames through
    its per-stream filter (``filtered``: every frame given a picture or the enhanced view)."""

    def __init__(self, inner, rec: Recorder):
        self._inner, self._rec = inner, rec
        self.filtered = 0

    def __call__(self, images, streams=None):
        return self.network(self.filter(images, streams))

    def filter(self, images, streams=None):
        if self._rec.on:
            self.filtered += len(images)
        split = getattr(self._inner, "filter", None)
        return split(images, streams) if split is not None else list(images)

    def network(self, frames):
        t0 = time.perf_counter()
        out = self._inner.network(frames)
        self._rec.add("enhance", time.perf_counter() - t0)
        return out

    def __getattr__(self, item):
        return getattr(self._inner, item)


class _Watcher:
    """``--watch HZ``: a viewer on every camera's live snapshot, ``hz`` times a second, through
    the service's snapshot cache (what /snapshot/<camera>.jpg serves)."""

    def __init__(self, svc, hz: float):
        self._svc, self._period = svc, 1.0 / hz
        self._stop = threading.Event()
        self.fetched = 0
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            for cam in self._svc.view.camera_names():
                try:
                    self.fetched += self._svc.view.snapshot_jpeg(cam) is not None
                except Exception:  # noqa: BLE001 - no frame yet
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class _TimedSource:
    """Wraps a source: records decode time and frame age of every frame the scheduler takes."""

    def __init__(self, inner, rec: Recorder):
        self._inner, self._rec = inner, rec
        self.name = inner.name

    def latest(self, after_seq: int = -1):
        f = self._inner.latest(after_seq)
        if f is not None:
            self._rec.add("decode", f.decode_seconds)
            self._rec.add("frame_age", time.monotonic() - f.captured_monotonic)
        return f

    def __getattr__(self, item):
        return getattr(self._inner, item)

    @property
    def state(self):
        return self._inner.state


class _RecordingSink:
    name = "bench"

    def __init__(self, rec: Recorder):
        self._rec = rec
        self.count = 0

    def write(self, result) -> None:
        if self._rec.on:
            self.count += 1
            self._rec.add("end_to_end", time.time() - result.captured_wall)

    def close(self) -> None:
        pass


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p99_ms": None, "n": 0}
    a = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "n": len(values)}


# -- the daemon pipeline ------------------------------------------------------------------------
def _int8_off() -> dict[str, str]:
    """The engine asked for, as it is: no int8 upgrade (daemon/int8) during a benchmark
    (omitted for an older checkout whose config has no engines.int8)."""
    from daemon.config import EnginesConfig

    return {"int8": "off"} if "int8" in EnginesConfig.model_fields else {}


def _config(args: argparse.Namespace, evidence_dir: str | None = None):
    from daemon.config import parse_config

    cams = []
    for i, src in enumerate(args.source):
        url = src if "://" in src else str(Path(src).resolve())
        cams.append({"name": f"s{i}", "url": url, "fps": args.fps, "enhance": args.enhance,
                     "loop": True, "decoder": getattr(args, "decoder", "thread")})
    return parse_config({
        "cameras": cams,
        "engines": {"detector": args.engine, "enhancer": args.enhancer, "device": args.device,
                    **_int8_off()},
        "scheduler": {"max_batch": args.max_batch, "batch_timeout_ms": args.batch_timeout_ms},
        **({"lowlight": {"views": args.views.split(",")}} if getattr(args, "views", None) else {}),
        "sinks": [{"type": "jsonl"}],  # replaced by the recording sink
        # tracking; files only with --evidence
        "events": {"evidence": {"snapshots": True, "clips": True, "dir": evidence_dir}
                   if evidence_dir else {"snapshots": False, "clips": False}},
        # --watch: a fresh snapshot at every look (the cache re-encodes a changed frame only)
        "http": {"snapshot_interval_s": min(0.5, 1.0 / args.watch) if getattr(args, "watch", 0) else 0.5},
    }, "bench config")


def _source_factory(rec: Recorder):
    from daemon.service.service import default_source_factory

    return lambda cam, events: _TimedSource(default_source_factory(cam, events), rec)


def bench_daemon(args: argparse.Namespace) -> dict[str, Any]:
    from daemon.service.service import Service, default_detector_factory, default_enhancer_factory
    from daemon.service.systemd import Notifier

    with tempfile.TemporaryDirectory(prefix="duskwatch-bench-evidence-") as folder:
        return _bench_daemon(args, folder if getattr(args, "evidence", False) else None)


def _bench_daemon(args: argparse.Namespace, evidence_dir: str | None) -> dict[str, Any]:
    from daemon.service.service import Service, default_detector_factory, default_enhancer_factory
    from daemon.service.systemd import Notifier

    cfg = _config(args, evidence_dir)
    rec = Recorder()
    sink = _RecordingSink(rec)
    enhancers: list[_TimedEnhancer] = []

    def enhancer_factory(engines):
        enh = default_enhancer_factory(engines)
        if enh is not None:
            enhancers.append(_TimedEnhancer(enh, rec))
            return enhancers[-1]
        return None

    svc = Service(
        cfg, source_factory=_source_factory(rec),
        detector_factory=lambda e, b: rec.timed("detect", default_detector_factory(e, b)),
        enhancer_factory=enhancer_factory,
        sink_factory=lambda s, i: sink, serve_http=False, notifier=Notifier(environ={}))
    svc.start()
    placement = _placement(svc.detector)
    watcher = _Watcher(svc, args.watch) if getattr(args, "watch", 0) > 0 else None
    try:
        _progress(f"pipeline: {len(args.source)} streams, warm-up {args.warmup:g} s")
        time.sleep(args.warmup)
        before, wire0 = _counts(svc), _wire(svc.detector)
        fetched0 = watcher.fetched if watcher else 0
        rec.on = True
        t0, cpu0, child0 = time.perf_counter(), time.process_time(), _children_cpu()
        time.sleep(args.seconds)
        rec.on = False
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        child_cpu = _children_cpu() - child0
        after, wire1 = _counts(svc), _wire(svc.detector)
        fetched = (watcher.fetched - fetched0) if watcher else 0
    finally:
        if watcher is not None:
            watcher.stop()
        svc.stop()
    processed = after["processed"] - before["processed"]
    out = {
        "streams": len(args.source),
        "detector": placement,
        "seconds": round(elapsed, 2),
        "frames_processed": int(processed),
        "fps": round(processed / elapsed, 2),
        "decoder": cfg.cameras[0].decoder,
        "cpu_seconds": round(cpu, 2),
        "decoder_cpu_seconds": round(child_cpu, 2),
        "cpu_ms_per_frame": round(1000 * (cpu + child_cpu) / max(1, processed), 2),
        "per_stream_fps": {k: round((after["per"][k] - before["per"].get(k, 0)) / elapsed, 2)
                           for k in after["per"]},
        "dropped": int(after["dropped"] - before["dropped"]),
        "failed": int(after["failed"] - before["failed"]),
        "enhanced": int(after["enhanced"] - before["enhanced"]),
        "pictures": int(sum(e.filtered for e in enhancers)),
        "snapshots_fetched": int(fetched),
        "evidence_dropped": int(after["evidence_dropped"] - before["evidence_dropped"]),
        "views_shed": int(after["views_shed"] - before["views_shed"]),
        "stages": {k: percentiles(rec.samples.get(k, []))
                   for k in ("decode", "enhance", "detect", "end_to_end")},
        "frame_age": percentiles(rec.samples.get("frame_age", [])),
        "mean_batch": round(processed / max(1, len(rec.samples.get("detect", []))), 2),
    }
    if wire0 is not None:
        out["wire"] = wire_summary(wire0, wire1, processed, elapsed)
    return out


def _wire(detector: Any) -> dict[str, int] | None:
    """The detector engine's traffic counters (engines on a server: Triton), or None."""
    wire = getattr(getattr(detector, "engine", None), "wire", None)
    return dict(wire) if isinstance(wire, dict) else None


def wire_summary(before: dict[str, int], after: dict[str, int], processed: int,
                 seconds: float) -> dict[str, Any]:
    """What went over the network during the timed window, per processed frame and per image
    sent (a frame the gate picks is sent as several views)."""
    d = {k: after[k] - before[k] for k in after}
    per = max(1, processed)
    return {"calls": d["calls"], "failed_calls": d["failed_calls"], "images": d["frames"],
            "bytes_sent_per_frame": round(d["bytes_sent"] / per),
            "bytes_received_per_frame": round(d["bytes_received"] / per),
            "bytes_per_image": round((d["bytes_sent"] + d["bytes_received"]) / max(1, d["frames"])),
            "megabytes_per_second": round((d["bytes_sent"] + d["bytes_received"]) / 1e6 /
                                          max(seconds, 1e-9), 2)}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's live decoder children (decoder: process);
    a child replaced within the window loses its share (the figure is then low, never high)."""
    import psutil

    total = 0.0
    for child in psutil.Process().children():
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                t = child.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            pass
    return total


def alternate(args: argparse.Namespace, key: str, values: tuple[str, str]) -> dict[str, list[dict[str, Any]]]:
    """The pipeline with ``args.<key>`` set to each of ``values``, alternating which goes first
    per round (a shared machine's load drifts): the results per value."""
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in values}
    for r in range(args.rounds):
        for value in (values if r % 2 == 0 else values[::-1]):
            res = bench_daemon(argparse.Namespace(**{**vars(args), key: value}))
            runs[value].append(res)
            _progress(f"round {r + 1}: {key} {value}: {res['fps']} frames/s, "
                      f"{res['cpu_ms_per_frame']} CPU ms per frame")
    return runs


def compare_day_night(args: argparse.Namespace) -> dict[str, Any]:
    """``--day-night``: the same streams as daylight (``enhance: never``: one detector pass a
    frame) and as night (``enhance: always``: every frame gets the low-light views and, with an
    enhancer, the enhanced picture people see), alternating per round; night / day frames/s.
    Night also reports ``pictures`` (frames given the enhanced picture: each went through the
    temporal filter) and ``enhanced`` (the enhancer's network runs: pictures made because
    someone looked, ``--watch`` or ``--evidence``, plus the enhanced view where it is one)."""
    runs = alternate(args, "enhance", ("never", "always"))
    out: dict[str, Any] = {name: _aggregate(runs[mode]) for name, mode in (("day", "never"), ("night", "always"))}
    out["night"]["views_shed"] = sum(x.get("views_shed", 0) for x in runs["always"])
    out["night"]["enhanced"] = sum(x["enhanced"] for x in runs["always"])
    for key in ("pictures", "snapshots_fetched", "evidence_dropped"):
        out["night"][key] = sum(x.get(key, 0) for x in runs["always"])
    out["night_over_day"] = _ratio(out["night"]["fps"], out["day"]["fps"])
    # what a frame costs, night against day (a shared machine's load distorts it far less than
    # frames/s; the decoders' fixed cost per second weighs more on the side with fewer frames)
    out["night_over_day_per_cpu_second"] = _ratio(out["night"]["frames_per_cpu_second"],
                                                  out["day"]["frames_per_cpu_second"])
    return out


def compare_decoders(args: argparse.Namespace) -> dict[str, Any]:
    """``--decoder both``: the pipeline with each decoder, alternating which goes first per
    round; per decoder the totals over the rounds."""
    runs = alternate(args, "decoder", ("thread", "process"))
    out = {}
    for decoder, results in runs.items():
        frames = sum(x["frames_processed"] for x in results)
        cpu = sum(x["cpu_seconds"] + x["decoder_cpu_seconds"] for x in results)
        out[decoder] = {**_aggregate(results),
                        "decoder_cpu_seconds": round(sum(x["decoder_cpu_seconds"] for x in results), 2),
                        "cpu_ms_per_frame": round(1000 * cpu / max(1, frames), 2),
                        "decode_p50_ms": [x["stages"]["decode"]["p50_ms"] for x in results]}
    return out


def _placement(detector: Any) -> dict[str, str] | None:
    """Backend, device and provider the detector engine really runs on."""
    engine = getattr(detector, "engine", None)
    return engine.placement() if hasattr(engine, "placement") else None


def bench_budget(args: argparse.Namespace, decode_ms: float | None, batch: int) -> dict[str, Any]:
    """The per-stage budget of one frame (:mod:`daemon.bench.budget`) with fresh engines, after the
    pipeline has stopped."""
    from daemon.bench.budget import frame_budget, grab_frames
    from daemon.metrics import Metrics
    from daemon.service.service import default_detector_factory, default_enhancer_factory

    cfg = _config(args)
    frames = grab_frames(args.source[0], 8)
    if not frames:
        return {"error": f"no frame could be read from {args.source[0]}"}
    detector = default_detector_factory(cfg.engines, args.max_batch)
    enhancer = default_enhancer_factory(cfg.engines)
    metrics = Metrics()
    metrics.add_camera("s0")
    try:
        return frame_budget(frames=frames, detector=detector, enhancer=enhancer,
                            lowlight_cfg=cfg.lowlight, metrics=metrics, camera="s0",
                            decode_ms=decode_ms, batch=batch)
    finally:
        for engine in (detector, enhancer):
            if hasattr(engine, "close"):
                engine.close()


def _counts(svc) -> dict[str, Any]:
    r = svc.metrics.registry
    out: dict[str, Any] = {"processed": 0.0, "dropped": 0.0, "failed": 0.0, "enhanced": 0.0,
                           "views_shed": 0.0, "per": {},
                           "evidence_dropped": r.get_sample_value(
                               "duskwatch_sink_events_dropped_total", {"sink": "evidence"}) or 0.0}
    for cam in svc.view.camera_names():
        for outcome in ("processed", "dropped", "failed"):
            v = r.get_sample_value("duskwatch_frames_total", {"camera": cam, "outcome": outcome}) or 0.0
            out[outcome] += v
            if outcome == "processed":
                out["per"][cam] = v
        out["enhanced"] += r.get_sample_value("duskwatch_frames_enhanced_total", {"camera": cam}) or 0.0
        out["views_shed"] += r.get_sample_value("duskwatch_views_shed_total", {"camera": cam}) or 0.0
    return out


# -- ultralytics' own loop ----------------------------------------------------------------------
def _weights_for(args: argparse.Namespace) -> str:
    if args.weights:
        return args.weights
    from engines.base import read_sidecar

    meta = read_sidecar(args.engine)
    weights = meta.get("source_weights") or meta.get("weights")
    if not weights:
        raise UserError(f"{args.engine}: its sidecar does not say which weights it was exported "
                           "from; pass --weights yolo11n.pt (or .yaml)", exit_code=2)
    return str(weights)


def _imgsz_for(engine: str) -> int:
    from engines.base import read_sidecar

    size = read_sidecar(engine).get("imgsz", 640)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def ultralytics_paths(text: str) -> list[str]:
    """``--ultralytics torch,openvino`` -> ``["torch", "openvino"]``, checked."""
    paths = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in paths if p not in ULTRALYTICS_PATHS]
    if bad or not paths:
        raise UserError(f"--ultralytics {text}: use one or more of {', '.join(ULTRALYTICS_PATHS)}, "
                        "comma separated (or --no-ultralytics)", exit_code=2)
    return paths


ULTRALYTICS_PATHS = ("torch", "openvino")


def ultralytics_openvino_model(weights: str, imgsz: int, cache: Path | None) -> str:
    """ultralytics' own OpenVINO export of ``weights`` (its ``<stem>_openvino_model`` folder),
    made once per weights and size in ``cache``. ultralytics writes beside the weights, so they
    are copied there first (the shared weights folder may be read-only)."""
    from ultralytics import YOLO

    root = Path(cache or Path(tempfile.gettempdir()) / "duskwatch-bench-ultralytics")
    work = root / f"{Path(weights).stem}_{imgsz}"
    model_dir = work / f"{Path(weights).stem}_openvino_model"
    if (model_dir / "metadata.yaml").is_file():
        return str(model_dir)
    work.mkdir(parents=True, exist_ok=True)
    local = work / Path(weights).name
    shutil.copyfile(weights, local)
    _progress(f"ultralytics: exporting {local.name} with its own OpenVINO exporter (imgsz {imgsz})")
    produced = YOLO(str(local)).export(format="openvino", imgsz=imgsz, device="cpu", verbose=False)
    return str(produced)


def bench_ultralytics(args: argparse.Namespace, path: str = "torch") -> dict[str, Any]:
    """``predict(source=..., stream=True)`` per stream in its own thread, for ``--seconds``, on
    ultralytics' PyTorch model (``path="torch"``) or its own OpenVINO export (``"openvino"``)."""
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise UserError(f"the ultralytics comparison needs ultralytics ({exc}); install "
                        "'duskwatch[export]' or pass --no-ultralytics") from None
    weights, imgsz = _weights_for(args), _imgsz_for(args.engine)
    model_path = weights if path == "torch" else ultralytics_openvino_model(
        weights, imgsz, args.ultralytics_cache)
    device = "cpu" if args.device == "auto" and not _cuda() else args.device.replace("auto", "0")
    if path == "openvino":
        device = "cpu"
    _progress(f"ultralytics {path}: YOLO({model_path}).predict(stream=True, imgsz={imgsz}, "
              f"device={device})")
    counts = [0] * len(args.source)
    stop = threading.Event()
    started = threading.Barrier(len(args.source) + 1)

    def one(i: int, src: str) -> None:
        model = YOLO(model_path, task="detect")
        gen = model.predict(source=src, stream=True, imgsz=imgsz, device=device, verbose=False)
        next(gen)  # warm-up frame, not timed
        started.wait()
        for _ in gen:
            if stop.is_set():
                break
            counts[i] += 1
        gen.close()

    threads = [threading.Thread(target=one, args=(i, s), daemon=True) for i, s in enumerate(args.source)]
    for t in threads:
        t.start()
    started.wait(timeout=300)
    t0, cpu0 = time.perf_counter(), time.process_time()
    time.sleep(args.seconds)
    stop.set()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    frames = sum(counts)
    for t in threads:
        t.join(timeout=30)
    return {"path": path, "model": model_path, "weights": weights, "imgsz": imgsz,
            "seconds": round(elapsed, 2), "frames": frames, "fps": round(frames / elapsed, 2),
            "cpu_seconds": round(cpu, 2)}


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _progress(msg: str) -> None:
    print(f"[bench pipeline] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from daemon.config import ConfigError

    paths = [] if args.no_ultralytics else ultralytics_paths(args.ultralytics)
    if args.rounds < 1:
        raise UserError(f"--rounds {args.rounds} must be at least 1", exit_code=2)
    for src in args.source:
        if "://" not in src and not Path(src).is_file():
            raise UserError(f"--source {src}: no such file", exit_code=2)
    summary: dict[str, Any] = {"bench": "pipeline", "engine": _name(args.engine),
                               "enhancer": _name(args.enhancer) if args.enhancer else None,
                               "device": args.device, "load_average": _load_average()}
    if args.decoder == "both" or args.day_night:
        if args.decoder == "both":
            summary["decoders"] = compare_decoders(args)
        else:
            summary["day_night"] = compare_day_night(args)
            _progress(f"night / day frames/s: {summary['day_night']['night_over_day']}")
        summary["load_average_end"] = _load_average()
        print(json.dumps(summary))
        return 0
    try:
        rounds = [_round(args, paths, r) for r in range(args.rounds)]
    except ConfigError as exc:
        raise UserError(str(exc), exit_code=2) from None
    ours = dict(rounds[0]["pipeline"], **_aggregate([r["pipeline"] for r in rounds]))
    summary["pipeline"] = ours
    if args.budget:
        decode = (ours["stages"].get("decode") or {}).get("p50_ms")
        summary["budget"] = bench_budget(args, decode, max(1, round(ours["mean_batch"])))
        _progress(f"budget (ms per frame): {summary['budget'].get('ms_per_frame')}")
    if paths:
        summary["ultralytics"], summary["ratios"], summary["cpu_efficiency_ratios"] = {}, {}, {}
        for path in paths:
            ultra = dict(rounds[0][path], **_aggregate([r[path] for r in rounds]))
            summary["ultralytics"][path] = ultra
            summary["ratios"][path] = round(ours["fps"] / ultra["fps"], 3) if ultra["fps"] else None
            summary["cpu_efficiency_ratios"][path] = _ratio(ours["frames_per_cpu_second"],
                                                            ultra["frames_per_cpu_second"])
            _progress(f"ultralytics {path}: {ultra['fps']} frames/s; duskwatch / ultralytics "
                      f"{path} = {summary['ratios'][path]} over {len(rounds)} round(s)")
        summary["ratio_vs_ultralytics"] = summary["ratios"].get("torch")
    summary["rounds"] = [{k: (v["fps"] if isinstance(v, dict) else v) for k, v in r.items()}
                         for r in rounds]
    summary["load_average_end"] = _load_average()
    print(json.dumps(summary))
    return 0


def _name(ref: str) -> str:
    from daemon.config import engine_name

    return engine_name(ref) if "://" in ref else Path(ref).name


def _round(args: argparse.Namespace, paths: list[str], index: int) -> dict[str, Any]:
    """One round: the pipeline and each ultralytics path for ``--seconds`` each. Odd rounds run
    them in reverse order, so that a load that drifts over the run weighs on every side alike."""
    order = ["pipeline", *paths]
    if index % 2:
        order.reverse()
    out: dict[str, Any] = {"round": index + 1, "load_average": _load_average()}
    for what in order:
        if what == "pipeline":
            out[what] = bench_daemon(args)
            _progress(f"round {index + 1}: pipeline {out[what]['fps']} frames/s over "
                      f"{out[what]['streams']} streams")
        else:
            out[what] = bench_ultralytics(args, what)
            _progress(f"round {index + 1}: ultralytics {what} {out[what]['fps']} frames/s")
    return out


def _aggregate(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames and seconds summed over rounds; ``fps`` is their quotient."""
    key = "frames_processed" if "frames_processed" in results[0] else "frames"
    frames = sum(r[key] for r in results)
    seconds = sum(r["seconds"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    return {key: frames, "seconds": round(seconds, 2),
            "fps": round(frames / seconds, 2) if seconds else 0.0,
            "fps_per_round": [r["fps"] for r in results],
            "cpu_seconds": round(cpu, 2),
            "frames_per_cpu_second": round(frames / cpu, 2) if cpu else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages: how busy the shared machine was."""
    try:
        import os

        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None
