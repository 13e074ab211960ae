"""duskwatch bench night: what enhancement does to detection, on labelled photos.

A detector engine is scored (COCO-style AP50 and AP50-95, :mod:`engines.evaluation`) on labelled
photo sets, each photo processed five ways:

* ``raw``: as it is;
* ``always``: through the enhancer, every photo;
* ``gated``: the daemon's own low-light gate decides per photo, through exactly the code path
  ``duskwatch run`` takes: :class:`daemon.pipeline.process.Pipeline` with a
  :class:`daemon.pipeline.gate.LowLightGate` per photo (each photo is a camera's first frame) in
  ``auto`` mode, the :class:`engines.enhancer.Enhancer` and :class:`engines.yolo.Detector`; a
  photo the gate picks is detected on the config's ``lowlight.views`` (raw, enhanced, CLAHE,
  mirror) and their boxes merged (:mod:`daemon.pipeline.views`);
* ``gamma``: gamma 0.5 (``255 * (x / 255) ** 0.5``), a cheap baseline;
* ``clahe``: CLAHE on the luma channel (YCrCb, clip 2.0, 8x8 tiles), another one;
* ``mirror``: the photo flipped left to right (boxes flipped back): no light added, only a second
  look; merged with raw it is the control for what merging views gains by looking twice;
* ``zoom``, ``zoom_mirror``: the photo (mirrored) seen at ``lowlight.zoom`` times the detector's
  input size (detectors exported with ``--dynamic``; skipped for the others).

Every method runs through the same Pipeline, one photo per call: ``raw`` and ``gamma`` with the
gate in ``never`` mode, ``always``, ``clahe`` and ``mirror`` in ``always`` mode with that single
view; so the methods differ only in the pictures the detector sees. Default sets
(``--data-root``, normally ``../shared/data``):
``exdark_val`` (real night photos), well-lit ``coco128``, and ``coco128`` darkened by the
degradation model at each ``--exposures`` value (made once by ``duskwatch degrade`` in a
subprocess, since the daemon never imports the export tools, and cached under ``--cache-dir``).
Each set is reported whole and in brightness bins of the raw photo's mean grey level
(< 25, 25-50, > 50).

``--tune`` chooses the gate's thresholds (``lowlight.enhance_below``, ``lowlight.max_highlight``),
its views (``lowlight.views``) and their merge (``lowlight.merge``, ``lowlight.merge_iou``) on one
set (``--tune-on``, default ``exdark_val``; ``exdark_train`` with ``--set``, so that val stays for
reporting) from the single-view results (raw, always, clahe, mirror, zoom, zoom_mirror: those
that ran) of the first detector (views are merged offline exactly as the pipeline merges them),
prints them, and runs ``gated`` with them.

Output: a table on stdout, a bar chart PNG (``--chart``), progress bars on stderr, and the JSON
summary as the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from engines.errors import UserError

HELP = "detection AP on labelled photos: raw, enhanced, gated, gamma, CLAHE, mirror (JSON summary)"
METHODS = ("raw", "always", "gated", "gamma", "clahe", "mirror", "zoom", "zoom_mirror")
BINS = (("all", 0.0, 256.0), ("grey<25", 0.0, 25.0), ("grey25-50", 25.0, 50.0), ("grey>50", 50.0, 256.0))
DEFAULT_EXPOSURES = (0.02, 0.05, 0.2)
CAMERA = "bench"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detector", action="append", required=True, metavar="ENGINE",
                   help="detector engine (duskwatch export yolo ...); repeat to score several")
    p.add_argument("--enhancer", default=None,
                   help="enhancer engine (duskwatch export denoiser ...); without it only raw, "
                        "gamma and CLAHE are scored")
    p.add_argument("--set", action="append", default=[], metavar="NAME=DIR",
                   help="a labelled set to score (images/ + labels/); repeatable. Without --set: "
                        "exdark_val, coco128 and coco128 darkened at --exposures from --data-root")
    p.add_argument("--data-root", default=None,
                   help="shared data folder (default: ../shared/data beside the checkout, or "
                        "$DUSKWATCH_DATA)")
    p.add_argument("--exposures", default=",".join(map(str, DEFAULT_EXPOSURES)),
                   help="exposures of the darkened coco128 sets, comma-separated ('' for none)")
    p.add_argument("--degrade-models", default="global",
                   help="degradation models of the darkened sets, comma-separated: global (the whole "
                        "photo darkened), night (uneven light, light sources with glare); default global")
    p.add_argument("--seed", type=int, default=0, help="seed of the darkened sets")
    p.add_argument("--limit", type=int, default=None, help="first N photos of each set (quick runs)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    p.add_argument("--config", default=None,
                   help="daemon config whose lowlight section the gate uses (default: the built-in defaults)")
    p.add_argument("--tune", action="store_true",
                   help="choose the gate thresholds on --tune-on, print them, and score gated with them")
    p.add_argument("--tune-on", default="exdark_val", help="set to tune on (default exdark_val)")
    p.add_argument("--enhancer-cost", type=float, default=ENHANCER_COST,
                   help="what one enhancer call costs in detector passes, for --tune's trade-off "
                        f"of AP against work (default {ENHANCER_COST}: K = 2 on ORT vs YOLO11n on OpenVINO, CPU)")
    p.add_argument("--pass-cost", type=float, default=PASS_COST,
                   help="AP50 that each detector pass beyond the first must buy for --tune to "
                        f"add a view (default {PASS_COST}; raise it on a box short of compute)")
    p.add_argument("--conf", type=float, default=0.001, help="detection confidence floor (mAP: 0.001)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU (ultralytics val: 0.7)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda:N")
    p.add_argument("--cache-dir", default=None,
                   help="where darkened sets are kept (default ~/.cache/duskwatch/night)")
    p.add_argument("--chart", default=None, help="write a bar chart of AP50 to this PNG")


# -- sets -----------------------------------------------------------------------------------------
def data_root(arg: str | None) -> Path:
    """``--data-root``, else the sample data folder the demo uses (:mod:`daemon.sample_data`)."""
    if arg:
        return Path(arg)
    from daemon.sample_data import candidate_dirs

    found = next((d for d in candidate_dirs() if d.is_dir()), None)
    return found or candidate_dirs()[-1]


def darkened_set(src: Path, exposure: float, seed: int, cache: Path, limit: int | None,
                 model: str = "global") -> Path:
    """The darkened copy of ``src`` at ``exposure`` in ``cache``, made by ``duskwatch degrade``
    in a subprocess when it is not there yet (or was made with other settings)."""
    tag = "" if model == "global" else f"_{model}"
    out = cache / (f"{src.name}{tag}_e{exposure:g}_s{seed}" + (f"_n{limit}" if limit else ""))
    manifest = out / "degrade.json"
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        if (m.get("model", "global"), m.get("exposure"), m.get("seed"), m.get("limit")) == (model, exposure, seed, limit):
            return out
    cmd = [sys.executable, "-m", "daemon.cli", "degrade", "--data", str(src), "--out", str(out),
           "--exposure", str(exposure), "--seed", str(seed), "--model", model]
    cmd += ["--limit", str(limit)] if limit else []
    print(f"making {out.name}: {' '.join(cmd[1:])}", file=sys.stderr)
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0 or not manifest.is_file():
        raise UserError(f"`duskwatch degrade` failed making {out} (exit {proc.returncode}): "
                        f"{proc.stderr.strip()[-500:]}; it needs the export extra "
                        "(pip install 'duskwatch[export]')")
    return out


def resolve_sets(args: argparse.Namespace) -> list[tuple[str, Path]]:
    if args.set:
        out = []
        for spec in args.set:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise UserError(f"--set {spec!r}: write it as NAME=DIR", exit_code=2)
            out.append((name, Path(path)))
        return out
    root = data_root(args.data_root)
    exdark, coco = root / "exdark_dev" / "val", root / "coco128"
    for need in (exdark, coco):
        if not need.is_dir():
            raise UserError(f"{need} is missing: the default sets come from the shared data folder "
                            "(../shared/data); pass --data-root or --set NAME=DIR", exit_code=2)
    cache = Path(args.cache_dir) if args.cache_dir else Path.home() / ".cache" / "duskwatch" / "night"
    sets = [("exdark_val", exdark), ("coco128", coco)]
    models = [m.strip() for m in args.degrade_models.split(",") if m.strip()]
    if set(models) - {"global", "night"}:
        raise UserError(f"--degrade-models {args.degrade_models!r}: choose from global, night", exit_code=2)
    for model in models:
        tag = "" if model == "global" else f"_{model}"
        for e in parse_floats(args.exposures):
            sets.append((f"coco128{tag}_e{e:g}", darkened_set(coco, e, args.seed, cache, args.limit, model)))
    return sets


def parse_floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--exposures {text!r}: expected comma-separated numbers such as 0.02,0.05", 2) from None


# -- the pictures the detector sees -----------------------------------------------------------------
def gamma(image: np.ndarray, g: float = 0.5) -> np.ndarray:
    """``255 * (x / 255) ** g`` on every channel."""
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** g).astype(np.uint8)
    return lut[image]


PREPROCESS: dict[str, Callable[[np.ndarray], np.ndarray] | None] = {
    "raw": None, "always": None, "gated": None, "gamma": gamma, "clahe": None, "mirror": None, "zoom": None,
    "zoom_mirror": None}
GATE_MODE = {"raw": "never", "always": "always", "gated": "auto", "gamma": "never", "clahe": "always",
             "mirror": "always", "zoom": "always", "zoom_mirror": "always"}
# One view each: what 'always', 'clahe' and 'mirror' show the detector ('gated': the config's).
METHOD_VIEWS = {"always": ("enhanced",), "clahe": ("clahe",), "mirror": ("mirror",), "zoom": ("zoom",),
                "zoom_mirror": ("zoom_mirror",)}
VIEW_METHOD = {"raw": "raw", "enhanced": "always", "clahe": "clahe", "mirror": "mirror", "zoom": "zoom",
               "zoom_mirror": "zoom_mirror"}
MERGES = ("nms", "wbf")  # what --tune tries for lowlight.merge, each at MERGE_IOUS
MERGE_IOUS = {"nms": (0.5,), "wbf": (0.55,)}


def mean_grey(image: np.ndarray) -> float:
    """The raw photo's mean grey level (BT.601 luma, every pixel): what the bins are made of."""
    return float(image.reshape(-1, 3).mean(axis=0) @ np.array([0.114, 0.587, 0.299]))


