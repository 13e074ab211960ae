"""Training and validation pairs: clean photos darkened by :mod:`export.degrade`, or real
low/normal-light pairs.

A folder with ``low/`` and ``high/`` sub-folders (LOL, Wei et al. 2018: the same scene shot at a
short and a normal exposure, files of the same name) is a *paired* set: the target of each dark
capture is its normal-light shot and nothing is synthesised. Any other folder holds clean photos
that :mod:`export.degrade` darkens.

The split is by scene, then by file name: photos whose (normal-light) pictures look alike, the
same scene shot again (LOL holds 461 pairs of about 220 scenes), form one group
(:func:`scene_groups`), and a group goes to validation or training as a whole, by a CRC32 hash
of its first name. A split by name alone put 34 of 36 validation pairs beside a near-copy of
their scene in training (thumbnail correlation >= 0.98), so validation measured memory, not
what a new scene gets. The split is stable across machines and runs; validation pairs are fixed (centre crop; for clean photos the degradation is seeded by the name), training
pairs are random crops with flips and 90-degree turns (a clean photo degraded with a fresh
parameter draw each time; a real pair cropped and turned as one).
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
    rgb: np.ndarray  # float32 HxWx3 in [0, 1]: the clean photo, or a real pair's normal-light shot
    low: np.ndarray | None = None  # a real pair's dark capture (same size), else None

    def __post_init__(self):
        # a real pair kept as one HxWx6 array (dark capture, then the normal shot): cropped and
        # turned as one without a copy of the whole photo per crop
        self.pair = None if self.low is None else np.concatenate([self.low, self.rgb], axis=2)


def is_paired(folder: str | Path) -> bool:
    """A real low/normal-light set: ``low/`` and ``high/`` sub-folders with files of the same name."""
    return (Path(folder) / "low").is_dir() and (Path(folder) / "high").is_dir()


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


# Two photos whose normalised 24 x 16 grey thumbnails correlate at least this much show one scene.
# On lol_train the nearest other photo correlates >= 0.99 for half of the photos and < 0.8 for a
# tenth; 0.9, 0.95 and 0.98 give 221, 223 and 229 scenes (largest 6 photos).
SAME_SCENE = 0.9


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.resize(rgb.mean(axis=2, dtype=np.float32), (24, 16), interpolation=cv2.INTER_AREA).ravel()
    return (grey - grey.mean()) / (grey.std() + 1e-6) / np.sqrt(grey.size)


def scene_groups(photos: list[Photo], same: float = SAME_SCENE) -> list[int]:
    """A group number per photo: photos linked by a chain of look-alikes (the correlation of
    their normal-light thumbnails >= ``same``) share one."""
    if not photos:
        return []
    thumbs = np.stack([_thumbnail(p.rgb) for p in photos])
    linked = (thumbs @ thumbs.T) >= same
    group = list(range(len(photos)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i, j in zip(*np.nonzero(np.triu(linked, 1))):
        group[root(int(i))] = root(int(j))
    return [root(i) for i in range(len(photos))]


def load_pair(high: Path, low_dir: Path, max_side: int) -> Photo:
    low_path = low_dir / high.name
    if not low_path.is_file():
        raise FileNotFoundError(f"{high}: no dark capture {low_path} of the same name; every high/ file needs one in low/")
    photo, dark = load_photo(high, max_side), load_photo(low_path, max_side)
    if dark.rgb.shape != photo.rgb.shape:
        raise ValueError(f"{low_path}: {dark.rgb.shape[1]}x{dark.rgb.shape[0]} but its pair {high} is "
                         f"{photo.rgb.shape[1]}x{photo.rgb.shape[0]}; a pair must be the same size")
    return Photo(photo.name, photo.rgb, dark.rgb)


def load_photos(folder: str | Path, max_side: int) -> list[Photo]:
    if is_paired(folder):
        return [load_pair(p, Path(folder) / "low", max_side) for p in list_images(Path(folder) / "high")]
    return [load_photo(p, max_side) for p in list_images(folder)]


def load_split(folder: str | Path, val_fraction: float = 0.1, max_side: int = 512) -> tuple[list[Photo], list[Photo]]:
    """``(train, val)`` photos (or real pairs), downscaled so the longest side is at most
    ``max_side``; the photos of one scene (:func:`scene_groups`) all on one side."""
    photos = load_photos(folder, max_side)
    groups = scene_groups(photos)
    first = {}
    for p, g in zip(photos, groups):
        first.setdefault(g, p.name)
    held = [is_val(first[g], val_fraction) for g in groups]
    train = [p for p, h in zip(photos, held) if not h]
    val = [p for p, h in zip(photos, held) if h]
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
    or ``global`` (:func:`export.degrade.degrade`, one exposure scale for the whole photo).
    A real pair is cropped and turned as one, and its dark capture is ``y``."""
    fn = degrader(degradation)
    ys, xs = [], []
    for _ in range(batch):
        photo = photos[int(rng.integers(len(photos)))]
        if photo.low is not None:
            both = random_crop(photo.pair, crop, rng)
            dark, target = both[..., :3], both[..., 3:]
        else:
            dark, target, _ = fn(random_crop(photo.rgb, crop, rng), int(rng.integers(2**31)))
        ys.append(dark)
        xs.append(target)
    return _chw(ys), _chw(xs)


def validation_pairs(photos: list[Photo], size: int = 256, degradation: str = "global") -> tuple[np.ndarray, np.ndarray]:
    """Fixed ``(y, x0)`` pairs: centre crops, degradation seeded by the file name."""
    fn = degrader(degradation)
    ys, xs = [], []
    for p in photos:
        clean = _centre(p.rgb, size)
        if p.low is not None:
            dark, target = _centre(p.low, size), clean
        else:
            dark, target, _ = fn(clean, zlib.crc32(p.name.encode()))
        ys.append(dark)
        xs.append(target)
    return _chw(ys), _chw(xs)


def _centre(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centre square (a multiple of 32, at most ``size``), resized to ``size`` if smaller."""
    h, w = rgb.shape[:2]
    s = min(size, h, w) // 32 * 32
    top, left = (h - s) // 2, (w - s) // 2
    out = np.ascontiguousarray(rgb[top : top + s, left : left + s])
    return out if s == size else cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)


def _chw(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([im.transpose(2, 0, 1) for im in images]).astype(np.float32)
