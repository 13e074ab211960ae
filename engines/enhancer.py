"""The low-light enhancer's pre- and post-processing around an exported denoiser engine.

The engine (``duskwatch export denoiser``) takes ``image`` float32 ``[N,3,H,W]`` RGB in [0,1]
with H and W multiples of the network's ``multiple`` (from the JSON sidecar) and returns
``enhanced`` of the same shape; all sampling steps run inside it. This class turns OpenCV
frames (BGR uint8, any size) into such batches and back::

    with Enhancer("denoiser.onnx") as enhance:
        bright = enhance([frame1, frame2])   # same sizes, BGR uint8

Frames of the same size are batched together (up to the engine's fixed batch, if it has one),
padded by mirroring to the multiple, and cropped back. An engine built for one fixed spatial
size (a TensorRT profile) gets each frame resized to fit, padded, and resized back.
No torch import here: any backend behind :func:`engines.base.open_engine` works.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.base import Engine, EngineError, open_engine

INPUT, OUTPUT = "image", "enhanced"
DEFAULT_MULTIPLE = 32


class Enhancer:
    """Run an exported enhancer engine on lists of BGR uint8 frames."""

    def __init__(self, engine: "Engine | str | Path", device: str = "auto", temporal: bool = False):
        """``temporal``: keep a :class:`TemporalFilter` per stream (the ``streams`` argument of a call)
        and enhance each stream's filtered frames instead of the raw ones (less flicker)."""
        self.temporal = temporal
        self._filters: dict[Any, TemporalFilter] = {}
        self.engine = engine if isinstance(engine, Engine) else open_engine(engine, device)
        self._owns = not isinstance(engine, Engine)
        meta = self.engine.metadata or {}
        if meta.get("kind") not in (None, "enhancer"):
            raise EngineError(f"{self.engine.path}: sidecar says kind={meta.get('kind')!r}, not an "
                              "enhancer; pass the file written by `duskwatch export denoiser`")
        names = [s.name for s in self.engine.inputs]
        if len(self.engine.inputs) != 1 or len(self.engine.outputs) > 1:
            raise EngineError(f"{self.engine.path}: an enhancer engine has one input and one output, "
                              f"this one has inputs {names} and outputs {[s.name for s in self.engine.outputs]}")
        self.input = self.engine.inputs[0]
        # a backend that cannot list outputs (some .pt2 files) returns them by position
        self.output_name = self.engine.outputs[0].name if self.engine.outputs else None
        self.multiple = int(meta.get("multiple", DEFAULT_MULTIPLE))
        self.min_size = int(meta.get("min_size", self.multiple))  # smallest padded side the graph takes
        self.steps = meta.get("steps")
        self.fixed_hw = _fixed_hw(self.input.shape)
        self.max_batch = self.input.shape[0] if self.input.shape and self.input.shape[0] else None

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The runtime the engine runs on (onnxruntime, tensorrt, torch, ...)."""
        return self.engine.backend

    def close(self) -> None:
        if self._owns and self.engine is not None:
            self.engine.close()

    def __enter__(self) -> "Enhancer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def warmup(self, size: tuple[int, int] = (640, 640), batch: int = 1) -> None:
        """Run once on a grey ``size`` (height, width) batch so the first real frame is not slow."""
        h, w = size
        self([np.full((h, w, 3), 64, np.uint8)] * batch)

    # -- running ------------------------------------------------------------------------------
    def __call__(self, images: list[np.ndarray], streams: "list[Any] | None" = None) -> list[np.ndarray]:
        """BGR uint8 ``HxWx3`` frames in, enhanced BGR uint8 frames of the same sizes out:
        :meth:`filter`, then :meth:`network`.

        ``streams`` (one key per image, e.g. the camera name) matters only with ``temporal=True``:
        each stream's frames pass through that stream's :class:`TemporalFilter` first. Without it
        (or with ``temporal=False``) every frame is enhanced alone.
        """
        return self.network(self.filter(images, streams))

    def filter(self, images: list[np.ndarray], streams: "list[Any] | None" = None) -> list[np.ndarray]:
        """The cheap per-stream half, in each stream's frame order: the frames checked and, with
        ``temporal=True`` and ``streams``, through their stream's :class:`TemporalFilter`
        (float32 0..255); else the frames themselves (uint8)."""
        frames = [_check_frame(i, im) for i, im in enumerate(images)]
        if self.temporal and streams is not None:
            if len(streams) != len(frames):
                raise EngineError(f"enhancer: {len(streams)} stream keys for {len(frames)} images")
            frames = [self._filters.setdefault(k, TemporalFilter())(f) for k, f in zip(streams, frames)]
        return frames

    def network(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """The network on what :meth:`filter` returned (BGR ``HxWx3``, uint8 or float 0..255),
        in batches of one size: enhanced BGR uint8 frames of the same sizes. Keeps no state."""
        out: list[np.ndarray | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, f in enumerate(frames):
            groups[_check_filtered(i, f).shape[:2]].append(i)
        for (h, w), idx in groups.items():
            step = self.max_batch or len(idx)
            for k in range(0, len(idx), step):
                chunk = idx[k:k + step]
                for i, res in zip(chunk, self._run_same_size([frames[i] for i in chunk], h, w)):
                    out[i] = res
        return out  # type: ignore[return-value]

    def _run_same_size(self, frames: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
        if self.fixed_hw is not None:
            return self._run_fixed(frames, h, w)
        ph = max(_round_up(h, self.multiple), self.min_size)
        pw = max(_round_up(w, self.multiple), self.min_size)
        batch = np.stack([to_input(_pad(f, ph, pw)) for f in frames])
        res = self._infer(batch)
        return [from_output(r)[:h, :w] for r in res]

    def _run_fixed(self, frames: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
        eh, ew = self.fixed_hw
        s = min(eh / h, ew / w, 1.0)
        rh, rw = max(1, round(h * s)), max(1, round(w * s))
        resized = [f if s == 1.0 else cv2.resize(f, (rw, rh), interpolation=cv2.INTER_AREA) for f in frames]
        res = self._infer(np.stack([to_input(_pad(f, eh, ew)) for f in resized]))
        outs = [from_output(r)[:rh, :rw] for r in res]
        return [o if s == 1.0 else cv2.resize(o, (w, h), interpolation=cv2.INTER_LINEAR) for o in outs]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        results = self.engine.infer({self.input.name: batch})
        result = results[self.output_name] if self.output_name else next(iter(results.values()))
        if hasattr(result, "detach"):  # torch / TensorRT backends may hand back a tensor
            result = result.detach().float().cpu().numpy()
        result = np.asarray(result, np.float32)
        if result.shape != batch.shape:
            raise EngineError(f"{self.engine.path}: enhancer returned shape {result.shape} for input "
                              f"{batch.shape}; it must return the input's shape (re-export the engine)")
        return result


    def reset(self, stream: Any = None) -> None:
        """Forget the temporal state of ``stream`` (of every stream when None)."""
        if stream is None:
            self._filters.clear()
        else:
            self._filters.pop(stream, None)


class TemporalFilter:
    """Motion-adaptive recursive average of one stream's frames (before enhancement).

    A camera's sensor noise is fresh in every frame; a per-frame enhancer turns what it leaves
    of it into flicker. A first-order recursive filter ``avg += a * (frame - avg)`` averages the
    noise over about ``2 / alpha`` frames where the scene is still, and follows the frame
    (``a -> 1``) where it changed more than the noise explains: the classic motion-adaptive
    recursive temporal filter of video denoising (Dubois & Sabri 1984, "Noise reduction in image
    sequences using motion-compensated temporal filtering", without the motion compensation).

    Motion test: ``m`` = the absolute difference to the running average, averaged over the
    channels and a ``window`` x ``window`` box; the noise level to compare it with is learnt per
    frame as the median of ``m`` in each of ``bins`` brightness bins (sensor noise grows with the
    signal; most of a surveillance frame is still, so the median is noise). Pixels with
    ``m < low * level`` are still (``a = alpha``), above ``high * level`` moving (``a = 1``),
    linear in between. A scene change (the frame-wide median jumping ``cut`` times above its
    running value) or a new frame size restarts the average. Returns float32 BGR in 0..255 (not
    rounded: the enhancer's gain would turn rounding into visible steps).
    """

    def __init__(self, alpha: float = 0.12, window: int = 5, low: float = 1.5, high: float = 3.0,
                 cut: float = 3.0, bins: int = 8):
        if not 0.0 < alpha <= 1.0 or not 0 < low < high:
            raise ValueError(f"TemporalFilter: need 0 < alpha <= 1 and 0 < low < high, got "
                             f"alpha={alpha}, low={low}, high={high}")
        self.alpha, self.window, self.low, self.high, self.cut, self.bins = alpha, window, low, high, cut, bins
        self._avg: np.ndarray | None = None
        self._level: float | None = None

    def reset(self) -> None:
        self._avg, self._level = None, None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        f = np.asarray(frame, np.float32)
        if self._avg is None or self._avg.shape != f.shape:
            self.reset()
            self._avg = f.copy()
            return self._avg.copy()
        d = f - self._avg
        m = cv2.blur(_channel_mean(np.abs(d)), (self.window, self.window))
        level = float(np.median(m[::2, ::2]))
        if self._level is not None and level > self.cut * max(self._level, 0.5):
            self.reset()  # scene change (light switched, camera moved): start again
            self._avg = f.copy()
            return self._avg.copy()
        self._level = level if self._level is None else 0.9 * self._level + 0.1 * level
        noise = np.maximum(self._noise_by_brightness(m), 0.25)
        ratio = (m / noise - self.low) / (self.high - self.low)
        a = self.alpha + (1.0 - self.alpha) * np.clip(ratio, 0.0, 1.0)
        self._avg += a[..., None] * d
        return self._avg.copy()

    def _noise_by_brightness(self, m: np.ndarray) -> np.ndarray:
        """Per-pixel expected ``m`` of a still pixel: the median of ``m`` in its brightness bin."""
        luma = _channel_mean(self._avg)
        edges = np.quantile(luma[::4, ::4], np.linspace(0, 1, self.bins + 1)[1:-1])
        idx = np.zeros(luma.shape, np.intp)  # np.digitize(luma, edges), a pass per edge: faster
        for edge in edges:
            idx += luma >= edge
        sub_idx, sub_m = idx[::2, ::2].ravel(), m[::2, ::2].ravel()
        everywhere = np.median(sub_m)
        levels = np.array([np.median(sub_m[mask]) if mask.any() else everywhere
                           for mask in (sub_idx == b for b in range(self.bins))], np.float32)
        return levels[idx]


def _channel_mean(img: np.ndarray) -> np.ndarray:
    """``img.mean(axis=2)`` of a float32 HxWx3 image, in one OpenCV pass (numpy's strided
    reduction over the last axis is the filter's slowest step)."""
    return cv2.transform(img, _THIRDS)


_THIRDS = np.full((1, 3), 1.0 / 3.0, np.float32)


# -- conversions ------------------------------------------------------------------------------
def to_input(bgr: np.ndarray) -> np.ndarray:
    """BGR HxWx3 (uint8, or float 0..255 from :class:`TemporalFilter`) -> RGB float32 3xHxW in [0,1]."""
    return np.ascontiguousarray(bgr[..., ::-1].transpose(2, 0, 1), dtype=np.float32) / 255.0


def from_output(chw: np.ndarray) -> np.ndarray:
    """RGB float 3xHxW -> BGR uint8 HxWx3 (NaN becomes 0, values clipped to [0,1])."""
    rgb = np.nan_to_num(chw, nan=0.0, posinf=1.0, neginf=0.0).transpose(1, 2, 0)[..., ::-1]
    return np.ascontiguousarray(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))


def _pad(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mirror-pad ``img`` at the bottom/right to ``h x w`` (edge-repeat for 1-pixel sides)."""
    dh, dw = h - img.shape[0], w - img.shape[1]
    if dh == 0 and dw == 0:
        return img
    mode = "symmetric" if min(img.shape[:2]) > 1 else "edge"
    return np.pad(img, ((0, dh), (0, dw), (0, 0)), mode=mode)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _fixed_hw(shape: tuple) -> tuple[int, int] | None:
    if len(shape) == 4 and shape[2] is not None and shape[3] is not None:
        return int(shape[2]), int(shape[3])
    return None


def _check_filtered(i: int, f: np.ndarray) -> np.ndarray:
    if f.ndim != 3 or f.shape[2] != 3 or f.dtype not in (np.uint8, np.float32):
        raise EngineError(f"enhancer: frame {i} has shape {f.shape} and dtype {f.dtype}; the network "
                          "takes what Enhancer.filter returns (BGR HxWx3, uint8 or float32)")
    return f


def _check_frame(i: int, im: Any) -> np.ndarray:
    a = np.asarray(im)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise EngineError(f"enhancer: image {i} has shape {a.shape}; expected a BGR HxWx3 frame")
    if a.dtype != np.uint8:
        raise EngineError(f"enhancer: image {i} has dtype {a.dtype}; expected uint8 (BGR, as OpenCV decodes)")
    return a