# -- running the daemon's pipeline on photos --------------------------------------------------------
@dataclass
class PhotoResult:
    dets: Any  # engines.detections.Detections
    enhanced: bool  # the gate picked the photo (its views were made)


def run_pipeline(method: str, images: Sequence[np.ndarray], detector: Any, enhancer: Any,
                 lowlight: Any, progress: Callable[[Iterable], Iterable]) -> list[PhotoResult]:
    """Each photo through the daemon's Pipeline as one camera's first frame; ``method`` picks
    the gate mode, the views and the preprocessing (gamma stands in for the camera's picture)."""
    from daemon.pipeline.frames import Frame
    from daemon.pipeline.gate import LowLightGate
    from daemon.pipeline.sinks import SinkSet
    from daemon.metrics import Metrics
    from daemon.pipeline.process import Pipeline

    metrics = Metrics()
    metrics.add_camera(CAMERA)
    pipeline = Pipeline(detector, metrics, SinkSet([]), enhancer=enhancer if method in ("always", "gated") else None)
    prep = PREPROCESS[method]
    if METHOD_VIEWS.get(method):
        lowlight = lowlight.model_copy(update={"views": METHOD_VIEWS[method]})
    out = []
    for seq, image in enumerate(progress(images)):
        picture = prep(image) if prep else image
        gate = LowLightGate(lowlight, GATE_MODE[method], picture="raw")  # detection only
        now = time.monotonic()
        results = pipeline.process([Frame(CAMERA, picture, seq, now, time.time())], [gate])
        if len(results) != 1:
            raise UserError(f"{method}: the pipeline dropped photo {seq} (an engine failed; see the "
                            "log above)")
        out.append(PhotoResult(results[0].detections, results[0].lowlight))
    return out


