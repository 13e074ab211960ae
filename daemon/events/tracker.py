"""One camera's object tracker: ByteTrack from the ``trackers`` library (Roboflow, Apache-2.0).

The library does the association (Kalman prediction, two-stage IoU matching of high- and
low-score boxes). It is fed each processed frame's capture time, so a gap (frames the
latest-frame policy skipped, a slow batch) is a longer prediction step and not a lost track:
a track is dropped only after ``lost_track_s`` seconds without a match. Enhanced and plain
frames go through the same tracker, so the enhancer switching on or off keeps the ids.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from daemon.config import TrackingConfig
from engines.detections import Detections

# ByteTrack's lost-track buffer is counted in frames of a 30 fps video (lost_track_buffer / 30 s).
_LIBRARY_FPS = 30.0


@dataclass(frozen=True)
class Match:
    """A detection of this frame that belongs to a confirmed track."""

    track_id: int
    index: int  # into the frame's Detections


class CameraTracker:
    """Assigns track ids to one camera's detections, frame after frame."""

    def __init__(self, cfg: TrackingConfig, fps: float):
        from trackers import ByteTrackTracker

        self.cfg = cfg
        self._classes = frozenset(cfg.classes)
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(cfg.lost_track_s * _LIBRARY_FPS)),
            frame_rate=fps,
            # New tracks start from any detection the detector reported; whether a track
            # *counts* is decided later (tracking.min_score, min_age_frames).
            track_activation_threshold=0.0,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=cfg.match_iou,
            high_conf_det_threshold=max(cfg.min_score, 0.05),
        )

    def update(self, dets: Detections, t: float) -> list[Match]:
        """Feed one frame's detections, captured at ``t`` (seconds, increasing); the matches of
        the tracked classes to confirmed tracks."""
        import supervision as sv

        keep = np.array([not self._classes or n in self._classes for n in dets.names], bool)
        idx = np.flatnonzero(keep)
        sv_dets = sv.Detections(
            xyxy=dets.boxes[idx].astype(np.float32).reshape(-1, 4),
            confidence=dets.scores[idx].astype(np.float32),
            class_id=dets.class_ids[idx].astype(int),
            data={"index": idx.astype(int)},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the library warns about out-of-order timestamps
            out = self._tracker.update(sv_dets, timestamp=float(t))
        if len(out) == 0:
            return []
        return [Match(int(tid), int(i)) for tid, i in zip(out.tracker_id, out.data["index"])
                if tid >= 0]
