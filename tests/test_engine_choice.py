"""The box's fastest engine kind: the rule (fed any box), the real probe, and the three places that
use it (install-service, demo, check-config's warning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon.install import engine_choice as ec
from daemon.install import installer as install

ROOT = Path(__file__).resolve().parents[1]

CPU_BF16 = ec.BoxFacts(openvino=True, cpu_bf16=True, cpu_vnni=True)
CPU_F32 = ec.BoxFacts(openvino=True)
CPU_VNNI = ec.BoxFacts(openvino=True, cpu_vnni=True, nncf=True)  # this project's box: VNNI, no bf16
CPU_BARE = ec.BoxFacts()
GPU_TRT = ec.BoxFacts(tensorrt=True, torch_cuda=True, openvino=True)
GPU_ORT = ec.BoxFacts(ort_cuda=True, torch_cuda=True, openvino=True)
GPU_TORCH = ec.BoxFacts(torch_cuda=True, openvino=True)  # the reference H200 box


@pytest.mark.parametrize("facts, device, detector, enhancer, words", [
    (CPU_BF16, "auto", "openvino", "onnx", "bf16"),
    (CPU_F32, "auto", "openvino", "onnx", "no bf16"),
    (CPU_VNNI, "auto", "openvino", "onnx", "int8, calibrated on this box's cameras"),
    (CPU_BARE, "auto", "onnx", "onnx", "OpenVINO is not installed"),
    (GPU_TRT, "auto", "engine", "engine", "TensorRT"),
    (GPU_ORT, "auto", "onnx", "onnx", "CUDA provider"),
    (GPU_TORCH, "auto", "torchscript", "pt2", "PyTorch runs both engines on the GPU"),
    (GPU_TRT, "cpu", "openvino", "onnx", "no GPU"),  # --device cpu: the CPU rule
])
def test_the_rule_picks_the_fastest_kind_and_says_why(facts, device, detector, enhancer, words):
    choice = ec.choose_engines(facts, device)
    assert (choice.detector, choice.enhancer) == (detector, enhancer)
    assert words in choice.reason
    assert choice.detector_suffix == install.engine_specs(detector)[0].path.suffix
    assert choice.enhancer_suffix == install.engine_specs(detector, enhancer_fmt=enhancer)[1].path.suffix


@pytest.mark.parametrize("facts, int8", [
    (CPU_VNNI, True), (CPU_BF16, False), (CPU_F32, False), (CPU_BARE, False),
    (ec.BoxFacts(cpu_vnni=True, nncf=True), False),  # no OpenVINO: ONNX Runtime f32
    (ec.BoxFacts(openvino=True, cpu_vnni=True), False),  # no NNCF: f32, the reason says so
    (ec.BoxFacts(torch_cuda=True, openvino=True, cpu_vnni=True), False),  # a GPU box
])
def test_int8_only_on_a_vnni_cpu_without_bf16_with_openvino(facts, int8):
    choice = ec.choose_engines(facts)
    assert choice.int8 is int8
    assert ("int8, calibrated on this box's cameras" in choice.describe()) is int8
    if int8:
        assert "engines.int8: auto" in choice.reason and choice.detector == "openvino"
    if facts == ec.BoxFacts(openvino=True, cpu_vnni=True):
        assert "NNCF is not installed" in choice.reason
    assert ec.choose_engines(CPU_VNNI, "cpu").int8  # --device cpu on a VNNI box: int8 too


def test_cpu_flags_decide_vnni(tmp_path):
    info = tmp_path / "cpuinfo"
    for flags, vnni in (("avx2 avx512f avx512_vnni", True), ("avx2 avx_vnni", True),
                        ("avx2 avx512f", False)):
        info.write_text(f"processor\t: 0\nflags\t\t: fpu {flags}\n")
        assert ec.cpu_has_vnni(info) is vnni
    assert not ec.cpu_has_vnni(tmp_path / "absent")


def test_int8_warning_only_for_an_f32_ir_with_int8_off_on_an_int8_box(tmp_path):
    f32, int8 = tmp_path / "y.xml", tmp_path / "y.int8.xml"
    (tmp_path / "y.int8.xml.json").write_text('{"precision": "int8"}')
    [w] = ec.int8_warnings(f32, "off", CPU_VNNI)
    assert w.startswith(f"engines.int8 is off and engines.detector {f32} is an OpenVINO IR")
    assert "engines.int8: auto" in w and "export openvino-int8" in w
    assert ec.int8_warnings(f32, "auto", CPU_VNNI) == []
    assert ec.int8_warnings(int8, "off", CPU_VNNI) == []  # already int8
    assert ec.int8_warnings(tmp_path / "y.onnx", "off", CPU_VNNI) == []
    assert ec.int8_warnings(f32, "off", CPU_BF16) == [] == ec.int8_warnings(f32, "off", CPU_F32)


def test_cpu_flags_decide_bf16(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n\nflags : amx_bf16\n")
    assert ec.cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert not ec.cpu_has_bf16(info)
    assert not ec.cpu_has_bf16(tmp_path / "absent")


def test_the_probe_in_a_subprocess_sees_what_this_process_sees():
    assert ec.probe_box_in() == ec.probe_box()
    broken = lambda argv: subprocess.CompletedProcess(argv, 1, "", "boom")  # noqa: E731
    assert ec.probe_box_in(runner=broken) == CPU_BARE
    garbage = lambda argv: subprocess.CompletedProcess(argv, 0, "not json\n", "")  # noqa: E731
    assert ec.probe_box_in(runner=garbage) == CPU_BARE


def test_kind_warnings_name_the_engine_the_fix_and_the_reason():
    [det] = ec.kind_warnings("/e/yolo.onnx", "/e/denoiser.onnx", CPU_F32)
    assert det.startswith("engines.detector /e/yolo.onnx runs on ONNX Runtime")
    assert "OpenVINO (.xml)" in det and "--format openvino" in det and "no bf16" in det
    assert ec.kind_warnings("/e/yolo.xml", "/e/denoiser.onnx", CPU_F32) == []
    assert ec.kind_warnings("triton://h:8001/yolo", None, CPU_F32) == []
    both = ec.kind_warnings("/e/yolo.xml", "/e/denoiser.onnx", GPU_TRT)
    assert [w.split()[0] for w in both] == ["engines.detector", "engines.enhancer"]
    assert all("TensorRT (.engine)" in w for w in both)
    assert ec.kind_warnings("/e/yolo.plan", "/e/d.engine", GPU_TRT) == []


def test_install_service_builds_the_box_choice_and_format_overrides_it(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "daemon.cli", "install-service", "--root",
                               str(tmp_path), "--no-build", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    best = ec.choose_engines(ec.probe_box())
    res = cli()
    assert res.returncode == 0, res.stderr
    assert f"engines chosen for this box: {best.describe()}" in res.stdout
    cfg = yaml.safe_load(install.under(tmp_path, install.CONFIG_PATH).read_text())["engines"]
    assert cfg["detector"] == f"/var/lib/duskwatch/engines/yolo11n{best.detector_suffix}"
    assert cfg["enhancer"] == f"/var/lib/duskwatch/engines/denoiser{best.enhancer_suffix}"
    assert f"--format {best.detector}" in res.stderr  # the --no-build hint: the command to run
    subprocess.run([sys.executable, "-m", "daemon.cli", "install-service", "--root", str(tmp_path),
                    "--uninstall"], cwd=ROOT, capture_output=True, timeout=60, check=True)
    res = cli("--format", "onnx")
    assert res.returncode == 0 and "--format onnx as asked" in res.stdout
    cfg = yaml.safe_load(install.under(tmp_path, install.CONFIG_PATH).read_text())["engines"]
    assert cfg["detector"].endswith("yolo11n.onnx") and cfg["enhancer"].endswith("denoiser.onnx")


def test_demo_exports_the_box_choice():
    from daemon.cli.demo import engine_choice, export_command

    class Args:
        format, device = "auto", "auto"

    best = ec.choose_engines(ec.probe_box())
    assert engine_choice(Args()) == best
    cmd = export_command("yolo", Path("x" + best.detector_suffix), 160, "w.pt", best.detector)
    assert cmd[cmd.index("--format") + 1] == best.detector
    Args.format = "onnx"
    assert (engine_choice(Args()).detector, engine_choice(Args()).enhancer) == ("onnx", "onnx")


def test_check_config_warns_but_passes_when_the_engine_is_not_the_fastest_kind(tmp_path):
    from tests.yolo_exports import exported

    detector = exported("onnx", imgsz=64, batch=1, dynamic=True)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate"}],
        "engines": {"detector": str(detector), "device": "cpu"}}))
    res = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", str(config)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    best = ec.choose_engines(ec.probe_box(), "cpu")
    warned = f"warning: engines.detector {detector} runs on ONNX Runtime" in res.stderr
    assert warned == (best.detector != "onnx"), res.stderr
    quiet = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "--no-engines",
                            str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "runs on ONNX Runtime" not in quiet.stderr


def test_check_config_warns_when_int8_is_off_for_an_f32_openvino_detector(tmp_path):
    """A real (random-weights) OpenVINO IR opened by check-config, engines.int8: off."""
    ov = pytest.importorskip("openvino")
    from tests.yolo_exports import exported

    onnx = exported("onnx", imgsz=64, batch=1, dynamic=True)
    xml = tmp_path / "yolo.xml"
    ov.save_model(ov.convert_model(str(onnx)), str(xml))
    (tmp_path / "yolo.xml.json").write_text(Path(f"{onnx}.json").read_text())  # imgsz, names
    config = tmp_path / "c.yaml"
    for mode in ("off", "auto"):
        config.write_text(yaml.safe_dump({
            "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:8554/gate"}],
            "engines": {"detector": str(xml), "device": "cpu", "int8": mode}}))
        res = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", str(config)],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        warned = f"warning: engines.int8 is off and engines.detector {xml}" in res.stderr
        assert warned == (mode == "off" and ec.choose_engines(ec.probe_box(), "cpu").int8), res.stderr


def test_install_service_says_int8_follows_and_calib_dir_needs_openvino(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "daemon.cli", "install-service", "--root",
                               str(tmp_path), "--no-build", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    res = cli()
    assert res.returncode == 0, res.stderr
    said = "the service makes the int8 detector itself once the cameras stream" in res.stdout
    assert said == ec.choose_engines(ec.probe_box()).int8, res.stdout
    if said:
        assert "200 frames, one per camera every 3 s: about 10 min with 1 camera" in res.stdout
    res = cli("--format", "onnx", "--force", "--calib-dir", str(tmp_path))
    assert res.returncode != 0 and "--calib-dir builds an int8 OpenVINO detector" in res.stderr


def test_upgrade_from_a_folder_builds_checks_and_records(tmp_path):
    """install-service --calib-dir's path (daemon.int8.offline) with the build and detector seams
    faked: the folder's frames split into calibration and check, the verdict recorded."""
    import cv2
    import numpy as np

    from daemon.int8.offline import FolderError, upgrade_from_folder
    from daemon.int8.sibling import Sibling
    from tests.daemon_fakes import FakeDetector
    from tests.test_int8_upgrade import VNNI_BOX, fake_build
    from daemon.int8.upgrader import Settings

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(6):
        cv2.imwrite(str(frames / f"f{i}.jpg"), np.full((32, 48, 3), 40 * i, np.uint8))
    f32 = tmp_path / "e" / "y.xml"
    f32.parent.mkdir()
    f32.write_text("<net/>")
    f32.with_suffix(".bin").write_bytes(b"x")
    s = Settings(facts=VNNI_BOX, calib_frames=4, check_frames=2, min_boxes=1,
                 build_argv=fake_build("ok"), nice=0)
    said = []
    res = upgrade_from_folder(f32, frames, s, lambda path, conf: FakeDetector(), said.append)
    assert res.passed and res.frames == 2 and Sibling(f32).usable()
    assert said[0] == f"int8: 4 calibration and 2 check frames from {frames}"
    assert not Sibling(f32).frames.exists()  # nothing left beside the engines
    with pytest.raises(FolderError, match="no images"):
        upgrade_from_folder(f32, tmp_path / "e", s, lambda path, conf: FakeDetector())