# -- scoring --------------------------------------------------------------------------------------
@dataclass
class SetRun:
    """One set, one detector: per-photo matches of each method and the photos' statistics."""

    name: str
    labelled: Any
    grey: np.ndarray
    stats: list[Any]
    results: dict[str, list[PhotoResult]] = field(default_factory=dict)
    matches: dict[str, list[Any]] = field(default_factory=dict)  # of results, matched once
    _fused: dict[tuple, list[Any]] = field(default_factory=dict, repr=False)

    def add(self, method: str, results: Sequence[PhotoResult]) -> None:
        self.results[method] = list(results)
        self.matches[method] = match_all(self.labelled, results)

    def treated(self, method: str) -> int:
        """Photos that got the low-light views with ``method``."""
        return sum(r.enhanced for r in self.results[method])

    def fused(self, views: tuple[str, ...], how: str = "nms", iou: float = 0.5) -> list[Any]:
        """Per-photo matches of the pictures ``views`` merged as the pipeline merges them
        (``how`` at ``iou``: lowlight.merge, lowlight.merge_iou), from the single-view methods'
        results (``enhanced`` = always, ``clahe`` = clahe, ...)."""
        from daemon.pipeline.views import merge

        key = (views, how, iou)
        if key not in self._fused:
            per_view = [self.results[VIEW_METHOD[v]] for v in views]
            merged = [PhotoResult(merge([r[k].dets for r in per_view], iou, how=how), True)
                      for k in range(len(self.labelled))]
            self._fused[key] = match_all(self.labelled, merged)
        return self._fused[key]

    def score(self, method: str, select: np.ndarray | None = None) -> Any:
        from engines.evaluation import summarize

        ms = self.matches[method]
        chosen = ms if select is None else [m for m, s in zip(ms, select) if s]
        return summarize(chosen, self.labelled.classes)

    def bins(self, method: str) -> dict[str, Any]:
        return {name: self.score(method, sel) for name, sel in self.bin_masks().items()}

    def bin_masks(self) -> dict[str, np.ndarray]:
        """Which photos fall in each brightness bin of :data:`BINS` (by the raw photo's grey)."""
        return {name: (self.grey >= lo) & (self.grey < hi) for name, lo, hi in BINS}


