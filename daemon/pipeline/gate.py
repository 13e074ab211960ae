"""The low-light gate: decides per camera whether a frame goes through the enhancer.

Two questions, kept apart:

* **Is the scene dark?** The mean of the luma channel (ITU-R BT.601 weights,
  ``Y = 0.299 R + 0.587 G + 0.114 B``) over a strided subsample of the frame, smoothed with an
  exponential moving average so that a passing headlight does not flip the decision. Two
  thresholds give hysteresis: a camera turns low-light when the average falls below
  ``enter_below`` and back to daylight only when it rises above ``exit_above``. This state is
  :attr:`LowLightGate.lowlight`, exported as ``duskwatch_camera_lowlight``.
* **Does enhancing help the detector here?** Not every dark frame gains: night scenes with street
  lamps, headlights or lit windows are high dynamic range, and brightening them blows out the
  highlights and costs detections (docs/DENOISER.md, "Gate"). In ``auto`` mode a low-light frame
  is enhanced only when its smoothed luma is below ``enhance_below`` *and* its smoothed fraction of
  highlight pixels (sampled luma >= ``highlight_level``) is at most ``max_highlight``. The numbers
  are measured, not guessed: ``duskwatch bench night --tune`` picks them on ExDark val for the
  enhancer at hand (``enhance_below: 0`` sends no frame through it).

Both statistics come from the same strided subsample: a few thousand pixels per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from daemon.config import LowLightConfig

# BT.601 luma weights in OpenCV's BGR channel order.
_BGR_LUMA = np.array([0.114, 0.587, 0.299], dtype=np.float32)
MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class FrameStats:
    """One frame's gate statistics: mean luma (0-255) and the fraction of highlight pixels."""

    luma: float
    highlight: float


def _sampled_luma(image: np.ndarray, stride: int) -> np.ndarray:
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an HxW or HxWx3 image, got shape {image.shape}")
    sub = image[::stride, ::stride]
    if sub.ndim == 2 or sub.shape[2] == 1:
        return sub.reshape(-1).astype(np.float32)
    return sub[..., :3].reshape(-1, 3).astype(np.float32) @ _BGR_LUMA


def mean_luma(image: np.ndarray, stride: int = 8) -> float:
    """Mean BT.601 luma (0-255) of ``image`` sampled every ``stride`` pixels in both axes.

    ``image`` is HxWx3 BGR or HxW grey, any integer or float dtype in 0..255.
    """
    return float(_sampled_luma(image, stride).mean(dtype=np.float64))


def frame_stats(image: np.ndarray, cfg: LowLightConfig, stride: int = 8) -> FrameStats:
    """:class:`FrameStats` of ``image``: mean luma and the fraction of sampled pixels whose luma
    is at least ``cfg.highlight_level``."""
    y = _sampled_luma(image, stride)
    return FrameStats(float(y.mean(dtype=np.float64)), float(np.mean(y >= cfg.highlight_level)))


class LowLightGate:
    """One camera's gate. ``mode`` is the camera's ``enhance`` setting: auto, always or never.

    :meth:`update` feeds one frame and returns whether that frame should be enhanced.
    :attr:`lowlight` is the hysteresis state (exported as ``duskwatch_camera_lowlight``);
    it is tracked in every mode so the metric tells the truth about the scene.
    """

    def __init__(self, cfg: LowLightConfig, mode: str = "auto", picture: str = "enhanced"):
        self.cfg = cfg
        self.mode = _check_mode(mode)
        self.picture = _check_picture(picture)
        self.luma: float | None = None  # smoothed statistics; None before the first frame
        self.highlight: float | None = None
        self.lowlight = False

    def reconfigure(self, cfg: LowLightConfig, mode: str, picture: str | None = None) -> None:
        """Apply new thresholds/mode (config reload) keeping the smoothed statistics."""
        self.cfg, self.mode = cfg, _check_mode(mode)
        if picture is not None:
            self.picture = _check_picture(picture)
        if self.luma is not None:
            self.lowlight = self._next_state(self.luma)

    def observe(self, luma: float, highlight: float = 0.0) -> bool:
        """Feed one frame's statistics; return the (possibly new) low-light state."""
        a = self.cfg.smoothing
        self.luma = luma if self.luma is None else a * luma + (1.0 - a) * self.luma
        self.highlight = highlight if self.highlight is None else a * highlight + (1.0 - a) * self.highlight
        self.lowlight = self._next_state(self.luma)
        return self.lowlight

    def update(self, image: np.ndarray) -> bool:
        """Feed one frame; return True when it should go through the enhancer."""
        s = frame_stats(image, self.cfg)
        self.observe(s.luma, s.highlight)
        return self.should_enhance

    @property
    def should_enhance(self) -> bool:
        if self.mode == "always":
            return True
        if self.mode == "never" or not self.lowlight or self.luma is None:
            return False
        return self.luma < self.cfg.enhance_below and (self.highlight or 0.0) <= self.cfg.max_highlight

    @property
    def wants_picture(self) -> bool:
        """Whether people should see this camera's frames enhanced now: a low-light camera
        whose ``picture`` is ``enhanced`` (not in ``never`` mode). Apart from the detector's
        views: a frame can be shown enhanced without being detected on the enhanced picture."""
        return self.picture == "enhanced" and self.mode != "never" and (self.lowlight or self.mode == "always")

    def _next_state(self, luma: float) -> bool:
        if self.lowlight:
            return luma <= self.cfg.exit_above
        return luma < self.cfg.enter_below


def _check_picture(picture: str) -> str:
    if picture not in ("enhanced", "raw"):
        raise ValueError(f"picture '{picture}' is not one of enhanced, raw")
    return picture


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"enhance mode '{mode}' is not one of {', '.join(MODES)}")
    return mode
