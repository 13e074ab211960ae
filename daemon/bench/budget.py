"""The CPU budget of one frame, stage by stage, measured on the machine the benchmark ran on.

The pipeline benchmark times its seams while it runs (decode, enhance, detect per batch, end to
end); a detector call there is letterbox + engine + NMS together. This splits one frame's cost
into every stage, by running the very functions the pipeline runs, one stage at a time, on real
frames of the benchmark's first source at the batch size the scheduler formed:

``decode``     the reader thread's CPU time per frame (from the run itself)
``gate``       the low-light gate's statistics and decision (:class:`LowLightGate.update`)
``letterbox``  resize/pad/convert to the engine's input (:func:`engines.letterbox.letterbox_cpu`)
``enhance``    the enhancer engine, when one is configured
``detect``     the detector engine's forward pass alone
``nms``        decoding the head and class-aware NMS, boxes mapped back to the frame
``metrics``    the per-frame Prometheus updates the pipeline makes for a result

Each figure is the median of ``repeats`` timed rounds, in milliseconds of wall time per frame (a
batch's time divided by its size; the engines use every core, the other stages one), measured
after the pipeline has stopped so that nothing else of it competes. ``serial_fps`` is what the
box would process with the stages run one after another: the largest line is the next
bottleneck.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

STAGES = ("decode", "gate", "letterbox", "enhance", "detect", "nms", "metrics")


def grab_frames(url: str, n: int) -> list[np.ndarray]:
    """The first ``n`` frames of a file or stream (OpenCV's FFmpeg backend, as the sources use)."""
    import cv2

    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    frames = []
    try:
        while len(frames) < n:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        cap.release()
    return frames


def per_frame_ms(fn: Callable[[], Any], frames_per_call: int, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls (after one untimed call), per frame."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000.0 * statistics.median(times) / frames_per_call, 3)


def detector_stages(detector: Any, frames: list[np.ndarray], repeats: int) -> dict[str, float]:
    """letterbox / detect / nms of a CPU :class:`engines.yolo.Detector` on ``frames`` (one batch)."""
    from engines.letterbox import letterbox_cpu, unletterbox_boxes
    from engines.nms import decode_numpy

    engine, n = detector.engine, len(frames)
    size = detector.input_size_for(frames)
    batch, boxes = letterbox_cpu(frames, size, engine.max_batch)
    feed = {detector.input_name: batch}
    pred = np.asarray(engine.infer(feed)[detector.output_name])

    def nms() -> None:
        for (b, _, _), lb in zip(decode_numpy(pred, detector.conf, detector.iou), boxes):
            unletterbox_boxes(b, lb)

    return {
        "letterbox": per_frame_ms(lambda: letterbox_cpu(frames, size, engine.max_batch), n, repeats),
        "detect": per_frame_ms(lambda: engine.infer(feed), n, repeats),
        "nms": per_frame_ms(nms, n, repeats),
    }


def gate_ms(lowlight_cfg: Any, frames: list[np.ndarray], repeats: int) -> float:
    """The gate's per-frame cost (its statistics on a subsampled luma plane, and the decision)."""
    from daemon.pipeline.gate import LowLightGate

    gate = LowLightGate(lowlight_cfg, "auto")
    return per_frame_ms(lambda: [gate.update(f) for f in frames], len(frames), repeats)


def metrics_ms(metrics: Any, camera: str, detections_per_frame: int, repeats: int,
               n: int = 64) -> float:
    """The Prometheus updates the pipeline makes per processed frame: stage histograms (decode,
    detect, end to end), frame age, the low-light gauge, the processed counter, and one
    detection counter per box."""
    def updates() -> None:
        for _ in range(n):
            for stage in ("decode", "detect", "end_to_end"):
                metrics.stage.labels(stage).observe(0.01)
            metrics.set_frame_age(camera, 0.03)
            metrics.set_lowlight(camera, False)
            metrics.count_frames(camera, "processed")
            for _ in range(detections_per_frame):
                metrics.count_detection(camera, "person")

    return per_frame_ms(updates, n, repeats)


def frame_budget(*, frames: list[np.ndarray], detector: Any, enhancer: Any, lowlight_cfg: Any,
                 metrics: Any, camera: str, decode_ms: float | None, batch: int,
                 repeats: int = 5) -> dict[str, Any]:
    """Milliseconds per frame of every stage, their total, and each stage's share of it."""
    batch_frames = [frames[i % len(frames)] for i in range(max(1, batch))]
    budget: dict[str, float | None] = {"decode": decode_ms}
    budget["gate"] = gate_ms(lowlight_cfg, batch_frames, repeats)
    budget.update(detector_stages(detector, batch_frames, repeats))
    budget["enhance"] = (per_frame_ms(lambda: enhancer(batch_frames), len(batch_frames), repeats)
                         if enhancer is not None else None)
    dets = detector(batch_frames[:1])[0]
    budget["metrics"] = metrics_ms(metrics, camera, len(dets), repeats)
    ordered = {k: budget.get(k) for k in STAGES}
    total = round(sum(v for v in ordered.values() if v), 3)
    share = {k: round(v / total, 3) for k, v in ordered.items() if v and total}
    return {"batch": len(batch_frames), "ms_per_frame": ordered, "total_ms": total,
            "serial_fps": round(1000.0 / total, 1) if total else None, "share": share}