def match_all(labelled: Any, results: Sequence[PhotoResult]) -> list[Any]:
    from engines.evaluation import match_image

    return [match_image(r.dets.boxes, r.dets.scores, r.dets.class_ids, im.boxes, im.classes,
                        labelled.classes) for im, r in zip(labelled.images, results)]


# -- tuning the gate ------------------------------------------------------------------------------
ENHANCE_BELOW_GRID = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 55.0)
MAX_HIGHLIGHT_GRID = (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 1.0)
MIN_GAIN = 0.005  # AP50 a rule must gain over treating nothing
PASS_COST = 0.005  # AP50 each detector pass beyond the first must buy (--pass-cost)
# What the enhancer costs, in detector passes: the K = 2 for people (guided head) at 640x640 on
# ONNX Runtime is 1.31x YOLO11n on OpenVINO, CPU (docs/BENCHMARKS.md, "The picture for people");
# --enhancer-cost for another pair.
ENHANCER_COST = 1.3


def gate_picks(lowlight: Any, stats: Sequence[Any]) -> np.ndarray:
    """Which photos the gate (``auto``) sends through the enhancer, each as a camera's first frame."""
    from daemon.pipeline.gate import LowLightGate

    picks = []
    for s in stats:
        gate = LowLightGate(lowlight, "auto")
        gate.observe(s.luma, s.highlight)
        picks.append(gate.should_enhance)
    return np.array(picks, bool)


def mixed_score(run: SetRun, picks: np.ndarray, views: tuple[str, ...],
                select: np.ndarray | None = None, how: str = "nms", iou: float = 0.5) -> Any:
    """AP of the gate's outcome: picked photos detected on ``views`` (merged ``how`` at
    ``iou``), the rest raw."""
    from engines.evaluation import summarize

    mixed = [f if p else r for r, f, p in zip(run.matches["raw"], run.fused(views, how, iou), picks)]
    if select is not None:
        mixed = [m for m, s in zip(mixed, select) if s]
    return summarize(mixed, run.labelled.classes)


MAX_VIEWS = 4  # --tune tries at most this many views together


def view_sets(run: SetRun) -> list[tuple[str, ...]]:
    """The sets of views --tune tries, among those whose single-view results ``run`` has: each
    view alone (but the raw frame), and the raw frame with up to ``MAX_VIEWS - 1`` others."""
    from itertools import combinations

    from daemon.pipeline.views import VIEWS

    have = [v for v in VIEWS if VIEW_METHOD[v] in run.results]
    others = [v for v in have if v != "raw"]
    alone = [(v,) for v in others]
    with_raw = [("raw",) + c for n in range(1, MAX_VIEWS) for c in combinations(others, n)] if "raw" in have else []
    return alone + with_raw


def view_cost(views: Sequence[str], enhancer_cost: float = ENHANCER_COST, zoom: float = 1.5) -> float:
    """Detector passes a picked frame costs with ``views``, the enhancer counted in passes and
    the 'zoom' view as the pixels it is seen at (``zoom`` squared passes)."""
    from daemon.pipeline.views import SCALED

    scaled = sum(v in SCALED for v in views)
    return (len(views) - scaled + zoom * zoom * scaled
            + (enhancer_cost if "enhanced" in views else 0.0))


def merges(views: Sequence[str]) -> list[tuple[str, float]]:
    """The (lowlight.merge, lowlight.merge_iou) pairs --tune tries for ``views`` (one view
    needs no merge)."""
    if len(views) == 1:
        return [("nms", MERGE_IOUS["nms"][0])]
    return [(how, iou) for how in MERGES for iou in MERGE_IOUS[how]]


