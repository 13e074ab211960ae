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

CPU_BF16 = ec.BoxFacts(openvino=True, cpu_bf16=True)
CPU_F32 = ec.BoxFacts(openvino=True)
CPU_BARE = ec.BoxFacts()
GPU_TRT = ec.BoxFacts(tensorrt=True, torch_cuda=True, openvino=True)
GPU_ORT = ec.BoxFacts(ort_cuda=True, torch_cuda=True, openvino=True)
GPU_TORCH = ec.BoxFacts(torch_cuda=True, openvino=True)  # the reference H200 box


@pytest.mark.parametrize("facts, device, detector, enhancer, words", [
    (CPU_BF16, "auto", "openvino", "onnx", "bf16"),
    (CPU_F32, "auto", "openvino", "onnx", "no bf16"),
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
