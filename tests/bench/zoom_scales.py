"""How far views of one detector can go: the dark photos of an ExDark split detected as they
are and mirrored, at several scales, merged in every combination the daemon could be configured
to make, gated as the defaults gate, scored as ``bench night`` scores.

    python tests/bench/zoom_scales.py runs/yolo11n.onnx val      # or train; the cache makes reruns instant

Each photo is detected once per (view, scale) and the detections are cached; the combinations
are merged offline with the pipeline's own ``merge`` (WBF at 0.55 and NMS at 0.5), photos the
gate leaves alone keep their raw detections. Combinations with two zoom scales are not a daemon
setting (``lowlight.zoom`` is one scale): this measures whether they would be worth one.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import cv2

from daemon.bench.night import PhotoResult, gate_picks, match_all
from daemon.config import LowLightConfig
from daemon.pipeline.gate import frame_stats
from daemon.pipeline.views import merge, mirror, unmirror
from engines.evaluation import read_labelled_set, summarize
from engines.yolo import Detector

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "exdark_dev"
SCALES = (1.0, 0.8, 0.75, 0.65, 0.6, 0.5)
EXTRA = ([], [0.8], [0.75], [0.65], [0.6], [0.5], [0.75, 0.6], [0.8, 0.65], [0.8, 0.6], [0.75, 0.5],
         [0.8, 0.65, 0.5])


def detect_all(engine: str, labelled, lowlight) -> dict:
    det = Detector(engine, conf=0.001, iou=0.7, device="cpu", multi_label=True, val_geometry=True)
    res, stats = {}, []
    for i, im in enumerate(labelled.images):
        img = cv2.imread(str(im.path), cv2.IMREAD_COLOR)
        stats.append(frame_stats(img, lowlight))
        for s in SCALES:
            res[("raw", s, i)] = det([img], scale=s)[0]
            res[("mirror", s, i)] = unmirror(det([mirror(img)], scale=s)[0], img.shape[1])
        if i % 50 == 0:
            print(f"{i}/{len(labelled.images)} photos", file=sys.stderr, flush=True)
    res["picks"] = gate_picks(lowlight, stats)
    return res


def main(engine: str, split: str) -> int:
    lowlight = LowLightConfig()
    labelled = read_labelled_set(DATA / split, split, None)
    cache = Path(f"/tmp/zoom_scales_{Path(engine).stem}_{split}.pkl")
    if cache.exists():
        res = pickle.loads(cache.read_bytes())
    else:
        res = detect_all(engine, labelled, lowlight)
        cache.write_bytes(pickle.dumps(res))
    n, picks = len(labelled.images), res["picks"]

    def ap50(dets) -> float:
        return summarize(match_all(labelled, [PhotoResult(d, True) for d in dets]), labelled.classes).ap50

    raw = [res[("raw", 1.0, i)] for i in range(n)]
    base = ap50(raw)
    print(f"{engine} {split}: {n} photos, {int(picks.sum())} picked by the gate, raw AP50 {base:.4f}")
    print("zoom scales beside [raw, mirror] | merge | passes per dark frame | AP50 | gain")
    for extra in EXTRA:
        views = [("raw", 1.0), ("mirror", 1.0)] + [(v, s) for s in extra for v in ("raw", "mirror")]
        passes = 2 + 2 * sum(s * s for s in extra)
        for how, iou in (("wbf", 0.55), ("nms", 0.5)):
            merged = [merge([res[(v, s, i)] for v, s in views], iou, how=how) if picks[i] else raw[i]
                      for i in range(n)]
            a = ap50(merged)
            print(f"{'+'.join(f'{s:g}' for s in extra) or '-'} | {how} {iou:g} | {passes:.2f} | {a:.4f} | {a - base:+.4f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "val"))