def tune_gate(run: SetRun, base: Any, enhancer_cost: float = ENHANCER_COST,
              pass_cost: float = PASS_COST) -> tuple[Any, list[dict]]:
    """Grid search of (enhance_below, max_highlight, views, merge) on ``run``: among the rules
    whose AP50 is >= raw - 0.005 in every brightness bin, the one with the best AP50 of the
    whole set less ``pass_cost`` per detector pass beyond the first (:func:`view_cost`: a view,
    the enhancer included, must pay for itself); a rule that treats anything must beat
    treating nothing by :data:`MIN_GAIN`, else nothing is."""
    raw_bins = {k: v.ap50 for k, v in run.bins("raw").items()}
    bins = run.bin_masks()
    table, best, best_key = [], base.model_copy(update={"enhance_below": 0.0}), None
    # the gate's decision does not depend on the views: made once per pair of thresholds
    decided = {(eb, mh): gate_picks(base.model_copy(update={"enhance_below": eb, "max_highlight": mh}),
                                    run.stats)
               for eb in ENHANCE_BELOW_GRID for mh in MAX_HIGHLIGHT_GRID}
    for views in view_sets(run):
        cost = view_cost(views, enhancer_cost, base.zoom)
        for how, iou in merges(views):
            scored: dict[bytes, dict[str, float]] = {}  # thresholds that pick the same photos score alike
            for (eb, mh), picks in decided.items():
                cfg = base.model_copy(update={"enhance_below": eb, "max_highlight": mh, "views": views,
                                              "merge": how, "merge_iou": iou})
                if picks.tobytes() not in scored:
                    scored[picks.tobytes()] = {k: mixed_score(run, picks, views, sel, how, iou).ap50
                                               for k, sel in bins.items()}
                scores = scored[picks.tobytes()]
                ok = all(np.isnan(raw_bins[k]) or scores[k] >= raw_bins[k] - 0.005 for k in bins)
                table.append({"enhance_below": eb, "max_highlight": mh, "views": list(views),
                              "merge": how, "merge_iou": iou, "cost_passes": round(cost, 2),
                              "enhanced": int(picks.sum()), "ap50": round(scores["all"], 4),
                              "bins": {k: round(v, 4) for k, v in scores.items() if k != "all"}, "ok": ok})
                key = (scores["all"] - pass_cost * (cost - 1), -int(picks.sum()))
                if ok and picks.any() and scores["all"] >= raw_bins["all"] + MIN_GAIN and (best_key is None or key > best_key):
                    best, best_key = cfg, key
    return best, table


