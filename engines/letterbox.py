"""Letterbox: scale an image to fit the model input keeping its aspect ratio, pad the rest.

The geometry matches ultralytics' ``LetterBox(auto=False, center=True)`` (pad value 114, the
image centred, bilinear resize), so an engine exported by ultralytics sees what it was trained
on. Two implementations share :func:`plan`: a batch on the CPU with OpenCV
(:func:`letterbox_cpu`), and a batch of tensors already on a GPU with torch
(:func:`letterbox_torch`). :func:`unletterbox_boxes` maps boxes back to the original frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How one image was placed in the model input: ``x_in = x_orig * gain + left``."""

    orig_hw: tuple[int, int]   # original height, width
    resized_hw: tuple[int, int]  # size after scaling, before padding
    gain: float
    left: int
    top: int


def plan(orig_hw: tuple[int, int], imgsz: tuple[int, int]) -> Letterbox:
    """Scale and padding that fit an ``orig_hw`` image into ``imgsz`` (height, width)."""
    h, w = int(orig_hw[0]), int(orig_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty side ({h}x{w})")
    gain = min(imgsz[0] / h, imgsz[1] / w)
    nh, nw = max(int(round(h * gain)), 1), max(int(round(w * gain)), 1)
    dh, dw = (imgsz[0] - nh) / 2, (imgsz[1] - nw) / 2
    return Letterbox((h, w), (nh, nw), gain, int(round(dw - 0.1)), int(round(dh - 0.1)))


def rect_size(shapes: Iterable[tuple[int, int]], imgsz: tuple[int, int],
              stride: int) -> tuple[int, int]:
    """Smallest input (height, width), in multiples of ``stride``, that holds every image scaled
    to fit ``imgsz`` (ultralytics' "rect" inference). A 1280x720 frame at 640 needs 384x640,
    not 640x640: 1.67x fewer pixels for an engine whose input height and width are dynamic.

    The scale :func:`plan` computes for the smaller canvas is the same as for ``imgsz``: the
    canvas still holds each scaled image and the long side still reaches ``imgsz``.
    """
    hs, ws = [stride], [stride]
    for h, w in shapes:
        gain = min(imgsz[0] / h, imgsz[1] / w)
        hs.append(math.ceil(max(round(h * gain), 1) / stride) * stride)
        ws.append(math.ceil(max(round(w * gain), 1) / stride) * stride)
    return min(max(hs), imgsz[0]), min(max(ws), imgsz[1])


def val_size(shapes: Iterable[tuple[int, int]], imgsz: int, stride: int, pad: float = 0.5) -> tuple[int, int]:
    """The input (height, width) ultralytics' validator gives a batch of images ("rect" batches
    with half a stride of padding, ``YOLODataset(rect=True, pad=0.5)``): every image scaled so
    its long side is ``imgsz``, the canvas ``ceil(side * imgsz / stride + pad) * stride``, so a
    640 x 427 photo is seen in a 448 x 672 canvas. Used where our AP must be comparable to
    ultralytics' ``val`` (``duskwatch bench night``); live detection uses :func:`rect_size`."""
    ratios = [h / w for h, w in shapes] or [1.0]
    lo, hi = min(ratios), max(ratios)
    shape = (hi, 1.0) if hi < 1 else (1.0, 1.0 / lo) if lo > 1 else (1.0, 1.0)
    return tuple(int(math.ceil(v * imgsz / stride + pad) * stride) for v in shape)  # type: ignore[return-value]


def plan_val(orig_hw: tuple[int, int], imgsz: int, canvas: tuple[int, int]) -> Letterbox:
    """Ultralytics' validation geometry: long side scaled to ``imgsz``, centred in ``canvas``."""
    h, w = int(orig_hw[0]), int(orig_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty side ({h}x{w})")
    gain = imgsz / max(h, w)
    nh, nw = (h, w) if gain == 1 else (min(math.ceil(h * gain), imgsz), min(math.ceil(w * gain), imgsz))
    dh, dw = (canvas[0] - nh) / 2, (canvas[1] - nw) / 2
    return Letterbox((h, w), (nh, nw), nw / w, int(round(dw - 0.1)), int(round(dh - 0.1)))


def letterbox_cpu(images: Sequence[np.ndarray], imgsz: tuple[int, int],
                  batch: int | None = None, val_stride: int | None = None) -> tuple[np.ndarray, list[Letterbox]]:
    """BGR uint8 HxWx3 images -> float32 RGB NCHW in [0, 1] and one :class:`Letterbox` each.

    ``batch`` pads the result with grey images up to a static engine batch size. ``val_stride``:
    ultralytics' validation geometry instead (:func:`val_size`, :func:`plan_val`; images are
    scaled down with ``INTER_AREA`` as its loader does), ``imgsz`` is then the long side.
    """
    import cv2

    n = max(len(images), batch or 0)
    if val_stride:
        canvas_hw = val_size([im.shape[:2] for im in images], imgsz[0], val_stride)
    else:
        canvas_hw = imgsz
    canvas = np.full((n, canvas_hw[0], canvas_hw[1], 3), PAD_VALUE, dtype=np.uint8)
    boxes = []
    for i, img in enumerate(images):
        lb = plan_val(img.shape[:2], imgsz[0], canvas_hw) if val_stride else plan(img.shape[:2], imgsz)
        resized = img
        if lb.resized_hw != lb.orig_hw:
            shrink = val_stride and lb.resized_hw[0] < lb.orig_hw[0]
            resized = cv2.resize(img, (lb.resized_hw[1], lb.resized_hw[0]),
                                 interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        canvas[i, lb.top:lb.top + lb.resized_hw[0], lb.left:lb.left + lb.resized_hw[1]] = resized
        boxes.append(lb)
    chw = canvas[..., ::-1].transpose(0, 3, 1, 2)  # BGR->RGB, NHWC->NCHW
    return np.ascontiguousarray(chw, dtype=np.float32) * np.float32(1 / 255), boxes


def letterbox_torch(images: Sequence[Any], imgsz: tuple[int, int], batch: int | None = None,
                    device: Any = None) -> tuple[Any, list[Letterbox]]:
    """Like :func:`letterbox_cpu` for torch uint8 HxWx3 BGR tensors (or numpy arrays) on ``device``.

    The work happens on the device: one upload per image when given numpy arrays, then a
    bilinear resize (``align_corners=False``, as OpenCV's ``INTER_LINEAR``) and a copy into a
    grey canvas. Returns a float32 NCHW tensor on the device.
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device(device) if device is not None else _device_of(images)
    n = max(len(images), batch or 0)
    out = torch.full((n, 3, imgsz[0], imgsz[1]), PAD_VALUE / 255, dtype=torch.float32, device=dev)
    boxes = []
    for i, img in enumerate(images):
        t = torch.as_tensor(img).to(dev, non_blocking=True)
        lb = plan(tuple(t.shape[:2]), imgsz)
        x = t.permute(2, 0, 1).flip(0).unsqueeze(0).float().div_(255)  # 1x3xHxW RGB
        if lb.resized_hw != lb.orig_hw:
            x = F.interpolate(x, size=lb.resized_hw, mode="bilinear", align_corners=False)
        out[i, :, lb.top:lb.top + lb.resized_hw[0], lb.left:lb.left + lb.resized_hw[1]] = x[0]
        boxes.append(lb)
    return out, boxes


def _device_of(images: Sequence[Any]) -> Any:
    import torch

    for img in images:
        if isinstance(img, torch.Tensor):
            return img.device
    return torch.device("cpu")


def unletterbox_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Map xyxy boxes from model-input pixels back to the original image, clipped to it.

    Each axis uses its own scale (resized / original side): rounding the resized size makes
    the two differ slightly from the common ``gain``.
    """
    out = boxes.astype(np.float32, copy=True)
    sy, sx = lb.resized_hw[0] / lb.orig_hw[0], lb.resized_hw[1] / lb.orig_hw[1]
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.left) / sx
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.top) / sy
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.orig_hw[1])
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.orig_hw[0])
    return out
