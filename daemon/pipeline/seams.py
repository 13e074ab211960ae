"""The seam between the daemon and the engines: what the pipeline needs from a detector and an
enhancer, as typed protocols.

``engines.yolo.Detector`` and ``engines.enhancer.Enhancer`` implement them; tests put fakes
here. The service builds both through the factories below (constructor arguments of
:class:`daemon.service.service.Service`).
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from daemon.config import EnginesConfig
from engines.detections import Detections


@runtime_checkable
class Detector(Protocol):
    """BGR uint8 images in, one :class:`~engines.detections.Detections` per image out."""

    names: dict[int, str]  # class id -> name, every class the detector can report
    backend: str  # the runtime: onnxruntime, tensorrt, torch, ...

    def __call__(self, images: Sequence[np.ndarray]) -> list[Detections]: ...
    # Only for the zoom views (lowlight.views), called as detector(images, scale=s): the images
    # seen at s times the detector's input size. A detector that can has scaled_size(s) (the
    # input size, or an error saying why not: engines.yolo.Detector); one without it gets no
    # zoom views.
    def warmup(self, batch: int = 1) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class Enhancer(Protocol):
    """BGR uint8 images in, enhanced images of the same shapes out. ``streams`` names the
    camera of each image: an enhancer may keep per-stream state (a temporal filter), released
    by :meth:`reset` when a camera goes away. One that also has ``filter(images, streams)`` (the
    per-stream state's share, run on every frame in order) and ``network(filtered)`` (stateless,
    any thread), as ``engines.enhancer.Enhancer`` does, gets its network run only for the
    pictures somebody looks at (:mod:`daemon.pipeline.picture`); for one without them
    ``__call__`` is the network."""

    backend: str

    def __call__(self, images: Sequence[np.ndarray], streams: Sequence[str]) -> list[np.ndarray]: ...
    def warmup(self) -> None: ...
    def reset(self, stream: str) -> None: ...
    def close(self) -> None: ...


DetectorFactory = Callable[[EnginesConfig, int], Detector]
"""(engines config, largest batch) -> a loaded detector."""

EnhancerFactory = Callable[[EnginesConfig], "Enhancer | None"]
"""engines config -> a loaded enhancer, or None when none is configured."""