# -- the command ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}", 2)
    if args.enhancer is None:  # gated still runs: its views without 'enhanced'
        methods = [m for m in methods if m != "always"]
    if args.tune and "raw" not in methods:
        raise UserError("--tune needs the raw method (and the single-view methods whose views it may "
                        "choose: always with an --enhancer, clahe, mirror, zoom)", exit_code=2)
    lowlight = load_lowlight(args.config)
    sets = [(name, read_set(name, path, args.limit)) for name, path in resolve_sets(args)]
    if args.tune and args.tune_on not in {n for n, _ in sets}:
        raise UserError(f"--tune-on {args.tune_on}: no such set (have {', '.join(n for n, _ in sets)})", 2)
    engines = open_engines(args)
    try:
        runs = score_all(args, methods, sets, engines, lowlight)
    finally:
        for e in [d for _, d in engines["detectors"]] + [engines["enhancer"]]:
            if e is not None:
                e.close()
    summary = build_summary(args, methods, runs, engines_names(args))
    print_table(summary)
    if args.chart:
        draw_chart(summary, Path(args.chart))
        print(f"chart: {args.chart}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def load_lowlight(path: str | None) -> Any:
    from daemon.config import ConfigError, LowLightConfig, read_yaml

    if path is None:
        return LowLightConfig()
    try:
        return LowLightConfig.model_validate(read_yaml(path).get("lowlight") or {})
    except (ConfigError, ValueError) as exc:
        raise UserError(f"--config {path}: lowlight section: {exc}", exit_code=2) from None


def read_set(name: str, path: Path, limit: int | None) -> Any:
    from engines.evaluation import DatasetError, read_labelled_set

    try:
        return read_labelled_set(path, name, limit)
    except DatasetError as exc:
        raise UserError(str(exc), exit_code=2) from None


def open_engines(args: argparse.Namespace) -> dict:
    from engines.base import EngineError
    from engines.enhancer import Enhancer
    from engines.yolo import Detector

    try:
        dets = [(Path(p).stem, Detector(p, conf=args.conf, iou=args.iou, device=args.device, multi_label=True,
                                             val_geometry=True)) for p in args.detector]
        enh = Enhancer(args.enhancer, device=args.device) if args.enhancer else None
    except (EngineError, OSError, ValueError) as exc:
        raise UserError(f"cannot open an engine: {exc}") from None
    return {"detectors": dets, "enhancer": enh}


def engines_names(args: argparse.Namespace) -> dict:
    return {"detectors": [Path(p).name for p in args.detector],
            "enhancer": Path(args.enhancer).name if args.enhancer else None}


def load_images(labelled: Any, progress) -> list[np.ndarray]:
    import cv2

    images = []
    for im in progress(labelled.images):
        img = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        if img is None:
            raise UserError(f"{im.path}: cannot be read as an image")
        images.append(img)
    return images


def progress_bar(desc: str) -> Callable[[Iterable], Iterable]:
    """A tqdm bar on stderr when it is a terminal; elsewhere one line when the loop ends."""
    def wrap(items):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None and sys.stderr.isatty():
            yield from tqdm(items, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
            return
        t0 = time.monotonic()
        n = 0
        for n, item in enumerate(items, 1):
            yield item
        print(f"{desc}: {n} photos in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return wrap


def score_all(args, methods, sets, engines, lowlight) -> dict[str, dict[str, SetRun]]:
    """{detector: {set: SetRun}}; ``gated`` last, after tuning when asked."""
    from daemon.pipeline.gate import frame_stats

    runs: dict[str, dict[str, SetRun]] = {name: {} for name, _ in engines["detectors"]}
    plain = [m for m in methods if m != "gated"]
    for set_name, labelled in sets:
        images = load_images(labelled, progress_bar(f"{set_name}: reading"))
        grey = np.array([mean_grey(im) for im in images])
        stats = [frame_stats(im, lowlight) for im in images]
        for det_name, det in engines["detectors"]:
            run_ = SetRun(set_name, labelled, grey, stats)
            for m in plain:
                if m in ("zoom", "zoom_mirror") and not can_zoom(det, lowlight.zoom):
                    print(f"{det_name}: no zoom method: its input size is fixed (export it with "
                          "--dynamic)", file=sys.stderr)
                    continue
                run_.add(m, run_pipeline(m, images, det, engines["enhancer"], lowlight,
                                         progress_bar(f"{det_name} {set_name} {m}")))
            runs[det_name][set_name] = run_
        del images
    if args.tune:
        first = engines["detectors"][0][0]
        lowlight, table = tune_gate(runs[first][args.tune_on], lowlight, args.enhancer_cost,
                                    args.pass_cost)
        args.tuned = {"on": args.tune_on, "detector": first, "enhance_below": lowlight.enhance_below,
                      "max_highlight": lowlight.max_highlight, "views": list(lowlight.views),
                      "merge": lowlight.merge, "merge_iou": lowlight.merge_iou,
                      "cost_passes": view_cost(lowlight.views, args.enhancer_cost, lowlight.zoom),
                      "pass_cost": args.pass_cost, "enhancer_cost": args.enhancer_cost, "grid": table}
        chosen = [r for r in table if (r["enhance_below"], r["max_highlight"], r["views"], r["merge"],
                                       r["merge_iou"]) == (lowlight.enhance_below, lowlight.max_highlight,
                                                           list(lowlight.views), lowlight.merge, lowlight.merge_iou)]
        if chosen:  # what the offline merge predicts; the gated run below measures it
            args.tuned["predicted_ap50"] = chosen[0]["ap50"]
        args.tuned["by_views"] = {  # the chosen thresholds with each set of views and merge: the trade-off
            "+".join(r["views"]) + f" {r['merge']}@{r['merge_iou']:g}": {
                "ap50": r["ap50"], "bins": r["bins"], "cost_passes": r["cost_passes"]}
            for r in table if (r["enhance_below"], r["max_highlight"]) == (
                lowlight.enhance_below, lowlight.max_highlight)}
        print_tuned(args.tuned)
    args.lowlight_used = lowlight
    if "gated" in methods:
        for set_name, labelled in sets:
            images = load_images(labelled, progress_bar(f"{set_name}: reading"))
            for det_name, det in engines["detectors"]:
                runs[det_name][set_name].add("gated", run_pipeline(
                    "gated", images, det, engines["enhancer"], lowlight,
                    progress_bar(f"{det_name} {set_name} gated")))
    return runs


def can_zoom(detector: Any, scale: float) -> bool:
    """Whether ``detector`` can look at photos ``scale`` times its input size (the zoom view)."""
    from engines.base import EngineError

    try:
        detector.scaled_size(scale)
    except EngineError:
        return False
    return True


# -- reporting ------------------------------------------------------------------------------------
def build_summary(args, methods, runs, names) -> dict:
    lowlight = args.lowlight_used
    results, checks = {}, {}
    for det, sets in runs.items():
        results[det], checks[det] = {}, {}
        for set_name, run_ in sets.items():
            entry = {m: {b: r.to_json() for b, r in run_.bins(m).items()} for m in methods if m in run_.matches}
            entry["enhanced"] = {m: run_.treated(m) for m in run_.results}
            entry["images"] = len(run_.labelled)
            entry["by_gate_stats"] = gate_stat_split(run_, methods, lowlight)
            results[det][set_name] = entry
            if "gated" in entry and "raw" in entry:
                checks[det][set_name] = gate_check(entry)
            share = enhancer_share(run_, lowlight)
            if share is not None:
                entry["enhancer_share"] = share
    out = {"bench": "night", "detectors": names["detectors"], "enhancer": names["enhancer"],
           "conf": args.conf, "iou": args.iou, "limit": args.limit,
           "lowlight": lowlight.model_dump(), "methods": methods, "bins": [b[0] for b in BINS],
           "results": results, "gate_checks": checks}
    if getattr(args, "tuned", None):
        out["tuned"] = {k: v for k, v in args.tuned.items() if k != "grid"}
    return out


def enhancer_share(run_: SetRun, lowlight: Any) -> dict | None:
    """What the enhancer's picture adds to the gate's rule, apart from looking more than once:
    AP50 of the rule's views merged, minus the same views with the enhanced picture replaced by
    the raw frame (the same photos picked, merged offline as the pipeline merges them). When the
    rule has no enhanced view, what adding one would give instead. ``None`` without the single-view
    results it needs (the raw and always methods)."""
    if not {"raw", "always"} <= set(run_.results):
        return None
    views = tuple(lowlight.views)
    if any(VIEW_METHOD[v] not in run_.results for v in views):
        return None
    picks = gate_picks(lowlight, run_.stats)
    if "enhanced" in views:
        with_e, without = views, tuple(dict.fromkeys("raw" if v == "enhanced" else v for v in views))
    else:
        with_e, without = tuple(dict.fromkeys(views + ("enhanced",))), views
    bins = run_.bin_masks()
    how, iou = lowlight.merge, lowlight.merge_iou
    a = {b: mixed_score(run_, picks, with_e, sel, how, iou).ap50 for b, sel in bins.items()}
    z = {b: mixed_score(run_, picks, without, sel, how, iou).ap50 for b, sel in bins.items()}
    return {"rule_has_enhanced": "enhanced" in views, "with": list(with_e), "without": list(without),
            "picked": int(picks.sum()),
            "ap50_with": {b: round(v, 4) for b, v in a.items()},
            "ap50_without": {b: round(v, 4) for b, v in z.items()},
            "share": {b: round(a[b] - z[b], 4) for b in a if not (np.isnan(a[b]) or np.isnan(z[b]))}}


def gate_stat_split(run_: SetRun, methods: list[str], lowlight: Any) -> dict:
    """AP of the dark photos split by the gate's own statistics: luma < 25 or 25 to enter_below,
    highlight fraction at most or above max_highlight (why the gate looks at highlights)."""
    luma = np.array([s.luma for s in run_.stats])
    hl = np.array([s.highlight for s in run_.stats])
    t, top = lowlight.max_highlight, lowlight.enter_below
    groups = {f"luma<25,hl<={t:g}": (luma < 25) & (hl <= t), f"luma<25,hl>{t:g}": (luma < 25) & (hl > t),
              f"luma25-{top:g},hl<={t:g}": (luma >= 25) & (luma < top) & (hl <= t),
              f"luma25-{top:g},hl>{t:g}": (luma >= 25) & (luma < top) & (hl > t)}
    return {m: {k: run_.score(m, sel).to_json() for k, sel in groups.items()}
            for m in methods if m in run_.matches}


def gate_check(entry: dict) -> dict:
    """gated - raw AP50 per bin, and whether gated is never worse than raw - 0.005 anywhere."""
    diff = {}
    for b, r in entry["raw"].items():
        g = entry["gated"][b]
        if r["images"] and r["boxes"]:
            diff[b] = round(g["ap50"] - r["ap50"], 4)
    return {"gated_minus_raw_ap50": diff, "never_worse": all(v >= -0.005 for v in diff.values())}


def print_table(summary: dict) -> None:
    bins = summary["bins"]
    head = f"{'method':8s} " + " ".join(f"{b:>17s}" for b in bins) + "  enhanced"
    for det, sets in summary["results"].items():
        for set_name, entry in sets.items():
            counts = " ".join(f"{b}={entry['raw'][b]['images'] if 'raw' in entry else '?'}" for b in bins)
            print(f"\n{det} on {set_name} ({entry['images']} photos; {counts}); AP50 / AP50-95")
            print(head)
            for m in summary["methods"]:
                if m not in entry:
                    continue
                cells = " ".join(f"{_fmt(entry[m][b]):>17s}" for b in bins)
                print(f"{m:8s} {cells}  {entry['enhanced'].get(m, 0):>8d}")
    for det, sets in summary["results"].items():
        for set_name, entry in sets.items():
            sh = entry.get("enhancer_share")
            if sh:
                what = "share of the enhanced view in" if sh["rule_has_enhanced"] else "an enhanced view would add to"
                print(f"{det} on {set_name}: {what} {'+'.join(sh['with'])}: "
                      f"AP50 {sh['ap50_with']['all']:.4f} with vs {sh['ap50_without']['all']:.4f} without "
                      f"({sh['share'].get('all', float('nan')):+.4f}; darkest bin "
                      f"{sh['share'].get('grey<25', float('nan')):+.4f})")
    for det, sets in summary.get("gate_checks", {}).items():
        bad = [s for s, c in sets.items() if not c["never_worse"]]
        print(f"\n{det}: gated >= raw - 0.005 on every set and bin: "
              + ("yes" if not bad else "NO (" + ", ".join(bad) + ")"))


def _fmt(r: dict) -> str:
    if not r["boxes"]:
        return "-"
    return f"{r['ap50']:.3f} / {r['ap50_95']:.3f}"


def print_tuned(t: dict) -> None:
    print(f"\ngate tuned on {t['on']} with {t['detector']} (each view's results, merged as the "
          "daemon merges them):", file=sys.stderr)
    ok = [row for row in t["grid"] if row["ok"]]
    for row in sorted(t["grid"], key=lambda r: -r["ap50"])[:12]:
        print(f"  enhance_below {row['enhance_below']:5.1f}  max_highlight {row['max_highlight']:6.3f}  "
              f"views {'+'.join(row['views']):20s} {row['merge']}@{row['merge_iou']:g}  "
              f"enhanced {row['enhanced']:4d}  AP50 {row['ap50']:.4f}  "
              f"{'ok' if row['ok'] else 'worse than raw in a bin'}", file=sys.stderr)
    print(f"chosen: lowlight.enhance_below {t['enhance_below']}, lowlight.max_highlight {t['max_highlight']}, "
          f"lowlight.views {t['views']}, lowlight.merge {t['merge']}, lowlight.merge_iou {t['merge_iou']:g}; "
          f"{t['cost_passes']:g} detector passes per picked frame ({len(ok)} of {len(t['grid'])} rules "
          "never worse than raw)")


def draw_chart(summary: dict, path: Path) -> None:
    """AP50 bars: one panel per detector, one group per set and bin, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dets = list(summary["results"])
    fig, axes = plt.subplots(len(dets), 1, figsize=(14, 3.6 * len(dets)), squeeze=False)
    for ax, det in zip(axes[:, 0], dets):
        groups = [(s, b) for s, e in summary["results"][det].items() for b in summary["bins"]
                  if "raw" in e and e["raw"][b]["boxes"]
                  and (b == "all" or 10 <= e["raw"][b]["images"] < e["images"])]  # no copy of 'all'
        methods = summary["methods"]
        width = 0.8 / len(methods)
        x = np.arange(len(groups))
        for k, m in enumerate(methods):
            vals = [summary["results"][det][s].get(m, {}).get(b, {}).get("ap50") for s, b in groups]
            vals = [np.nan if v is None else v for v in vals]
            ax.bar(x + (k - (len(methods) - 1) / 2) * width, vals, width, label=m)
        ax.set_xticks(x, [f"{s}\n{b} ({summary['results'][det][s]['raw'][b]['images']})" for s, b in groups],
                      fontsize=7)
        ax.set_ylabel("AP50")
        ax.set_title(f"{det}: AP50 by set and raw-photo brightness (photos per bin in brackets)", fontsize=9)
        ax.legend(fontsize=7, ncol=len(methods))
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
