"""Small YOLO exports shared by the engine, detector, parity and export tests.

Exports are cached for the whole pytest session (one folder, removed at exit) so that each
(format, imgsz, batch) is exported once however many test modules use it. The model is
``yolo11n.yaml`` with seeded random weights, rescaled so that its outputs depend on the image:
at ultralytics' initialisation every class probability is ~1e-5 everywhere, which would make
"the same detections" an empty statement. Convolutions get variance-preserving He-normal
weights (He et al. 2015) and the class logits a bias of -1.5, so a real photo yields a few
hundred boxes over dozens of classes with distinct scores.
"""

from __future__ import annotations

import atexit
import functools
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLEAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "clean"
_ROOT: Path | None = None


def session_dir() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="duskwatch-yolo-tests-"))
        atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    return _ROOT


@functools.lru_cache(maxsize=None)
def reference_model(seed: int = 0):
    """The seeded, rescaled ultralytics YOLO (see the module docstring), in eval mode."""
    import torch

    from export.yolo import load_yolo

    logger = logging.getLogger("export.yolo")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the random-weights banner: expected here
    try:
        model = load_yolo("yolo11n.yaml", seed=seed)
    finally:
        logger.setLevel(level)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in model.model.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
        for branch in model.model.model[-1].cv3:
            branch[-1].bias.fill_(-1.5)
    model.model.eval()
    return model


@functools.lru_cache(maxsize=None)
def exported(fmt: str, imgsz: int = 320, batch: int = 2, dynamic: bool = False) -> Path:
    """Path of ``reference_model()`` exported to ``fmt`` (onnx or torchscript), with sidecar."""
    from export.yolo import ExportOptions, export_yolo

    suffix = {"onnx": ".onnx", "torchscript": ".torchscript"}[fmt]
    tag = "dyn" if dynamic else f"b{batch}"
    out = session_dir() / f"yolo11n_{imgsz}_{tag}{suffix}"
    opts = ExportOptions(fmt=fmt, imgsz=imgsz, batch=batch, dynamic=dynamic)
    return export_yolo(reference_model(), out, opts, weights="yolo11n.yaml")


def sample_images(n: int = 3) -> list[np.ndarray]:
    """Real photos of different sizes from the shared data, or drawn scenes when it is absent."""
    import cv2

    files = sorted(CLEAN.glob("*.jpg"))[:n] if CLEAN.is_dir() else []
    images = [cv2.imread(str(f)) for f in files]
    images = [im for im in images if im is not None]
    rng = np.random.default_rng(0)
    while len(images) < n:  # synthetic: shapes on a gradient, varied sizes and aspect ratios
        h, w = int(rng.integers(200, 700)), int(rng.integers(200, 900))
        img = np.tile(np.linspace(30, 200, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
        for _ in range(8):
            x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 200)), y + int(rng.integers(20, 200))),
                          color, -1)
        images.append(img)
    return images
