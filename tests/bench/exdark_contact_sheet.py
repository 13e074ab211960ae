"""Contact sheet: ExDark val photos, raw beside enhanced beside the daemon's merged views,
with the detector's boxes drawn.

    python tests/bench/exdark_contact_sheet.py --detector yolo11n.onnx --enhancer denoiser.onnx \
        --out docs/img/exdark_contact_sheet.jpg

Picks ``--rows`` labelled photos of ``exdark_dev/val`` spread over brightness (evenly spaced in
the order of their mean grey level), runs the detector (``--conf``, default 0.25, as the daemon)
on the raw photo, on the enhancer's output, and on the default low-light views merged as the
daemon merges them (`lowlight.views`, drawn on the enhanced picture, as snapshots show it), and
draws per row: raw | enhanced | views merged. Detections of
ExDark's 12 classes are drawn in green (class and score), the labelled boxes thin in white.
Each panel says its mean grey level and how many detections match a labelled box (IoU >= 0.5,
same class).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from daemon.config import LowLightConfig
from daemon.pipeline.views import in_frame, merge, picture
from engines.enhancer import Enhancer
from engines.evaluation import EXDARK_COCO_IDS, box_iou, read_labelled_set
from engines.yolo import Detector

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PANEL_H = 300


def pick(labelled, rows: int) -> list:
    """``rows`` photos with labelled boxes, evenly spaced in the order of their mean grey."""
    photos = [im for im in labelled.images if len(im.boxes)]
    grey = [cv2.imread(str(im.path), cv2.IMREAD_GRAYSCALE).mean() for im in photos]
    order = np.argsort(grey)
    idx = np.linspace(0, len(order) - 1, rows).round().astype(int)
    return [photos[order[i]] for i in idx]


def hits(det, im) -> int:
    """Detections (ExDark classes) that match a labelled box of the same class at IoU >= 0.5."""
    keep = np.isin(det.class_ids, EXDARK_COCO_IDS)
    if not keep.any() or not len(im.boxes):
        return 0
    iou = box_iou(det.boxes[keep], im.boxes)
    same = det.class_ids[keep][:, None] == im.classes[None, :]
    return int(((iou >= 0.5) & same).any(axis=1).sum())


def draw(image: np.ndarray, det, im, label: str) -> np.ndarray:
    out = image.copy()
    for b in im.boxes.astype(int):
        cv2.rectangle(out, tuple(b[:2]), tuple(b[2:]), (255, 255, 255), 1)
    for b, s, c, n in zip(det.boxes.astype(int), det.scores, det.class_ids, det.names):
        if c not in EXDARK_COCO_IDS:
            continue
        cv2.rectangle(out, tuple(b[:2]), tuple(b[2:]), (0, 255, 0), 2)
        cv2.putText(out, f"{n} {s:.2f}", (b[0] + 2, max(12, b[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (0, 255, 0), 1, cv2.LINE_AA)
    scale = PANEL_H / out.shape[0]
    out = cv2.resize(out, (int(out.shape[1] * scale), PANEL_H), interpolation=cv2.INTER_AREA)
    cv2.rectangle(out, (0, 0), (out.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(out, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
    return out


def row(raw: np.ndarray, enhanced: np.ndarray, det_raw, det_enh, det_views, im) -> np.ndarray:
    n = len(im.boxes)
    grey = lambda x: cv2.cvtColor(x, cv2.COLOR_BGR2GRAY).mean()  # noqa: E731
    gap = np.zeros((PANEL_H, 6, 3), np.uint8)
    a = draw(raw, det_raw, im, f"raw  grey {grey(raw):.0f}  matched {hits(det_raw, im)}/{n}  {im.stem}")
    b = draw(enhanced, det_enh, im, f"enhanced  grey {grey(enhanced):.0f}  matched {hits(det_enh, im)}/{n}")
    c = draw(enhanced, det_views, im, f"{'+'.join(VIEWS)} merged  matched {hits(det_views, im)}/{n}")
    return np.hstack([a, gap, b, gap, c])


VIEWS = LowLightConfig().views


def merged_views(det, raw: np.ndarray, enhanced: np.ndarray):
    """What the daemon detects on a low-light frame: every default view, boxes merged."""
    found = det([picture(v, raw, enhanced) for v in VIEWS])
    return merge([in_frame(v, d, raw.shape[1]) for v, d in zip(VIEWS, found)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--detector", required=True, help="detector engine (duskwatch export yolo ...)")
    p.add_argument("--enhancer", required=True, help="enhancer engine (duskwatch export denoiser ...)")
    p.add_argument("--data", default=str(DATA / "exdark_dev" / "val"), help="labelled set (ExDark val)")
    p.add_argument("--rows", type=int, default=6)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--out", default="docs/img/exdark_contact_sheet.jpg")
    args = p.parse_args(argv)
    labelled = read_labelled_set(args.data)
    with Detector(args.detector, conf=args.conf) as det, Enhancer(args.enhancer) as enh:
        rows = []
        for im in pick(labelled, args.rows):
            raw = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
            enhanced = enh([raw])[0]
            d_raw, d_enh = det([raw, enhanced]) if raw.shape == enhanced.shape else (det([raw])[0], det([enhanced])[0])
            d_views = merged_views(det, raw, enhanced)
            rows.append(row(raw, enhanced, d_raw, d_enh, d_views, im))
            print(f"{im.stem}: raw {hits(d_raw, im)}/{len(im.boxes)}, enhanced {hits(d_enh, im)}/"
                  f"{len(im.boxes)}, views {hits(d_views, im)}/{len(im.boxes)}")
    width = max(r.shape[1] for r in rows)
    sheet = np.vstack([np.pad(r, ((0, 6), (0, width - r.shape[1]), (0, 0))) for r in rows])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
