"""`duskwatch run` under signals at bad moments and `check-config` agreeing with it (issue 12,
items 2, 4, 5): a real subprocess, real signals, a real notify socket, a silent TCP camera."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.test_daemon_e2e import NotifyListener

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session")
def detector_engine() -> Path:
    from tests.yolo_exports import exported

    return exported("onnx", imgsz=160, batch=8, dynamic=True)


@pytest.fixture
def silent_port():
    srv = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield srv.getsockname()[1]
    srv.close()


def config(tmp_path, detector, cams, port=None, **extra):
    cfg = {"cameras": cams, "engines": {"detector": str(detector), "device": "cpu"},
           "http": {"listen": f"127.0.0.1:{port or free_port()}"}, "sinks": [], **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def start(tmp_path, path, env=None):
    notify = NotifyListener(tmp_path / "notify.sock")
    log = open(tmp_path / "daemon.log", "wb")
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
                    NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000", **(env or {}))
    full_env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--config", str(path)],
                            cwd=tmp_path, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    return proc, notify


def wait_log(tmp_path, text, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if text in (tmp_path / "daemon.log").read_text(errors="replace"):
            return True
        time.sleep(0.02)
    raise AssertionError(f"no '{text}' in the log:\n{(tmp_path / 'daemon.log').read_text()}")


@pytest.mark.parametrize("moment", ["config", "engines", "camera"])
def test_sigterm_at_any_moment_exits_0_within_5s_without_ready(tmp_path, detector_engine,
                                                               silent_port, moment):
    cams = [{"name": "slow", "url": f"rtsp://127.0.0.1:{silent_port}/x", "open_timeout_s": 30}]
    path = config(tmp_path, detector_engine, cams)
    proc, notify = start(tmp_path, path)
    try:
        if moment == "config":
            time.sleep(1.0)  # inside duskwatch code: imports, config reading
        elif moment == "engines":
            wait_log(tmp_path, "HTTP on")  # engines load next
        else:  # cameras connect after READY=1: SIGTERM while the camera is still connecting
            notify.wait("READY=1", 60)
            wait_log(tmp_path, "camera slow: stopped -> connecting")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        took = time.monotonic() - t0
        log = (tmp_path / "daemon.log").read_text(errors="replace")
        assert code == 0, log
        assert took < 5.0, (took, log)
        if "stop requested during start-up" in log:  # stopped before READY=1: it never came
            time.sleep(1.0)  # inside duskwatch code: imports, config reading
            assert notify.seen("READY=1") is None, log
        else:  # READY=1 came before the signal
            assert log.index("ready:") < log.index("stopping"), log
        assert "Traceback" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def test_sighup_early_and_with_garbage_never_kills_the_daemon(tmp_path, detector_engine):
    path = config(tmp_path, detector_engine, [])
    proc, notify = start(tmp_path, path)
    try:
        time.sleep(0.6)  # once duskwatch code runs (the interpreter's own start-up is ~0.2 s)
        proc.send_signal(signal.SIGHUP)  # before engines are loaded
        notify.wait("READY=1", 60)
        good = path.read_bytes()
        for content in (os.urandom(4096), b"a: " + b"[" * 5000 + b"]" * 5000):
            path.write_bytes(content)
            proc.send_signal(signal.SIGHUP)
            wait_log(tmp_path, "keeping the running config")
            assert proc.poll() is None
            (tmp_path / "daemon.log").write_bytes(b"")  # next wait needs a fresh line
        path.write_bytes(good)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()


def _image_to_image_onnx(path: Path) -> Path:
    """A valid ONNX model shaped like the enhancer (NCHW in, NCHW out): a swapped engine."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def check_config(path, env=None):
    return subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", "-v", str(path)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})))


def test_check_config_refuses_what_run_refuses(tmp_path, detector_engine):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(os.urandom(2048))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(detector_engine.read_bytes()[:4096])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    swapped = _image_to_image_onnx(tmp_path / "enhancer-as-detector.onnx")
    cam = {"name": "c", "url": "rtsp://viewer@127.0.0.1:1/x", "password_env": "DW_UNSET_PW_VAR"}
    cases = {
        "unset password_env": ([cam], detector_engine, {}, "DW_UNSET_PW_VAR"),
        "bad listen": ([], detector_engine, {"http": {"listen": "10.254.254.254:9872"}},
                       "http.listen"),
        "garbage engine": ([], garbage, {}, "engines.detector"),
        "truncated engine": ([], truncated, {}, "engines.detector"),
        "empty engine": ([], empty, {}, "engines.detector"),
        "swapped engine (an image-to-image model as detector)": ([], swapped, {},
                                                                "not a YOLO"),
        "cuda without a GPU": ([], detector_engine, {"engines": {
            "detector": str(detector_engine), "device": "cuda:0"}}, "engines.detector"),
    }
    for name, (cams, det, extra, expect) in cases.items():
        path = config(tmp_path, det, cams, **extra)
        res = check_config(path)
        assert res.returncode == 2 and expect in res.stderr, (name, res.stderr)
        assert "Traceback" not in res.stderr, name
        run = subprocess.run([sys.executable, "-m", "daemon.cli", "run", "--config", str(path)],
                             capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert run.returncode == 2 and expect in run.stderr, (name, run.stderr)
    path = config(tmp_path, detector_engine, [])
    res = check_config(path)
    assert res.returncode == 0 and "valid (0 cameras)" in res.stdout, res.stderr
