"""Reloads that must not hurt the running daemon (issue 12, items 2, 4 and 6): any bad file,
an engine that does not open, the watchdog kept fed while validating, counters that survive a
supervisor restart. Fakes only at the engine and camera seams."""

from __future__ import annotations

import logging
import threading
import time

import yaml

from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource
from tests.wait import wait_for


def cfg_dict(names=("a",), detector="/nonexistent/det.onnx"):
    return {"cameras": [{"name": n, "url": f"rtsp://u:pw-{n}@127.0.0.1:8554/{n}"} for n in names],
            "engines": {"detector": detector, "check_files": False},
            "http": {"listen": "127.0.0.1:0"}, "sinks": []}


def make(tmp_path, detector_factory=None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg_dict()))
    from daemon.config import load_config

    sources: dict[str, list] = {}

    def factory(cam, events):
        src = FakeSource(cam, events)
        sources.setdefault(cam.name, []).append(src)
        return src

    svc = Service(load_config(path), source_factory=factory, config_path=path,
                  detector_factory=detector_factory or (lambda e, b: FakeDetector()),
                  enhancer_factory=lambda e: FakeEnhancer(), notifier=Notifier(environ={}),
                  serve_http=False)
    return svc, path, sources


def failures(svc):
    return svc.metrics.registry.get_sample_value("duskwatch_config_reload_failures_total")


def test_any_bad_file_is_refused_and_the_daemon_keeps_running(tmp_path, caplog):
    svc, path, sources = make(tmp_path)
    svc.start()
    try:
        t_ok = svc.metrics.registry.get_sample_value(
            "duskwatch_config_last_reload_success_timestamp_seconds")
        assert t_ok and t_ok > 0
        bad = [bytes(range(256)) * 40, b"a: " + b"[" * 5000 + b"]" * 5000,
               b"cameras: []\ncameras: []\n", b"\x00" * 100, b"- just\n- a list\n"]
        with caplog.at_level(logging.ERROR):
            for i, content in enumerate(bad, 1):
                path.write_bytes(content)
                assert svc.reload_from_file() is False
                assert failures(svc) == i
                ok, info = svc.view.readiness()
                assert ok and info["config_reload"]["status"] == "failed"
                assert info["config_reload"]["error"]
        assert "keeping the running config" in caplog.text and "Traceback" not in caplog.text
        assert svc.view.camera_names() == ["a"] and sources["a"][0].stopped == 0
        path.write_text(yaml.safe_dump(cfg_dict(("a", "b"))))
        assert svc.reload_from_file() is True
        assert svc.view.readiness()[1]["config_reload"]["status"] == "ok"
    finally:
        svc.stop()


def test_reload_opens_the_new_engines_and_a_failure_keeps_the_old(tmp_path):
    opened = []

    def detector_factory(ecfg, batch):
        opened.append(str(ecfg.detector))
        if "broken" in str(ecfg.detector):
            raise RuntimeError("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model failed")
        return FakeDetector()

    svc, path, _ = make(tmp_path, detector_factory)
    svc.start()
    try:
        path.write_text(yaml.safe_dump(cfg_dict(detector="/x/broken.onnx")))
        assert svc.reload_from_file() is False
        ok, info = svc.view.readiness()
        assert "engines.detector: cannot open the engine: RuntimeError" in \
            info["config_reload"]["error"]
        assert info["detector"] == "det.onnx"  # the engine running, not the refused one
        assert opened[-1] == "/x/broken.onnx"
        assert svc.detector.closed is False
    finally:
        svc.stop()


def test_validation_runs_off_the_main_loop_so_watchdog_pings_continue(tmp_path, notify_socket):
    """A validation that takes long (a slow engine open) runs on a worker thread: the main
    loop keeps sending WATCHDOG=1 meanwhile, then applies the result."""
    path_sock, sock = notify_socket
    gate = threading.Event()

    def slow_factory(ecfg, batch):
        if "slow" in str(ecfg.detector):
            gate.wait(20)
        return FakeDetector()

    svc, path, _ = make(tmp_path, slow_factory)
    svc.notifier = Notifier(environ={"NOTIFY_SOCKET": path_sock, "WATCHDOG_USEC": "200000"})
    svc.start()
    stop, reload = threading.Event(), threading.Event()
    loop = threading.Thread(target=svc.serve, args=(stop, reload), kwargs={"tick_s": 0.05})
    loop.start()
    try:
        path.write_text(yaml.safe_dump(cfg_dict(("a", "b"), detector="/x/slow.onnx")))
        reload.set()
        assert wait_for(lambda: svc._reloads.busy, 5)
        sock.settimeout(2)
        pings = 0
        while pings < 5:
            if b"WATCHDOG=1" in sock.recv(4096):
                pings += 1
        assert svc._reloads.busy  # still validating while the pings went out
        gate.set()
        assert wait_for(lambda: svc.view.camera_names() == ["a", "b"], 10)
    finally:
        gate.set()
        stop.set()
        loop.join(10)
        svc.stop()


def test_reconnect_counter_survives_a_supervisor_restart(tmp_path):
    svc, path, sources = make(tmp_path)
    svc.start()
    try:
        first = sources["a"][0]
        for _ in range(3):
            first.events.on_reconnect("a")
        r = svc.metrics.registry
        assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": "a"}) == 3
        first.frozen_heartbeat = time.monotonic() - 3600
        svc.tick()  # the supervisor restarts the silent reader
        assert len(sources["a"]) == 2
        assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": "a"}) == 3
        sources["a"][1].events.on_reconnect("a")
        assert r.get_sample_value("duskwatch_camera_reconnects_total", {"camera": "a"}) == 4
    finally:
        svc.stop()
