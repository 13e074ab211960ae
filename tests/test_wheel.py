"""The wheel works on its own: built from this checkout, installed into a fresh virtual
environment outside it, then `duskwatch demo`, `install-service --root DIR` and `check-config`
run from a folder that is not the checkout.

The fresh environment gets its third-party packages (torch, ultralytics, ONNX Runtime...) from
the test's own environment through a ``.pth`` line, never the checkout: this test is about what
the wheel carries, not about downloading dependencies again.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run(cmd, cwd, timeout=300, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", **kw.pop("env", {}))
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, a work folder outside the checkout) with the wheel installed."""
    base = tmp_path_factory.mktemp("wheel")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "-w", base / "dist", ROOT], cwd=base)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((base / "dist").glob("duskwatch-*.whl"))
    venv = base / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                    cwd=base).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", wheel], cwd=base)
    assert done.returncode == 0, done.stderr[-3000:]
    work = base / "work"
    work.mkdir()
    return venv / "bin", work


def test_the_package_comes_from_the_wheel_not_the_checkout(installed):
    bin_dir, work = installed
    res = run([bin_dir / "python", "-c", "import daemon, engines, export; "
               "print(daemon.__file__, engines.__file__, export.__file__)"], cwd=work)
    assert res.returncode == 0, res.stderr
    assert str(ROOT) not in res.stdout and str(bin_dir.parent) in res.stdout


def test_the_wheel_carries_the_review_page(installed):
    """The page's assets are package data: the installed app serves them, not the checkout's."""
    bin_dir, work = installed
    res = run([bin_dir / "python", "-c", "import json; from daemon.service.web.app import STATIC; "
               "print(STATIC); print(json.dumps(sorted(p.name for p in STATIC.iterdir())))"],
              cwd=work)
    assert res.returncode == 0, res.stderr
    folder, names = res.stdout.splitlines()
    assert str(bin_dir.parent) in folder
    assert {"index.html", "app.js", "style.css"} <= set(json.loads(names))


def test_install_service_finds_its_files_in_the_wheel(installed, tmp_path):
    bin_dir, work = installed
    res = run([bin_dir / "duskwatch", "install-service", "--root", tmp_path, "--no-build",
               "--format", "onnx"], cwd=work)
    assert res.returncode == 0, res.stderr
    unit = (tmp_path / "etc/systemd/system/duskwatch.service").read_text()
    assert f"ExecStart={bin_dir / 'duskwatch'} run" in unit
    assert str(bin_dir.parent / "share" / "duskwatch" / "deploy" / "README.md") in unit
    assert (tmp_path / "etc/duskwatch/duskwatch.yaml").is_file()


DATA = ROOT.parent / "shared" / "data"


@pytest.mark.skipif(not (DATA / "weights" / "yolo11n_coco_fp32.pt").is_file(),
                    reason="needs the real YOLO11n weights in ../shared/data/weights (no "
                    "downloads here); a user's demo fetches yolo11n.pt instead")
def test_demo_then_check_config_from_the_wheel(installed, tmp_path):
    bin_dir, work = installed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    res = run([bin_dir / "duskwatch", "demo", "--duration", "6", "--imgsz", "160", "--fps", "4",
               "--cache-dir", cache, "--listen", f"127.0.0.1:{port}"], cwd=work, timeout=400,
              env={"DUSKWATCH_DATA": str(DATA)})
    assert res.returncode == 0, res.stderr[-3000:]
    events = cache / "demo-events.jsonl"
    assert events.is_file() and str(events) in res.stderr
    engines = sorted(e for e in (cache / "engines").iterdir() if e.suffix in (".onnx", ".xml"))
    assert len(engines) == 2, engines  # the detector (the box's fastest kind) and the denoiser
    detector = next(e for e in engines if e.name != "denoiser.onnx")
    config = tmp_path / "duskwatch.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate"}],
        "engines": {"detector": str(detector), "enhancer": str(cache / "engines" / "denoiser.onnx")},
    }))
    ok = run([bin_dir / "duskwatch", "check-config", config], cwd=work)
    assert ok.returncode == 0, ok.stderr
    assert "valid (1 cameras)" in ok.stdout
    bad = dict(yaml.safe_load(config.read_text()), extra=1)
    config.write_text(json.dumps(bad))
    refused = run([bin_dir / "duskwatch", "check-config", config], cwd=work)
    assert refused.returncode == 2 and "extra" in refused.stderr
