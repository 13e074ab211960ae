"""The real engines and camera sources behind the service's seams, imported lazily."""

from __future__ import annotations

from daemon.config import CameraConfig, EnginesConfig
from daemon.pipeline.frames import CameraSource
from daemon.pipeline.seams import Detector, Enhancer


def default_source_factory(cam: CameraConfig, events) -> CameraSource:
    from daemon.pipeline.sources import make_source

    return make_source(cam, events)


def default_detector_factory(ecfg: EnginesConfig, max_batch: int) -> Detector:
    from engines.yolo import Detector as YoloDetector

    return YoloDetector(ecfg.detector, conf=ecfg.conf, iou=ecfg.iou, device=ecfg.device)


def default_enhancer_factory(ecfg: EnginesConfig) -> Enhancer | None:
    if ecfg.enhancer is None:
        return None
    from engines.enhancer import Enhancer as DenoiseEnhancer

    return DenoiseEnhancer(ecfg.enhancer, device=ecfg.device, temporal=ecfg.temporal_filter)
