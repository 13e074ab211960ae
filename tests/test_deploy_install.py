"""duskwatch install-service: into a temporary root, what it writes, and --uninstall removing
exactly that. The command runs for real (as a subprocess); engine builds run the real export
command where it is quick, and a fake export at the runner seam elsewhere."""

from __future__ import annotations

import importlib.util
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon.install import installer as install
from daemon.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DUSKWATCH = Path(sys.executable).parent / "duskwatch"


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "install-service", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def tree(root: Path) -> list[str]:
    return sorted("/" + str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*"))


def staged_config(root: Path) -> dict:
    return yaml.safe_load(install.under(root, install.CONFIG_PATH).read_text())


def test_install_no_build_then_uninstall(tmp_path):
    res = cli("--root", str(tmp_path), "--no-build", "--format", "onnx")
    assert res.returncode == 0, res.stderr
    assert tree(tmp_path) == [
        "/etc/", "/etc/duskwatch/", "/etc/duskwatch/credentials/", "/etc/duskwatch/duskwatch.yaml",
        "/etc/systemd/", "/etc/systemd/system/", "/etc/systemd/system/duskwatch.service",
        "/var/", "/var/lib/", "/var/lib/duskwatch/", "/var/lib/duskwatch/engines/",
        "/var/lib/duskwatch/install-manifest.json",
    ]
    unit = install.under(tmp_path, install.UNIT_PATH).read_text()
    exe = Path(sys.executable).parent / "duskwatch"
    assert f"ExecStart={exe} run --config /etc/duskwatch/duskwatch.yaml" in unit
    assert install.TEMPLATE_EXEC not in unit
    assert f"Documentation=file://{ROOT / 'deploy' / 'README.md'}" in unit
    creds = install.under(tmp_path, install.CREDENTIALS_DIR)
    assert stat.S_IMODE(creds.stat().st_mode) == 0o700
    cfg_path = install.under(tmp_path, install.CONFIG_PATH)
    assert stat.S_IMODE(cfg_path.stat().st_mode) == 0o644  # the DynamicUser must read it
    cfg = staged_config(tmp_path)
    assert cfg["engines"]["detector"] == "/var/lib/duskwatch/engines/yolo11n.onnx"
    assert cfg["engines"]["enhancer"] == "/var/lib/duskwatch/engines/denoiser.onnx"
    cfg["engines"]["check_files"] = False  # the engines were not built (--no-build)
    parse_config(cfg)  # the installed config is valid
    for step in ("systemctl daemon-reload", "systemctl enable --now duskwatch.service",
                 "check-config /etc/duskwatch/duskwatch.yaml"):
        assert step in res.stdout
    assert "export yolo --weights yolo11n.pt" in res.stderr  # how to build what was skipped
    manifest = json.loads(install.under(tmp_path, install.MANIFEST_PATH).read_text())
    assert set(manifest["files"]) == {str(install.UNIT_PATH), str(install.CONFIG_PATH)}

    res = cli("--root", str(tmp_path), "--uninstall")
    assert res.returncode == 0, res.stderr
    assert tree(tmp_path) == []


def test_uninstall_keeps_an_edited_config_until_purge(tmp_path):
    assert cli("--root", str(tmp_path), "--no-build", "--format", "onnx").returncode == 0
    cfg = install.under(tmp_path, install.CONFIG_PATH)
    cfg.write_text(cfg.read_text() + "# edited by the operator\n")
    (install.under(tmp_path, install.CREDENTIALS_DIR) / "gate").write_text("secret")

    res = cli("--root", str(tmp_path), "--uninstall")
    assert res.returncode == 0
    assert "kept /etc/duskwatch/duskwatch.yaml" in res.stdout
    assert cfg.is_file() and not install.under(tmp_path, install.UNIT_PATH).exists()

    res = cli("--root", str(tmp_path), "--uninstall", "--purge")
    assert res.returncode == 0
    # the operator's password file was never install-service's: it stays, and so does its folder
    assert tree(tmp_path) == ["/etc/", "/etc/duskwatch/", "/etc/duskwatch/credentials/",
                              "/etc/duskwatch/credentials/gate"]


def test_uninstall_takes_what_the_daemon_made_from_an_installed_ir(tmp_path):
    """The daemon makes its int8 IR and calibration frames beside the f32 IR install-service
    built (daemon.int8): they go with it; a file of the operator's in the same folder stays."""
    inst = install.Installer(tmp_path, say=lambda m: None)
    inst.make_dir(install.ENGINES_DIR)
    engines = install.under(tmp_path, install.ENGINES_DIR)
    for name in ("yolo11n.xml", "yolo11n.bin", "yolo11n.xml.json"):
        (engines / name).write_text(name)
        inst.record(install.ENGINES_DIR / name)
    for name in ("yolo11n.int8.xml", "yolo11n.int8.bin", "yolo11n.int8.xml.json"):
        (engines / name).write_text("made by the daemon")
    (engines / "yolo11n.int8-frames" / "calib").mkdir(parents=True)
    (engines / "yolo11n.int8-frames" / "calib" / "000001.jpg").write_bytes(b"jpeg")
    (engines / "notes.txt").write_text("the operator's")
    said: list[str] = []
    report = install.uninstall(tmp_path, say=said.append)
    assert sorted(p.name for p in engines.iterdir()) == ["notes.txt"]
    assert "/var/lib/duskwatch/engines/yolo11n.int8-frames/" in report.removed
    assert any("made by the daemon from /var/lib/duskwatch/engines/yolo11n.xml" in m for m in said)
    assert "/var/lib/duskwatch/engines/" in report.kept  # not empty: the operator's file


def test_existing_files_are_not_overwritten(tmp_path):
    unit = install.under(tmp_path, install.UNIT_PATH)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    res = cli("--root", str(tmp_path), "--no-build", "--format", "onnx")
    assert res.returncode == 1
    assert "was not written by install-service" in res.stderr and "--force" in res.stderr
    assert unit.read_text() == "[Service]\nExecStart=/bin/true\n"

    unit.unlink()
    cfg = install.under(tmp_path, install.CONFIG_PATH)
    cfg.parent.mkdir(parents=True)
    cfg.write_text("cameras: []\n")
    res = cli("--root", str(tmp_path), "--no-build", "--format", "onnx")
    assert res.returncode == 0, res.stderr
    assert cfg.read_text() == "cameras: []\n"  # the operator's config is never replaced
    assert "kept the existing /etc/duskwatch/duskwatch.yaml" in res.stderr
    assert install.under(tmp_path, install.CONFIG_DIR / "duskwatch.yaml.example").is_file()
    assert cli("--root", str(tmp_path), "--uninstall").returncode == 0
    assert cfg.read_text() == "cameras: []\n"


class FakeExport:
    """The runner seam: writes what `duskwatch export` would (the engine and its sidecar)."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv):
        self.calls.append(list(argv))
        what = argv[argv.index("export") + 1]
        if what == self.fail_on:
            return subprocess.CompletedProcess(argv, 1, "", "export failed: no weights\n")
        out = Path(argv[argv.index("--out") + 1])
        out.write_bytes(b"engine bytes " + what.encode())
        Path(str(out) + ".json").write_text(json.dumps({"built_by": "fake"}))
        return subprocess.CompletedProcess(argv, 0, "", "")


def plan(root: Path, fmt: str = "onnx", enhancer: bool = True) -> install.InstallPlan:
    deploy = install.find_deploy_dir()
    return install.InstallPlan(
        root=root,
        unit_text=install.render_unit((deploy / "systemd" / install.UNIT_NAME).read_text(),
                                      "/usr/bin/duskwatch", "duskwatch"),
        example_config=(deploy / "duskwatch.example.yaml").read_text(),
        specs=install.engine_specs(fmt, enhancer=enhancer,
                                   engines_dir=install.under(root, install.ENGINES_DIR)),
    )


def test_build_runs_the_export_commands_and_records_their_files(tmp_path):
    fake = FakeExport()
    install.Installer(tmp_path, runner=fake, say=lambda _: None).install(plan(tmp_path, "engine"))
    assert [c[:6] for c in fake.calls] == [
        [sys.executable, "-m", "daemon.cli", "export", "yolo", "--weights"],
        [sys.executable, "-m", "daemon.cli", "export", "denoiser", "--steps"],
    ]
    assert all(c[c.index("--format") + 1] == "engine" for c in fake.calls)
    engines = install.under(tmp_path, install.ENGINES_DIR)
    assert sorted(p.name for p in engines.iterdir()) == [
        "denoiser.engine", "denoiser.engine.json", "yolo11n.engine", "yolo11n.engine.json"]
    manifest = install.Manifest.load(tmp_path)
    assert {f"/var/lib/duskwatch/engines/{p.name}" for p in engines.iterdir()} <= set(manifest.files)
    cfg = staged_config(tmp_path)
    assert cfg["engines"]["detector"] == "/var/lib/duskwatch/engines/yolo11n.engine"
    assert cfg["engines"]["enhancer"] == "/var/lib/duskwatch/engines/denoiser.engine"

    (engines / "timing.cache").write_text("left by the running service")
    report = install.uninstall(tmp_path, say=lambda _: None)
    assert "/var/lib/duskwatch/engines/yolo11n.engine" in report.removed
    assert tree(tmp_path) == ["/var/", "/var/lib/", "/var/lib/duskwatch/",
                              "/var/lib/duskwatch/engines/", "/var/lib/duskwatch/engines/timing.cache"]


def test_a_failed_build_names_the_command_and_can_be_uninstalled(tmp_path):
    fake = FakeExport(fail_on="denoiser")
    with pytest.raises(install.InstallError) as err:
        install.Installer(tmp_path, runner=fake, say=lambda _: None).install(plan(tmp_path))
    msg = str(err.value)
    assert "building the enhancer failed (exit status 1)" in msg
    assert "export failed: no weights" in msg and "export denoiser" in msg and "--no-enhancer" in msg
    install.uninstall(tmp_path, say=lambda _: None)
    assert tree(tmp_path) == []


def test_without_enhancer_the_config_has_none(tmp_path):
    install.Installer(tmp_path, runner=FakeExport(), say=lambda _: None).install(
        plan(tmp_path, enhancer=False))
    cfg = staged_config(tmp_path)
    assert "enhancer" not in cfg["engines"]
    cfg["engines"]["check_files"] = False
    parse_config(cfg)


def test_format_choice_follows_the_probed_box():
    trt = '{"tensorrt": true, "torch_cuda": true}'
    ok = lambda argv: subprocess.CompletedProcess(argv, 0, trt + "\n", "")  # noqa: E731
    missing = lambda argv: subprocess.CompletedProcess(argv, 1, "", "")  # noqa: E731
    assert install.choose_engines(runner=ok).detector == "engine"
    assert install.choose_engines(runner=missing).detector == "onnx"
    here = "engine" if importlib.util.find_spec("tensorrt") else None
    real = install.choose_engines()  # the real probe, in a subprocess
    assert real.detector == here if here else real.detector in ("openvino", "onnx", "torchscript")


def test_unit_rendering_and_sandbox_warnings():
    template = (ROOT / "deploy" / "systemd" / install.UNIT_NAME).read_text()
    text = install.render_unit(template, "/opt/dw/bin/duskwatch", "cams")
    assert "User=cams\n" in text and "Group=cams\n" in text
    assert "ExecStart=/opt/dw/bin/duskwatch run" in text
    with pytest.raises(install.InstallError, match="not a valid user name"):
        install.render_unit(template, "/opt/dw/bin/duskwatch", "Bad User")
    assert install.executable_warnings(Path("/home/me/venv/bin/duskwatch"))
    assert "ProtectHome" in install.executable_warnings(Path("/root/venv/bin/duskwatch"))[0]
    assert install.executable_warnings(Path("/opt/duskwatch/venv/bin/duskwatch")) == []


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None,
                    reason="ultralytics not installed: the export extra (pip install -e .[export]) builds engines")
def test_real_build_of_a_small_detector(tmp_path):
    """A real `duskwatch export yolo` run (random yolo11n weights at 64 px) through install-service;
    the engine it leaves opens with ONNX Runtime."""
    res = cli("--root", str(tmp_path), "--format", "onnx", "--weights", "yolo11n.yaml",
              "--imgsz", "64", "--max-batch", "2", "--no-enhancer")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    engine = install.under(tmp_path, install.ENGINES_DIR / "yolo11n.onnx")
    assert engine.is_file() and Path(str(engine) + ".json").is_file()
    import onnxruntime as ort

    session = ort.InferenceSession(str(engine), providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == 1 and session.get_inputs()[0].shape[1] == 3
    cfg = staged_config(tmp_path)
    cfg["engines"]["detector"] = str(engine)  # the staged path: the config names /var/lib/...
    parse_config(cfg)  # check_files on: the engine exists
    assert cli("--root", str(tmp_path), "--uninstall").returncode == 0
    assert tree(tmp_path) == []
