"""duskwatch degrade --data DIR --exposure E --out DIR: a labelled synthetic-night copy of a photo set.

Every image of ``DIR/images`` goes through the physics-based degradation model
(:mod:`export.degrade`) with its exposure pinned to ``E`` and every other parameter drawn as in
training (noise model Gaussian or Poisson, read noise, white-balance error, JPEG or not, infrared
monochrome or not). ``--model global`` (default) darkens the whole photo by ``E``
(:func:`~export.degrade.degrade`); ``--model night`` makes a night scene whose ambient level is
``E``, with uneven illumination and light sources, some in view with clipped cores and glare
(:func:`~export.degrade.degrade_night`). Each result is written as a lossless PNG under
``OUT/images``; the labels are copied
unchanged (the model keeps geometry). Each image's draw is seeded by ``(seed, crc32(stem))``, so
a set is reproducible image by image whatever the order or subset. ``OUT/degrade.json`` records
the source, the settings and each image's parameters; ``duskwatch bench night`` reads it to
reuse a set it made before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import zlib
from pathlib import Path

HELP = "darken a labelled photo set with the degradation model (synthetic night, labels copied)"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANIFEST = "degrade.json"
MODELS = ("global", "night")


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="labelled set: DIR/images and DIR/labels")
    p.add_argument("--out", required=True, help="output folder (images/*.png, labels/, degrade.json)")
    p.add_argument("--exposure", type=float, required=True,
                   help="linear exposure scale, e.g. 0.05 (1 = as shot; lower is darker)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images (name order)")
    p.add_argument("--model", choices=MODELS, default="global",
                   help="global: the whole photo darkened by E; night: ambient level E, uneven "
                        "light and light sources (default global)")


def run(args: argparse.Namespace) -> int:
    from engines.errors import UserError

    if not 0.0 < args.exposure <= 1.0:
        raise UserError(f"--exposure {args.exposure} is outside (0, 1]; night scenes are about "
                        "0.01-0.2 (docs/DENOISER.md)", exit_code=2)
    src, out = Path(args.data), Path(args.out)
    if not (src / "images").is_dir() or not (src / "labels").is_dir():
        raise UserError(f"{src}: expected images/ and labels/ folders (a labelled set such as "
                        "../shared/data/coco128)", exit_code=2)
    if out.resolve() == src.resolve():
        raise UserError("--out must differ from --data (the source would be overwritten)", exit_code=2)
    manifest = degrade_set(src, out, args.exposure, args.seed, args.limit, args.model)
    print(f"degraded {len(manifest['images'])} images ({args.model} model, exposure {args.exposure}) -> {out}")
    return 0


def image_seed(seed: int, stem: str) -> list[int]:
    """The per-image seed sequence: the same image gets the same draw in any subset or order."""
    return [int(seed), zlib.crc32(stem.encode())]


def degrade_image(bgr, exposure: float, seed: int, stem: str, model: str = "global"):
    """One BGR uint8 image -> (degraded BGR uint8, parameters drawn)."""
    import numpy as np

    from export import degrade as dg

    rng = np.random.default_rng(image_seed(seed, stem))
    if model == "global":
        params = dg.sample_params(rng, exposure=exposure)
        return dg.degrade_bgr_u8(bgr, params, rng), params
    params = dg.sample_night(rng, exposure=exposure)
    rgb = bgr[..., ::-1].astype(np.float32) / 255.0
    dark, _ = dg.degrade_night(rgb, params, rng)
    return dg.quantize_u8(dark)[..., ::-1].copy(), params


def degrade_set(src: Path, out: Path, exposure: float, seed: int, limit: int | None = None,
                model: str = "global") -> dict:
    """Write the darkened copy of ``src`` into ``out``; return the manifest written beside it."""
    import cv2

    images = sorted(p for p in (src / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = images[:limit] if limit is not None else images
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for extra in ("names.txt",):
        if (src / extra).is_file():
            shutil.copy(src / extra, out / extra)
    records = []
    for path in _progress(images, f"degrade {model} e={exposure}"):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot be read as an image")
        dark, params = degrade_image(bgr, exposure, seed, path.stem, model)
        if not cv2.imwrite(str(out / "images" / f"{path.stem}.png"), dark):
            raise OSError(f"cannot write {out / 'images' / (path.stem + '.png')}")
        _copy_labels(src / "labels", out / "labels", path.stem)
        records.append({"file": f"images/{path.stem}.png", "source": path.name,
                        "params": dataclasses.asdict(params)})
    manifest = {"source": str(src.resolve()), "model": model, "exposure": exposure, "seed": seed,
                "limit": limit, "images": records}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _copy_labels(src: Path, dst: Path, stem: str) -> None:
    found = [p for p in (src / f"{stem}.txt", src / f"{stem}.json") if p.is_file()]
    if not found:
        raise ValueError(f"{src}: no label file for {stem} ({stem}.txt or {stem}.json)")
    for p in found:
        shutil.copy(p, dst / p.name)


def _progress(items: list, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc=desc, file=sys.stderr, leave=False, disable=not sys.stderr.isatty())
