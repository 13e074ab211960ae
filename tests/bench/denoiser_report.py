"""Measurements and pictures for docs/DENOISER.md and docs/BENCHMARKS.md (the denoiser section).

    python tests/bench/denoiser_report.py grid      # docs/img/degradation_grid.jpg
    python tests/bench/denoiser_report.py quality --teacher T.pt --student 1=K1.pt --student 2=K2.pt ...
    python tests/bench/denoiser_report.py temporal --engine denoiser_k2.onnx [--frames 60]
    python tests/bench/denoiser_report.py real --engine denoiser_k2.onnx   # no-reference stats + contact sheet
    python tests/bench/denoiser_report.py detection --enhancer denoiser_k2.onnx --detector yolo11n.onnx \
        [--detector yolov8n.onnx] [--data exdark_dev/val] [--darken 0.05]   # AP raw vs enhanced
    python tests/bench/denoiser_report.py sheet --enhancer denoiser_k2.onnx --detector yolo11n.onnx
    python tests/bench/denoiser_report.py people --engine denoiser_k2.onnx   # the picture for people

Each prints a JSON summary as its last line. Data come from ../shared/data (never committed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
IMG = ROOT / "docs" / "img"


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.48, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def cmd_grid(args) -> dict:
    from export import degrade as dg

    names = ["BSD100_img_013.jpg", "Urban100_img_004.jpg", "Sun-Hays80_img_010.jpg"]
    files = [DATA / "images" / "clean" / n for n in names]
    files = [f for f in files if f.is_file()] or sorted((DATA / "images" / "clean").glob("*.jpg"))[:3]
    levels = [("exposure 0.3", dict(exposure=0.3, shot=1e-3)), ("exposure 0.1", dict(exposure=0.1, shot=3e-3)),
              ("exposure 0.03", dict(exposure=0.03, shot=6e-3)), ("exposure 0.01", dict(exposure=0.01, shot=0.012)),
              ("IR mono, exp. 0.05", dict(exposure=0.05, shot=6e-3, mono=True))]
    rows = []
    for i, f in enumerate(files):
        bgr = cv2.imread(str(f))
        s = max(220 / bgr.shape[0], 290 / bgr.shape[1])
        bgr = cv2.resize(bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)[:220, :290]
        cells = [_label(bgr, "clean")]
        for name, kw in levels:
            p = dg.DegradeParams(read=dg.read_from_shot(kw["shot"]), jpeg_quality=60, **kw)
            cells.append(_label(dg.degrade_bgr_u8(bgr, p, np.random.default_rng(i)), name))
        rows.append(np.hstack(cells))
    out = IMG / "degradation_grid.jpg"
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return {"grid": str(out.relative_to(ROOT))}


def cmd_quality(args) -> dict:
    import torch

    from export.denoiser import common, data
    from export.denoiser.model import DiffusionConfig, EnhancerGraph, load_checkpoint

    torch.set_num_threads(args.threads)
    _, val = data.load_split(DATA / "images" / "clean")
    ys, xs = data.validation_pairs(val, 256)
    res = {"val_images": len(val), "dark_input": common.score(ys, xs)}
    teacher, meta = load_checkpoint(args.teacher)
    diff = DiffusionConfig(**meta["diffusion"])
    for k in sorted({1, 2, 4, diff.T}):
        t0 = time.perf_counter()
        out = common.run_batched(EnhancerGraph(teacher, diff, k), ys, torch.device("cpu"))
        res[f"teacher_K{k}"] = {**common.score(out, xs), "seconds": round(time.perf_counter() - t0, 1)}
    for spec in args.student:
        k, path = spec.split("=", 1)
        net, smeta = load_checkpoint(path)
        out = common.run_batched(EnhancerGraph(net, DiffusionConfig(**smeta["diffusion"]), int(k)), ys, torch.device("cpu"))
        res[f"student_K{k}"] = common.score(out, xs)
    return res


def _frames(n: int, width: int):
    cap = cv2.VideoCapture(str(DATA / "video" / "vtest.avi"))
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, (width, round(f.shape[0] * width / f.shape[1])), interpolation=cv2.INTER_AREA))
    cap.release()
    if not frames:
        raise SystemExit("vtest.avi could not be read")
    return frames


def _mean_change(frames) -> float:
    return float(np.mean([np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() for a, b in zip(frames[1:], frames[:-1])]))


def cmd_temporal(args) -> dict:
    from engines.enhancer import Enhancer
    from export import degrade as dg
    from export.denoiser.common import psnr

    clean = _frames(args.frames, args.width)
    params = dg.sample_params(np.random.default_rng(args.seed), exposure=args.exposure, mono=False)
    dark = [dg.degrade_bgr_u8(f, params, np.random.default_rng([args.seed, i])) for i, f in enumerate(clean)]
    with Enhancer(args.engine, device="cpu") as enh:  # the model alone: every frame enhanced by itself
        bright = [enh([d])[0] for d in dark]
    with Enhancer(args.engine, device="cpu", temporal=True) as enh:  # with the per-stream temporal pre-filter
        filt = [enh([d], streams=["vtest"])[0] for d in dark]
        # reference for real motion: the same darkening without sensor noise, each frame enhanced
        # alone (no filter): the change an enhancer that removed all noise and kept all motion gives
        quiet = dataclasses.replace(params, shot=1e-12, read=1e-12)
        ref = [enh([dg.degrade_bgr_u8(f, quiet, np.random.default_rng([args.seed, i]))])[0]
               for i, f in enumerate(clean)]
    c, d, r = _mean_change(clean), _mean_change(dark), _mean_change(ref)

    def _psnr(outs):
        return round(float(np.mean([psnr(b[..., ::-1].transpose(2, 0, 1) / 255.0, f[..., ::-1].transpose(2, 0, 1) / 255.0)
                                    for b, f in zip(outs, clean)])), 2)

    strip = np.hstack([_label(clean[len(clean) // 2], "clean"), _label(dark[len(dark) // 2], f"darkened x{args.exposure}"),
                       _label(bright[len(bright) // 2], "enhanced"), _label(filt[len(filt) // 2], "filter + enhanced")])
    cv2.imwrite(str(IMG / "temporal_vtest.jpg"), cv2.resize(strip, None, fx=0.5, fy=0.5), [cv2.IMWRITE_JPEG_QUALITY, 85])
    e, ef = _mean_change(bright), _mean_change(filt)
    return {"frames": len(clean), "size": list(clean[0].shape[:2]), "exposure": args.exposure, "params": params.__dict__,
            "clean_change": round(c, 3), "dark_change": round(d, 3),
            "noise_free_dark_enhanced_change": round(r, 3),
            "model_alone": {"enhanced_change": round(e, 3), "ratio_enhanced_over_clean": round(e / c, 3),
                            "enhanced_psnr_vs_clean": _psnr(bright)},
            "with_temporal_filter": {"enhanced_change": round(ef, 3), "ratio_enhanced_over_clean": round(ef / c, 3),
                                     "enhanced_psnr_vs_clean": _psnr(filt)}}


def _noise_sigma(y: np.ndarray) -> float:
    """Immerkaer 1996, "Fast Noise Variance Estimation": Laplacian-difference mask, mean |response|."""
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(y, -1, m)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6) if r.size else 0.0


def _noref(bgr: np.ndarray) -> dict:
    y = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    hist = np.bincount((y * 255).astype(np.uint8).ravel(), minlength=256) / y.size
    hist = hist[hist > 0]
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    return {"mean_luma": float(y.mean()), "rms_contrast": float(y.std()), "entropy_bits": float(-(hist * np.log2(hist)).sum()),
            "noise_sigma": _noise_sigma(y), "chroma": float(np.hypot(lab[..., 1] - 128, lab[..., 2] - 128).mean() / 255)}


def cmd_real(args) -> dict:
    from engines.enhancer import Enhancer

    res, sheet = {}, []
    with Enhancer(args.engine, device="cpu") as enh:
        for ds in ("DICM", "LIME"):
            before, after = [], []
            files = sorted((DATA / "images" / "lowlight_real" / ds).iterdir())
            t0 = time.perf_counter()
            for i, f in enumerate(files):
                img = cv2.imread(str(f))
                if img is None:
                    continue
                s = min(1.0, args.max_side / max(img.shape[:2]))
                if s < 1:
                    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                out = enh([img])[0]
                before.append(_noref(img))
                after.append(_noref(out))
                if f.stem in args.sheet.get(ds, []):
                    sheet.append((img, out, f"{ds} {f.name}"))
            res[ds] = {"images": len(before), "seconds": round(time.perf_counter() - t0, 1),
                       "before": {k: round(float(np.mean([b[k] for b in before])), 4) for k in before[0]},
                       "after": {k: round(float(np.mean([a[k] for a in after])), 4) for k in after[0]}}
    rows = []
    for img, out, name in sheet:
        h = 200
        a = cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_AREA)
        b = cv2.resize(out, (a.shape[1], h), interpolation=cv2.INTER_AREA)
        rows.append(np.hstack([_label(a, name), _label(b, "enhanced (K=2)")]))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
    pairs = [np.hstack([rows[i], rows[i + 1]]) if i + 1 < len(rows) else np.hstack([rows[i], np.zeros_like(rows[i])]) for i in range(0, len(rows), 2)]
    cv2.imwrite(str(IMG / "contact_sheet_real.jpg"), np.vstack(pairs), [cv2.IMWRITE_JPEG_QUALITY, 82])
    return res


def cmd_speed(args) -> dict:
    """Side-by-side latency, interleaved: one inference of each engine in turn, for ``--seconds``.

    ``duskwatch bench engine`` times engines one after the other; on a shared machine whose load
    changes by the second that can favour either. Round-robin gives every engine the same load.
    """
    import time

    import onnxruntime as ort

    sessions = []
    for path in args.engine:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        # idle sessions must not spin-wait: their pools would steal the cores of the one running
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {s.get_inputs()[0].name: np.random.default_rng(0).random((1, 3, args.imgsz, args.imgsz), np.float32)}
        for _ in range(3):
            s.run(None, feed)
        sessions.append((path, s, feed, []))
    t_end = time.monotonic() + args.seconds
    while time.monotonic() < t_end:
        for _, s, feed, times in sessions:
            t0 = time.perf_counter()
            s.run(None, feed)
            times.append((time.perf_counter() - t0) * 1000)
    base = float(np.median(sessions[0][3]))
    return {"imgsz": args.imgsz, "threads": args.threads, "rounds": len(sessions[0][3]),
            "engines": [{"engine": p, "p50_ms": round(float(np.median(t)), 2), "p90_ms": round(float(np.percentile(t, 90)), 2),
                         "p50_vs_first": round(float(np.median(t)) / base, 3)} for p, _, _, t in sessions]}


def _night_set(args):
    """(labelled set, BGR frames): the photos as they are, or darkened by the global degradation
    model at ``--darken`` (seeded by the file name; all noise types, JPEG, IR mode as sampled)."""
    import zlib

    from engines.evaluation import read_labelled_set
    from export import degrade as dg

    labelled = read_labelled_set(args.data, limit=args.limit)
    frames = []
    for im in labelled.images:
        bgr = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        if args.darken:
            rgb = bgr[..., ::-1].astype(np.float32) / 255.0
            dark, _, _ = dg.degrade_seeded(rgb, zlib.crc32(im.path.name.encode()), exposure=args.darken)
            bgr = np.ascontiguousarray(dg.quantize_u8(dark)[..., ::-1])
        frames.append(bgr)
    return labelled, frames


def cmd_detection(args) -> dict:
    """COCO AP50 / AP50-95 of each detector on the raw frames and on every frame enhanced, through
    the daemon's engines (engines.enhancer.Enhancer, engines.yolo.Detector at ultralytics' val
    settings conf 0.001 / IoU 0.7) and engines.evaluation; also per brightness bin (mean grey)."""
    from engines.base import open_engine
    from engines.enhancer import Enhancer
    from engines.evaluation import match_image, summarize
    from engines.yolo import Detector

    labelled, raw = _night_set(args)
    with Enhancer(open_engine(args.enhancer, "cpu", threads=args.threads)) as enh:
        t0 = time.perf_counter()
        enhanced = [enh([f])[0] for f in raw]
        enh_s = (time.perf_counter() - t0) / len(raw)
    grey = np.array([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).mean() for f in raw])
    bins = {"all": np.ones(len(raw), bool), "grey<25": grey < 25, "25-50": (grey >= 25) & (grey < 50),
            "grey>=50": grey >= 50}
    out = {"data": str(args.data), "darken": args.darken, "images": len(raw), "enhancer": args.enhancer,
           "enhance_ms_per_image": round(1000 * enh_s, 1), "bins_images": {k: int(v.sum()) for k, v in bins.items()},
           "mean_grey": {"raw": round(float(grey.mean()), 1),
                         "enhanced": round(float(np.mean([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).mean() for f in enhanced])), 1)}}
    for det_path in args.detector:
        with Detector(open_engine(det_path, "cpu", threads=args.threads), conf=0.001, iou=0.7) as det:
            res = {}
            for name, frames in (("raw", raw), ("enhanced", enhanced)):
                dets = [det([f])[0] for f in frames]
                matches = [match_image(d.boxes, d.scores, d.class_ids, im.boxes, im.classes, labelled.classes)
                           for d, im in zip(dets, labelled.images)]
                res[name] = {b: summarize([m for m, k in zip(matches, sel) if k], labelled.classes).to_json()
                             for b, sel in bins.items() if sel.any()}
        out[Path(det_path).name] = res
    return out


def cmd_sheet(args) -> dict:
    """docs/img/exdark_val_enhanced.jpg: exdark_dev/val photos, raw (left) and enhanced (right),
    with the detector's boxes (conf 0.25) of the 12 ExDark classes drawn on each."""
    from engines.enhancer import Enhancer
    from engines.evaluation import EXDARK_COCO_IDS, read_labelled_set
    from engines.yolo import Detector

    labelled = read_labelled_set(args.data)
    picked = [im for im in labelled.images if im.stem in args.stems] if args.stems else list(labelled.images[:: max(1, len(labelled) // 6)])[:6]
    rows = []
    with Enhancer(args.enhancer, "cpu") as enh, Detector(args.detector, conf=0.25, iou=0.45, device="cpu") as det:
        for im in picked:
            raw = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
            pair = []
            for tag, frame in (("raw", raw), ("enhanced", enh([raw])[0])):
                d = det([frame])[0]
                out = frame.copy()
                for b, c in zip(d.boxes.astype(int), d.class_ids):
                    if int(c) in EXDARK_COCO_IDS:
                        cv2.rectangle(out, tuple(b[:2]), tuple(b[2:]), (0, 255, 0), 2)
                out = cv2.resize(out, (384, round(384 * out.shape[0] / out.shape[1])))
                pair.append(_label(out, f"{im.stem} {tag}: {sum(int(c) in EXDARK_COCO_IDS for c in d.class_ids)} boxes"))
            h = max(p.shape[0] for p in pair)
            rows.append(np.concatenate([cv2.copyMakeBorder(p, 0, h - p.shape[0], 0, 0, cv2.BORDER_CONSTANT) for p in pair], 1))
    sheet = np.concatenate(rows, 0)
    out = IMG / "exdark_val_enhanced.jpg"
    cv2.imwrite(str(out), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return {"sheet": str(out), "photos": [im.stem for im in picked]}


def _grey(bgr: np.ndarray) -> float:
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).mean())


def _clipped(bgr: np.ndarray) -> float:
    """Fraction of pixels with a channel at 250 or above (blown out)."""
    return float((bgr.max(axis=2) >= 250).mean())


def _cast(bgr: np.ndarray) -> tuple[float, float]:
    """Mean Lab a* and b* (0 = neutral): a colour cast moves them."""
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    return float(lab[..., 1].mean() - 128), float(lab[..., 2].mean() - 128)


def cmd_people(args) -> dict:
    """The enhancer's picture for people, through the exported engine and the daemon's Enhancer:
    PSNR / SSIM (RGB, no GT-mean rescaling; and with it, as a diagnosis) on the held-out LOL
    pairs (the training split's own validation pairs, scenes never trained on, full 600 x 400
    frames); on exdark_dev/val photos darker than grey 50, the
    output's mean grey, the rise of blown-out pixels and the colour cast (Lab a*, b*)."""
    from engines.enhancer import Enhancer
    from export.denoiser import common, data

    _, val = data.load_split(DATA / "lol_train", 0.1, 600)
    res: dict = {"lol_val_pairs": len(val), "lol_val_scenes": len(set(data.scene_groups(val)))}
    chw = lambda bgr: bgr[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0  # noqa: E731
    to_bgr = lambda rgb: np.ascontiguousarray((rgb[..., ::-1] * 255).round().astype(np.uint8))  # noqa: E731
    lows, highs = [to_bgr(p.low) for p in val], [to_bgr(p.rgb) for p in val]
    with Enhancer(args.engine, device="cpu") as enh:
        outs = [enh([im])[0] for im in lows]
        for name, pics in (("identity", lows), ("enhanced", outs)):
            sc = common.score(np.stack([chw(o) for o in pics]), np.stack([chw(h) for h in highs]))
            da = [abs(_cast(o)[0] - _cast(h)[0]) for o, h in zip(pics, highs)]
            db = [abs(_cast(o)[1] - _cast(h)[1]) for o, h in zip(pics, highs)]
            # each picture scaled to its normal shot's mean brightness: what is left once the
            # exposure (which a new scene's normal shot does not reveal) is given
            matched = [np.clip(o * (h.mean() / max(float(o.mean()), 1e-6)), 0, 255) for o, h in zip(pics, highs)]
            gt_mean = common.score(np.stack([chw(o) for o in matched]), np.stack([chw(h) for h in highs]))["psnr"]
            res[f"lol_val_{name}"] = {"psnr": round(sc["psnr"], 2), "ssim": round(sc["ssim"], 3),
                                      "psnr_gt_mean": round(gt_mean, 2),
                                      "cast_vs_gt_abs_da": round(float(np.mean(da)), 2),
                                      "cast_vs_gt_abs_db": round(float(np.mean(db)), 2)}
        files = sorted((DATA / "exdark_dev" / "val" / "images").glob("*"))
        grey_in, grey_out, clip_rise, casts = [], [], [], []
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None or _grey(img) >= 50:
                continue
            out = enh([img])[0]
            grey_in.append(_grey(img))
            grey_out.append(_grey(out))
            clip_rise.append(100 * (_clipped(out) - _clipped(img)))
            casts.append(_cast(out))
    g = np.array(grey_out)
    res["exdark_val_dark"] = {
        "photos": len(g), "grey_in_mean": round(float(np.mean(grey_in)), 1),
        "grey_out_mean": round(float(g.mean()), 1), "grey_out_median": round(float(np.median(g)), 1),
        "grey_out_in_80_140": round(float(np.mean((g >= 80) & (g <= 140))), 3),
        "clipped_rise_points_mean": round(float(np.mean(clip_rise)), 3),
        "clipped_rise_points_max": round(float(np.max(clip_rise)), 3),
        "cast_a_mean": round(float(np.mean([c[0] for c in casts])), 2),
        "cast_b_mean": round(float(np.mean([c[1] for c in casts])), 2)}
    if args.sheet_out:
        rows = []
        for low, out, high in list(zip(lows, outs, highs))[:: max(1, len(lows) // 4)][:4]:
            rows.append(np.hstack([_label(cv2.resize(x, (300, 200)), t) for x, t in
                                   ((low, "LOL low (held out)"), (out, "enhanced K=2"), (high, "normal light"))]))
        cv2.imwrite(args.sheet_out, np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
        res["sheet"] = args.sheet_out
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("grid")
    q = sub.add_parser("quality")
    q.add_argument("--teacher", required=True)
    q.add_argument("--student", action="append", default=[], help="K=path")
    q.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("temporal")
    t.add_argument("--engine", required=True)
    t.add_argument("--frames", type=int, default=60)
    t.add_argument("--width", type=int, default=640)
    t.add_argument("--exposure", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("real")
    r.add_argument("--engine", required=True)
    r.add_argument("--max-side", type=int, default=1024)
    sp = sub.add_parser("speed", help="interleaved latency; the first --engine is the reference (YOLO11n)")
    sp.add_argument("--engine", action="append", required=True)
    sp.add_argument("--imgsz", type=int, default=640)
    sp.add_argument("--seconds", type=float, default=30)
    sp.add_argument("--threads", type=int, default=2)
    d = sub.add_parser("detection", help="AP raw vs enhanced on labelled photos (real or darkened)")
    d.add_argument("--enhancer", required=True)
    d.add_argument("--detector", action="append", required=True, help="YOLO ONNX engine(s)")
    d.add_argument("--data", default=str(DATA / "exdark_dev" / "val"))
    d.add_argument("--darken", type=float, help="darken with the global degradation model at this exposure")
    d.add_argument("--limit", type=int)
    d.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    sh = sub.add_parser("sheet", help="exdark_dev/val raw vs enhanced with boxes")
    sh.add_argument("--enhancer", required=True)
    sh.add_argument("--detector", required=True)
    sh.add_argument("--data", default=str(DATA / "exdark_dev" / "val"))
    sh.add_argument("--stems", nargs="*")
    pe = sub.add_parser("people", help="the picture for people: LOL held-out pairs, ExDark brightness/clipping/cast")
    pe.add_argument("--engine", required=True)
    pe.add_argument("--sheet-out", default=str(IMG / "lol_val_enhanced.jpg"))
    args = p.parse_args()
    args.sheet = {"DICM": ["01", "05", "12", "23", "34", "47"], "LIME": ["1", "3", "7", "10"]}
    IMG.mkdir(parents=True, exist_ok=True)
    res = {"grid": cmd_grid, "quality": cmd_quality, "temporal": cmd_temporal, "real": cmd_real,
           "speed": cmd_speed, "detection": cmd_detection, "sheet": cmd_sheet, "people": cmd_people}[args.what](args)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
