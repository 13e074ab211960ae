"""The low-light gate: decides per camera whether a frame goes through the enhancer.

The statistic is cheap on purpose: the mean of the luma channel (ITU-R BT.601 weights,
``Y = 0.299 R + 0.587 G + 0.114 B``) over a strided subsample of the frame, smoothed with an
exponential moving average so that a passing headlight does not flip the decision. Two
thresholds give hysteresis: a camera turns low-light when the average falls below
``enter_below`` and back to daylight only when it rises above ``exit_above``.
"""

from __future__ import annotations

import numpy as np

from daemon.config import LowLightConfig

# BT.601 luma weights in OpenCV's BGR channel order.
_BGR_LUMA = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def mean_luma(image: np.ndarray, stride: int = 8) -> float:
    """Mean BT.601 luma (0-255) of ``image`` sampled every ``stride`` pixels in both axes.

    ``image`` is HxWx3 BGR or HxW grey, any integer or float dtype in 0..255.
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
    sub = image[::stride, ::stride]
    if sub.ndim == 2:
        return float(sub.mean())
    if sub.shape[2] == 1:
        return float(sub.mean())
    means = sub.reshape(-1, sub.shape[2])[:, :3].mean(axis=0, dtype=np.float64)
    return float(means @ _BGR_LUMA.astype(np.float64))


class LowLightGate:
    """One camera's gate. ``mode`` is the camera's ``enhance`` setting: auto, always or never.

    :meth:`update` feeds one frame and returns whether that frame should be enhanced.
    :attr:`lowlight` is the hysteresis state (exported as ``duskwatch_camera_lowlight``);
    it is tracked in every mode so the metric tells the truth about the scene.
    """

    def __init__(self, cfg: LowLightConfig, mode: str = "auto"):
        if mode not in ("auto", "always", "never"):
            raise ValueError(f"enhance mode '{mode}' is not one of auto, always, never")
        self.cfg = cfg
        self.mode = mode
        self.luma: float | None = None  # smoothed statistic; None before the first frame
        self.lowlight = False

    def reconfigure(self, cfg: LowLightConfig, mode: str) -> None:
        """Apply new thresholds/mode (config reload) keeping the smoothed statistic."""
        if mode not in ("auto", "always", "never"):
            raise ValueError(f"enhance mode '{mode}' is not one of auto, always, never")
        self.cfg, self.mode = cfg, mode
        if self.luma is not None:
            self.lowlight = self._next_state(self.luma)

    def observe(self, luma: float) -> bool:
        """Feed one frame's statistic; return the (possibly new) low-light state."""
        a = self.cfg.smoothing
        self.luma = luma if self.luma is None else a * luma + (1.0 - a) * self.luma
        self.lowlight = self._next_state(self.luma)
        return self.lowlight

    def update(self, image: np.ndarray) -> bool:
        """Feed one frame; return True when it should go through the enhancer."""
        self.observe(mean_luma(image))
        return self.should_enhance

    @property
    def should_enhance(self) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "never":
            return False
        return self.lowlight

    def _next_state(self, luma: float) -> bool:
        if self.lowlight:
            return luma <= self.cfg.exit_above
        return luma < self.cfg.enter_below
