"""Training and validation pairs: clean photos darkened by :mod:`export.degrade`.

The split is by file name (a CRC32 hash), so it is stable across machines and runs; validation
pairs are fixed (centre crop, degradation seeded by the name), training pairs are random crops
with flips and 90-degree turns, each degraded with a fresh parameter draw.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export import degrade

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Photo:
    name: str
    rgb: np.ndarray  # float32 HxWx3 in [0, 1]


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory of training photos")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return files


def load_photo(path: Path, max_side: int) -> Photo:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: OpenCV could not read this image")
    scale = max_side / max(bgr.shape[:2])
    if scale < 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return Photo(path.name, bgr[..., ::-1].astype(np.float32) / 255.0)


def is_val(name: str, val_fraction: float) -> bool:
    return (zlib.crc32(name.encode()) % 1000) < val_fraction * 1000


def load_split(folder: str | Path, val_fraction: float = 0.1, max_side: int = 512) -> tuple[list[Photo], list[Photo]]:
    """``(train, val)`` photos, downscaled so the longest side is at most ``max_side``."""
    photos = [load_photo(p, max_side) for p in list_images(folder)]
    train = [p for p in photos if not is_val(p.name, val_fraction)]
    val = [p for p in photos if is_val(p.name, val_fraction)]
    if not train or not val:
        raise ValueError(f"{folder}: {len(photos)} photos give an empty train or validation split; add photos")
    return train, val


def random_crop(rgb: np.ndarray, crop: int, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    if min(h, w) < crop:
        s = crop / min(h, w)
        rgb = cv2.resize(rgb, (max(crop, round(w * s)), max(crop, round(h * s))), interpolation=cv2.INTER_LINEAR)
        h, w = rgb.shape[:2]
    top, left = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    out = rgb[top : top + crop, left : left + crop]
    out = np.rot90(out, int(rng.integers(4)))
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


#: degradation models by name: ``seed -> (degraded, target, params)``
DEGRADATIONS = {"night": degrade.degrade_night_seeded, "global": degrade.degrade_seeded}


def degrader(name: str):
    if name not in DEGRADATIONS:
        raise ValueError(f"degradation {name!r}: use one of {sorted(DEGRADATIONS)}")
    return DEGRADATIONS[name]


def training_batch(photos: list[Photo], batch: int, crop: int, rng: np.random.Generator,
                   degradation: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """``(y, x0)``: degraded crops and their targets, float32 ``[B,3,crop,crop]``;
    ``degradation``: ``night`` (:func:`export.degrade.degrade_night`, lit pools, lamps, casts)
    or ``global`` (:func:`export.degrade.degrade`, one exposure scale for the whole photo)."""
    fn = degrader(degradation)
    ys, xs = [], []
    for _ in range(batch):
        clean = random_crop(photos[int(rng.integers(len(photos)))].rgb, crop, rng)
        dark, target, _ = fn(clean, int(rng.integers(2**31)))
        ys.append(dark)
        xs.append(target)
    return _chw(ys), _chw(xs)


def validation_pairs(photos: list[Photo], size: int = 256, degradation: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """Fixed ``(y, x0)`` pairs: centre crops, degradation seeded by the file name."""
    fn = degrader(degradation)
    ys, xs = [], []
    for p in photos:
        h, w = p.rgb.shape[:2]
        s = min(size, h, w) // 32 * 32
        top, left = (h - s) // 2, (w - s) // 2
        clean = np.ascontiguousarray(p.rgb[top : top + s, left : left + s])
        if s != size:
            clean = cv2.resize(clean, (size, size), interpolation=cv2.INTER_LINEAR)
        dark, target, _ = fn(clean, zlib.crc32(p.name.encode()))
        ys.append(dark)
        xs.append(target)
    return _chw(ys), _chw(xs)


def _chw(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32)
