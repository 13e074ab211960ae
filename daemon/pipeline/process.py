"""One batch through the engines: gate -> views (enhancer, CLAHE, mirror; where they help) ->
detector -> merged results; and, apart from what the detector sees, the picture people see.

The enhancer serves two jobs, measured apart (docs/DENOISER.md): the *picture* of a low-light
camera (live snapshot, event snapshots, clips: ``camera.picture: enhanced``, the default) and,
where ``lowlight.views`` names it, one of the pictures the detector looks at. A frame that needs
it for either goes through the enhancer's per-stream filter here, in one call for the batch; the
network runs here only for the frames whose views name ``enhanced``. The picture of any other
frame is lazy (:mod:`daemon.pipeline.picture`): the network runs when someone first looks at it.

Under overload (the scheduler took a frame a whole fps period late: ``Frame.behind``) a dark
frame sheds its views down to the first before the camera loses frames
(``duskwatch_views_shed_total``).

:class:`Pipeline` knows nothing about cameras' timing (the scheduler decides which frames form
a batch) and runs only on the scheduler thread: the engines, the sinks and the per-camera state
of the enhancer belong to that thread. Results go to the metrics, the sinks and the snapshot
store.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from daemon.pipeline.frames import Frame, Result
from daemon.pipeline.gate import LowLightGate
from daemon.pipeline.picture import Picture, PictureMaker
from daemon.pipeline.ratelog import RateLimitedLog
from daemon.pipeline.seams import Detector, Enhancer
from daemon.pipeline.sinks import SinkSet
from daemon.pipeline.snapshots import GateView, Snapshot, SnapshotStore
from daemon.pipeline.views import SCALED, in_frame, merge, picture
from daemon.metrics import Metrics
from engines.detections import Detections

if TYPE_CHECKING:
    from daemon.events.stage import EventStage

log = logging.getLogger("duskwatch.pipeline")


class Pipeline:
    """Runs batches: gate -> the views of the frames it picks (daemon.pipeline.views) ->
    detector (every picture, one call) -> merged boxes -> metrics,
    events (tracking, zones, lines, evidence, event sinks), sinks and snapshots."""

    def __init__(
        self,
        detector: Detector,
        metrics: Metrics,
        sinks: SinkSet,
        enhancer: Enhancer | None = None,
        clock: Callable[[], float] = time.monotonic,
        snapshots: SnapshotStore | None = None,
        events: "EventStage | None" = None,
    ):
        self.detector = detector
        self.enhancer = enhancer
        self.pictures = PictureMaker(enhancer, metrics, clock) if enhancer is not None else None
        self.metrics = metrics
        self.sinks = sinks
        self.clock = clock
        self.snapshots = snapshots or SnapshotStore()
        self.events = events
        self._errors = RateLimitedLog(log)
        self._taken: dict[str, int] = {}  # frames per camera handed to process()
        self._zoom_ok: dict[float, bool] = {}  # lowlight.zoom -> whether the detector can take it
        self._zoom_of: object = detector  # the detector _zoom_ok is about (it may be swapped)

    # public ---------------------------------------------------------------------------------
    def process(self, frames: Sequence[Frame], gates: Sequence[LowLightGate]) -> list[Result]:
        """Run one batch; return the results of the frames that made it through."""
        if not frames:
            return []
        for f in frames:
            self.metrics.stage.labels("decode").observe(f.decode_seconds)
        views = [self._views(f, g) for f, g in zip(frames, gates)]
        shown = [g.wants_picture and self.enhancer is not None for g in gates]
        ok = [True] * len(frames)
        enhanced = self._enhance(frames, views, shown, ok)
        live = [i for i in range(len(frames)) if ok[i]]
        pictures = {i: self._pictures(frames[i].image, views[i], enhanced.get(i)) for i in live}
        dets = self._detect(frames, pictures, live, gates)
        if dets is None:
            return []
        return [self._finish(frames[i], enhanced.get(i) if shown[i] else None, views[i] != ("raw",),
                             i in enhanced, d) for i, d in zip(live, dets)]

    def tick(self) -> None:
        """Between batches, with or without frames: tracks of cameras that stopped sending
        frames end ('gone'), finished clips close."""
        if self.events is not None:
            try:
                self.events.tick(self.clock())
            except Exception as exc:  # noqa: BLE001
                self._errors.error("events-tick", "events: %s: %s", type(exc).__name__, exc)

    def replace_sinks(self, sinks: SinkSet) -> None:
        """Write to ``sinks`` from now on and close the previous ones."""
        old, self.sinks = self.sinks, sinks
        old.close()

    def forget(self, camera: str) -> None:
        """Release what the pipeline keeps for a camera that went away (its snapshot, the
        enhancer's per-stream state, its tracks and clips)."""
        self.snapshots.forget(camera)
        self._taken.pop(camera, None)
        if self.events is not None:
            self.events.forget(camera)
        if self.enhancer is not None:
            self.enhancer.reset(camera)

    # stages ---------------------------------------------------------------------------------
    def _views(self, frame: Frame, gate: LowLightGate) -> tuple[str, ...]:
        """The pictures of this frame the detector sees: the gate's views when it picks the
        frame ('enhanced' only with an enhancer), else the frame as decoded."""
        want = gate.update(frame.image)
        self.metrics.set_lowlight(frame.camera, gate.lowlight)
        taken = self._taken[frame.camera] = self._taken.get(frame.camera, 0) + 1
        self.snapshots.put_gate(frame.camera, GateView(gate.lowlight, gate.luma, taken))
        if not want:
            return ("raw",)
        views = tuple(v for v in gate.cfg.views if (v != "enhanced" or self.enhancer is not None)
                      and (v not in SCALED or self._can_zoom(gate.cfg.zoom))) or ("raw",)
        if frame.behind and len(views) > 1:  # overloaded: fewer detector passes, not fewer frames
            self.metrics.count_views_shed(frame.camera, len(views) - 1)
            views = views[:1]
        return views

    def _can_zoom(self, scale: float) -> bool:
        """Whether the detector can look at a frame ``scale`` times its input size (an engine
        exported with dynamic height and width); when not, the 'zoom' view is left out, said
        once in the log (again after the detector is replaced, e.g. by its int8 sibling)."""
        if self._zoom_of is not self.detector:
            self._zoom_ok, self._zoom_of = {}, self.detector
        if scale not in self._zoom_ok:
            sized = getattr(self.detector, "scaled_size", None)
            try:
                if sized is None:
                    raise TypeError(f"the detector ({type(self.detector).__name__}) cannot rescale "
                                    "its input (it has no scaled_size)")
                sized(scale)
                self._zoom_ok[scale] = True
            except Exception as exc:  # noqa: BLE001 - engines.base.EngineError, said once
                log.warning("lowlight.views: the zoom views are left out: %s", exc)
                self._zoom_ok[scale] = False
        return self._zoom_ok[scale]

    def _enhance(self, frames, views, shown, ok) -> dict[int, Picture]:
        """The enhancer's picture of each frame that wants it (as a view or to be shown): every
        such frame through the per-stream filter, in one call; the network, in one call, only
        for the frames whose views name ``enhanced`` (their picture is then ready), the others'
        pictures made when first looked at. A failure here drops those frames (counted) and the
        rest of the batch goes on."""
        idx = [i for i in range(len(frames)) if "enhanced" in views[i] or shown[i]]
        if not idx or self.pictures is None:
            return {}
        cams = [frames[i].camera for i in idx]
        now = [k for k, i in enumerate(idx) if "enhanced" in views[i]]
        try:
            filtered = self.pictures.filter([frames[i].image for i in idx], cams)
            made = self.pictures.network([filtered[k] for k in now], [cams[k] for k in now]) if now else []
        except Exception as exc:  # noqa: BLE001 - count, log, go on with the next batch
            self._engine_failed("enhance", [frames[i] for i in idx], exc)
            for i in idx:
                ok[i] = False
            return {}
        out = {idx[k]: Picture.ready(image) for k, image in zip(now, made)}
        for k, i in enumerate(idx):
            out.setdefault(i, self.pictures.lazy(cams[k], filtered[k], frames[i].image))
        return out

    @staticmethod
    def _pictures(raw: np.ndarray, views: tuple[str, ...], enhanced: Picture | None
                  ) -> dict[str, np.ndarray]:
        """The detector's pictures of a frame (the enhanced one is ready whenever a view names it)."""
        made = enhanced.image() if enhanced is not None and "enhanced" in views else None
        return {v: picture(v, raw, made) for v in views}

    def _detect(self, frames, pictures, live, gates) -> list[Detections] | None:
        """Every picture of every live frame through the detector: one call for the pictures at
        the detector's own size, one per other scale (the 'zoom' view: lowlight.zoom); one
        merged result per frame (lowlight.merge)."""
        if not live:
            return None
        owners = [(i, view) for i in live for view in pictures[i]]
        calls: dict[float, list[int]] = {}  # input scale -> indices into owners
        for k, (i, view) in enumerate(owners):
            calls.setdefault(gates[i].cfg.zoom if view in SCALED else 1.0, []).append(k)
        t0 = self.clock()
        dets: list[Detections | None] = [None] * len(owners)
        try:
            for scale, ks in calls.items():
                batch = [pictures[owners[k][0]][owners[k][1]] for k in ks]
                got = list(self.detector(batch) if scale == 1.0 else self.detector(batch, scale=scale))
                if len(got) != len(batch):
                    raise ValueError(f"detector returned {len(got)} results for {len(batch)} images")
                bad = next((type(d).__name__ for d in got if not isinstance(d, Detections)), None)
                if bad is not None:
                    raise TypeError(f"detector returned {bad}, not engines.detections.Detections")
                for k, d in zip(ks, got):
                    dets[k] = d
        except Exception as exc:  # noqa: BLE001
            self._engine_failed("detect", [frames[i] for i in live], exc)
            return None
        self.metrics.stage.labels("detect").observe(self.clock() - t0)
        found: dict[int, list[Detections]] = {i: [] for i in live}
        for (i, view), d in zip(owners, dets):
            found[i].append(in_frame(view, d, frames[i].image.shape[1]))
        return [merge(found[i], gates[i].cfg.merge_iou, how=gates[i].cfg.merge) for i in live]

    def _finish(self, frame: Frame, picture: Picture | None, lowlight: bool, enhanced: bool,
                dets: Detections) -> Result:
        """``picture``: what people see instead of the decoded frame (the enhancer's output,
        made when first looked at), or None: the frame itself."""
        result = Result(frame.camera, frame.seq, frame.captured_wall, enhanced, dets, lowlight)
        image = frame.image if picture is None else picture
        age = max(0.0, self.clock() - frame.captured_monotonic)
        m = self.metrics
        m.stage.labels("end_to_end").observe(age)
        m.set_frame_age(frame.camera, age)
        m.count_frames(frame.camera, "processed")
        # duskwatch_detections_total counts each tracked object once (daemon.events), not every
        # box of every frame: a parked car is one detection, not ten a second.
        if self.events is not None:
            try:
                self.events.observe(frame, image, result)
            except Exception as exc:  # noqa: BLE001 - events must never stop detection
                self._errors.error("events", "events of camera %s failed: %s: %s",
                                   frame.camera, type(exc).__name__, exc)
        self.snapshots.put(Snapshot(frame.camera, image, result, None if picture is None else frame.image))
        self.sinks.write(result)
        return result

    def _engine_failed(self, stage: str, frames: Sequence[Frame], exc: Exception) -> None:
        self.metrics.engine_failures.labels(stage).inc()
        for f in frames:
            self.metrics.count_frames(f.camera, "failed")
        self._errors.error(stage, "%s engine failed on a batch of %d: %s: %s",
                           stage, len(frames), type(exc).__name__, exc)
