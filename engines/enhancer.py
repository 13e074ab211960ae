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

    def __init__(self, engine: "Engine | str | Path", device: str = "auto"):
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
    def __call__(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """BGR uint8 ``HxWx3`` frames in, enhanced BGR uint8 frames of the same sizes out."""
        frames = [_check_frame(i, im) for i, im in enumerate(images)]
        out: list[np.ndarray | None] = [None] * len(frames)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, f in enumerate(frames):
            groups[f.shape[:2]].append(i)
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


# -- conversions ------------------------------------------------------------------------------
def to_input(bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 HxWx3 -> RGB float32 3xHxW in [0,1]."""
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


def _check_frame(i: int, im: Any) -> np.ndarray:
    a = np.asarray(im)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise EngineError(f"enhancer: image {i} has shape {a.shape}; expected a BGR HxWx3 frame")
    if a.dtype != np.uint8:
        raise EngineError(f"enhancer: image {i} has dtype {a.dtype}; expected uint8 (BGR, as OpenCV decodes)")
    return a
