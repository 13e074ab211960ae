"""Is the int8 detector as good as the f32 one on this box's frames? Checked with no labels:
the f32 detector's boxes on held-out frames of the cameras are the reference, and the int8
detector's boxes are matched to them (same class, IoU >= 0.5, greedy by confidence:
:func:`engines.evaluation.match_image`) at the confidence threshold the daemon runs at.

The figure is the *box agreement*, an F1 score: recall = the share of f32's boxes (score >=
``conf``) that int8 finds, precision = the share of int8's boxes (score >= ``conf``) that f32
finds, each side allowed a score down to ``SCORE_BAND * conf`` (a box scored 0.26 by f32 and
0.24 by int8 is the same box, not a miss). AP50 is not the gate: it ranks scores and ignores the
operating threshold, so an int8 IR calibrated on noise, which loses 87% of f32's boxes at 0.25,
still scored 0.97 pooled AP50 against f32 (docs/BENCHMARKS.md, "int8 on a CPU without bf16",
where :data:`MIN_AGREEMENT` and :data:`MIN_BOXES` are measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engines.evaluation import match_image

#: box agreement (F1) of int8 against f32 that an int8 IR must reach (docs/BENCHMARKS.md)
MIN_AGREEMENT = 0.95
#: a box scored at least this share of the threshold on the other side still counts as found
SCORE_BAND = 0.8
#: fewer reference boxes than this on the check frames: too few to judge (dark cameras)
MIN_BOXES = 20


class Cancelled(Exception):
    """The check was cancelled (the daemon is stopping)."""


@dataclass(frozen=True)
class CheckResult:
    agreement: float | None  # None when there was nothing to judge by
    recall: float | None
    precision: float | None
    frames: int
    reference_boxes: int
    min_agreement: float
    min_boxes: int
    passed: bool
    reason: str

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("agreement", "recall", "precision"):
            out[key] = None if out[key] is None else round(out[key], 4)
        return out


def _above(det, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    keep = np.asarray(det.scores) >= threshold
    return np.asarray(det.boxes)[keep], np.asarray(det.scores)[keep], np.asarray(det.class_ids)[keep]


def _found(preds, truth) -> int:
    """How many of ``preds`` (boxes, scores, classes) match a box of ``truth`` at IoU 0.5."""
    m = match_image(*preds, truth[0], truth[2])
    return int(m.tp[:, 0].sum())


def agreement(reference: Sequence, candidate: Sequence, conf: float,
              band: float = SCORE_BAND) -> tuple[float | None, float | None, float | None, int]:
    """(F1, recall, precision, reference boxes) of ``candidate`` detections against
    ``reference`` ones (per frame, ``engines.detections.Detections``) at threshold ``conf``;
    None figures when the reference has no box."""
    low = conf * band
    ref_n = cand_n = recalled = precise = 0
    for r, c in zip(reference, candidate):
        ref_hi, cand_hi = _above(r, conf), _above(c, conf)
        ref_n += len(ref_hi[0])
        cand_n += len(cand_hi[0])
        recalled += _found(_above(c, low), ref_hi)
        precise += _found(cand_hi, _above(r, low))
    if ref_n == 0:
        return None, None, None, 0
    recall = recalled / ref_n
    precision = precise / cand_n if cand_n else 0.0
    f1 = 2 * recall * precision / (recall + precision) if recall + precision else 0.0
    return f1, recall, precision, ref_n


def check(images: Sequence[Path], f32: Callable, int8: Callable, conf: float = 0.25,
          min_agreement: float = MIN_AGREEMENT, min_boxes: int = MIN_BOXES,
          cancelled: Callable[[], bool] = lambda: False) -> CheckResult:
    """Run both detectors (callables: list of BGR images -> list of Detections, opened at a
    threshold of ``SCORE_BAND * conf`` or lower) on ``images`` one by one, and judge the int8
    one; raises :class:`Cancelled` when ``cancelled()`` turns true."""
    import cv2

    reference, candidate = [], []
    for path in images:
        if cancelled():
            raise Cancelled()
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            continue
        reference += list(f32([frame]))
        candidate += list(int8([frame]))
    n = len(reference)
    f1, recall, precision, boxes = agreement(reference, candidate, conf)
    if f1 is None or boxes < min_boxes:
        return CheckResult(f1, recall, precision, n, boxes, min_agreement, min_boxes, False,
                           f"the f32 detector found {boxes} boxes on {n} held-out frames, fewer "
                           f"than the {min_boxes} needed to judge the int8 one (cameras dark or "
                           "empty?)")
    passed = f1 >= min_agreement
    verdict = "reaches" if passed else "is below"
    return CheckResult(f1, recall, precision, n, boxes, min_agreement, min_boxes, passed,
                       f"int8 and f32 agree on {f1:.3f} of the boxes (F1; int8 finds {recall:.3f} "
                       f"of f32's {boxes} boxes on {n} held-out frames, {precision:.3f} of its own "
                       f"are f32's), which {verdict} the {min_agreement:.2f} required")
