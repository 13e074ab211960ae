"""The one detections type: what a detector returns for one image, what every sink, snapshot
and metric in the daemon reads, and the one JSON shape they all write.

Arrays, not objects, because the numbers come out of NMS as arrays and the consumers (tracking,
zones, evaluation) work on arrays; :meth:`Detections.__iter__` gives one :class:`Detection` per
box for code that wants to look at them one by one (drawing, JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import numpy as np


class Detection(NamedTuple):
    """One box of a :class:`Detections` (a read-only view, made on iteration)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the original image
    score: float
    class_id: int
    class_name: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of one detection, the same in ``detect`` output, sinks and /cameras."""
        return {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "class": self.class_name, "class_id": int(self.class_id)}


@dataclass(frozen=True)
class Detections:
    """Detections in one image: boxes xyxy in original-image pixels."""

    boxes: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32
    names: tuple[str, ...]  # (N,) class name of each box

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        class_ids = np.asarray(self.class_ids).reshape(-1).astype(np.int32)
        names = tuple(str(n) for n in self.names)
        if not len(boxes) == len(scores) == len(class_ids) == len(names):
            raise ValueError(f"inconsistent detections: {len(boxes)} boxes, {len(scores)} scores, "
                             f"{len(class_ids)} class ids, {len(names)} names")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Detection]:
        for box, score, cid, name in zip(self.boxes, self.scores, self.class_ids, self.names):
            yield Detection(tuple(float(v) for v in box), float(score), int(cid), name)

    def to_json(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self]

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0,), np.int32), ())

    @classmethod
    def from_arrays(cls, boxes: Any, scores: Any, class_ids: Any,
                    class_names: dict[int, str]) -> "Detections":
        """Build from arrays, naming each box from ``class_names`` (its id when unnamed)."""
        ids = np.asarray(class_ids).reshape(-1).astype(np.int32)
        return cls(boxes, scores, ids, tuple(class_names.get(int(c), str(int(c))) for c in ids))
