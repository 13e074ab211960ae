"""duskwatch degrade: a darkened, labelled copy of a photo set, reproducible per seed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from daemon.cli.main import main


def _photo_set(root: Path, n: int = 3) -> Path:
    """A tiny labelled set: textured photos (generated) with YOLO labels."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        img = cv2.GaussianBlur(rng.integers(40, 230, (96, 128, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(root / "images" / f"p{i}.jpg"), img)
        (root / "labels" / f"p{i}.txt").write_text(f"{i} 0.5 0.5 0.25 0.5\n")
    (root / "names.txt").write_text("a\nb\nc\n")
    return root


def _run(src: Path, out: Path, exposure: float, seed: int = 0, model: str = "global") -> int:
    return main(["degrade", "--data", str(src), "--out", str(out), "--exposure", str(exposure),
                 "--seed", str(seed), "--model", model])


def _pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((folder / "images").glob("*.png"))}


def test_darkens_copies_labels_and_records_parameters(tmp_path):
    src = _photo_set(tmp_path / "src")
    assert _run(src, tmp_path / "dark", 0.05) == 0
    dark = _pixels(tmp_path / "dark")
    assert sorted(dark) == ["p0.png", "p1.png", "p2.png"]
    for name, img in dark.items():
        orig = cv2.imread(str(src / "images" / name.replace(".png", ".jpg")))
        assert img.shape == orig.shape and img.mean() < orig.mean() / 3
        label = name.replace(".png", ".txt")
        assert (tmp_path / "dark" / "labels" / label).read_text() == (src / "labels" / label).read_text()
    manifest = json.loads((tmp_path / "dark" / "degrade.json").read_text())
    assert manifest["exposure"] == 0.05 and len(manifest["images"]) == 3
    assert all(r["params"]["exposure"] == 0.05 for r in manifest["images"])
    assert (tmp_path / "dark" / "names.txt").is_file()


def test_same_seed_same_pixels_other_seed_or_exposure_differ(tmp_path):
    src = _photo_set(tmp_path / "src")
    _run(src, tmp_path / "a", 0.05)
    _run(src, tmp_path / "b", 0.05)
    _run(src, tmp_path / "c", 0.05, seed=1)
    _run(src, tmp_path / "d", 0.2)
    a, b, c, d = (_pixels(tmp_path / k) for k in "abcd")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)
    assert np.mean([d[k].mean() for k in d]) > np.mean([a[k].mean() for k in a])


def test_night_model_is_reproducible_and_differs_from_the_global_one(tmp_path):
    src = _photo_set(tmp_path / "src")
    _run(src, tmp_path / "n1", 0.05, model="night")
    _run(src, tmp_path / "n2", 0.05, model="night")
    _run(src, tmp_path / "g", 0.05)
    n1, n2, g = (_pixels(tmp_path / k) for k in ("n1", "n2", "g"))
    assert all(np.array_equal(n1[k], n2[k]) for k in n1)
    assert not all(np.array_equal(n1[k], g[k]) for k in n1)
    manifest = json.loads((tmp_path / "n1" / "degrade.json").read_text())
    assert manifest["model"] == "night"
    assert all(r["params"]["camera"]["exposure"] == 0.05 for r in manifest["images"])


def test_bad_arguments_name_the_fix(tmp_path, capsys):
    assert _run(tmp_path, tmp_path / "out", 0.05) == 2
    assert "expected images/ and labels/" in capsys.readouterr().err
    src = _photo_set(tmp_path / "src")
    assert _run(src, tmp_path / "out", 1.5) == 2
    assert "outside (0, 1]" in capsys.readouterr().err


def test_registered_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "degrade", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--exposure" in out.stdout
