"""Service wiring with fakes at the seams: watchdog, readiness, reload, secrets, shutdown."""

import logging
import socket
import threading
import time

import yaml

from daemon.service.secrets import SecretsFilter
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector, FakeEnhancer, FakeSource, make_config
from tests.wait import wait_for


def drain(sock):
    """Every datagram already waiting on ``sock``."""
    sock.settimeout(0.05)
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except (socket.timeout, BlockingIOError):
            return out


def make_service(cfg, notifier=None, **kw):
    sources = {}

    def factory(cam, events):
        src = FakeSource(cam, events)
        sources.setdefault(cam.name, []).append(src)
        return src

    kw.setdefault("detector_factory", lambda e, b: FakeDetector())
    kw.setdefault("enhancer_factory", lambda e: FakeEnhancer())
    svc = Service(cfg, source_factory=factory, notifier=notifier or Notifier(environ={}),
                  serve_http=False, **kw)
    return svc, sources


def test_ready_after_warmup_then_frames_flow_and_stopping(notify_socket):
    path, sock = notify_socket
    svc, sources = make_service(make_config(), Notifier(environ={"NOTIFY_SOCKET": path}))
    assert svc.view.readiness()[0] is False
    svc.start()
    try:
        msgs = drain(sock)
        assert any(m.startswith("READY=1") for m in msgs), msgs
        assert svc.detector.warmed == 1
        assert svc.view.readiness()[0] is True
        sources["a"][0].push(value=10)
        sources["b"][0].push(value=200)
        r = svc.metrics.registry
        assert wait_for(lambda: r.get_sample_value(
            "duskwatch_frames_total", {"camera": "b", "outcome": "processed"}) == 1)
        assert wait_for(lambda: r.get_sample_value(
            "duskwatch_frames_total", {"camera": "a", "outcome": "processed"}) == 1)
        # the dark frame's picture is made when first looked at (its live snapshot)
        assert r.get_sample_value("duskwatch_frames_enhanced_total", {"camera": "a"}) == 0
        assert svc.view.snapshot_jpeg("a")
        assert r.get_sample_value("duskwatch_frames_enhanced_total", {"camera": "a"}) == 1
        assert r.get_sample_value("duskwatch_camera_up", {"camera": "a"}) == 1
        assert r.get_sample_value("duskwatch_build_info", {
            "version": "0.1.0", "backend": "onnxruntime", "detector": "det.onnx", "enhancer": "enh.onnx"}) == 1
    finally:
        svc.stop()
    assert "STOPPING=1" in "\n".join(drain(sock))
    assert all(s.stopped == 1 for lst in sources.values() for s in lst)
    assert svc.detector.closed


def test_watchdog_only_while_every_heartbeat_is_fresh(notify_socket):
    path, sock = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000"}  # ping every 1 ms
    cfg = make_config(supervision={"heartbeat_timeout_s": 1.0})
    svc, sources = make_service(cfg, Notifier(environ=env))
    svc.start()
    try:
        drain(sock)
        svc.tick()
        assert "WATCHDOG=1" in drain(sock)
        sources["b"][0].frozen_heartbeat = time.monotonic() - 60
        time.sleep(0.01)
        svc._restarted["b"] = time.monotonic()  # keep the supervisor from restarting it
        svc.tick()
        msgs = drain(sock)
        assert "WATCHDOG=1" not in msgs
        assert any("unhealthy" in m and "camera b" in m for m in msgs), msgs
        ok, info = svc.view.health()
        assert not ok and info["stale_cameras"] == ["b"]
    finally:
        svc.stop()


def test_supervisor_restarts_a_stuck_reader():
    cfg = make_config(supervision={"heartbeat_timeout_s": 1.0})
    svc, sources = make_service(cfg)
    svc.start()
    try:
        sources["a"][0].frozen_heartbeat = time.monotonic() - 60
        svc.tick()
        assert len(sources["a"]) == 2 and sources["a"][0].stopped == 1
        assert svc.view.health()[0]
        assert len(sources["b"]) == 1
    finally:
        svc.stop()


def write_cfg(path, cfg_dict):
    path.write_text(yaml.safe_dump(cfg_dict))


def cfg_dict(cams, **extra):
    d = {
        "cameras": [{"name": n, "url": f"rtsp://user:pw-{n}-secret@127.0.0.1:8554/{n}", **opts}
                    for n, opts in cams],
        "engines": {"detector": "/nonexistent/det.onnx", "check_files": False},
        "sinks": [],
        "events": {"evidence": {"snapshots": False, "clips": False}},
    }
    d.update(extra)
    return d


def test_reload_adds_removes_changes_and_keeps_unchanged(tmp_path):
    path = tmp_path / "c.yaml"
    write_cfg(path, cfg_dict([("a", {}), ("b", {}), ("c", {"fps": 5})]))
    from daemon.config import load_config

    svc, sources = make_service(load_config(path), config_path=path)
    svc.start()
    try:
        a0, b0, c0 = sources["a"][0], sources["b"][0], sources["c"][0]
        write_cfg(path, cfg_dict([
            ("a", {}),                                   # unchanged
            ("c", {"fps": 2, "enhance": "always"}),      # in-place change: no reconnect
            ("b", {"transport": "udp"}),                 # connection change: reconnect
            ("d", {}),                                   # new
        ]))
        assert svc.reload_from_file()
        assert svc.view.camera_names() == ["a", "b", "c", "d"]
        assert svc.published.cameras["a"].source is a0 and a0.started == 1 and a0.stopped == 0
        assert svc.published.cameras["c"].source is c0 and c0.stopped == 0
        # applied by the scheduler thread between two batches
        assert wait_for(lambda: svc.published.cameras["c"].slot.fps == 2
                        and svc.published.cameras["c"].slot.gate.mode == "always")
        assert svc.published.cameras["b"].source is not b0 and b0.stopped == 1
        assert len(sources["d"]) == 1 and sources["d"][0].started == 1
        write_cfg(path, cfg_dict([("a", {})]))
        assert svc.reload_from_file()
        assert svc.view.camera_names() == ["a"]
        # removed cameras release the enhancer's per-stream state (on the scheduler thread)
        assert wait_for(lambda: {"b", "c", "d"} <= set(svc.enhancer.resets))
        text = svc.metrics.render().decode()
        assert 'camera="d"' not in text and 'camera="a"' in text
        # a late event from a removed camera's reader changes nothing
        sources["d"][0].stop()
        assert 'camera="d"' not in svc.metrics.render().decode()
    finally:
        svc.stop()


def test_invalid_reload_keeps_the_running_config(tmp_path, caplog):
    path = tmp_path / "c.yaml"
    write_cfg(path, cfg_dict([("a", {})]))
    from daemon.config import load_config

    svc, sources = make_service(load_config(path), config_path=path)
    svc.start()
    try:
        path.write_text(path.read_text() + "bogus_key: 1\n")
        with caplog.at_level(logging.ERROR):
            assert svc.reload_from_file() is False
        assert "bogus_key" in caplog.text and "keeping the running config" in caplog.text
        assert svc.view.camera_names() == ["a"] and sources["a"][0].stopped == 0
        write_cfg(path, cfg_dict([("a", {"password_env": "DUSKWATCH_TEST_UNSET_VAR"})]))
        assert svc.reload_from_file() is False
        assert "DUSKWATCH_TEST_UNSET_VAR" in caplog.text
    finally:
        svc.stop()


def test_secrets_filter_masks_passwords_in_messages_args_and_tracebacks():
    f = SecretsFilter(["hunter2", "pw"])
    logger = logging.getLogger("duskwatch.test.secrets")
    records = []

    class H(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = H()
    h.addFilter(f)
    logger.addHandler(h)
    try:
        logger.error("url rtsp://u:%s@h/x", "hunter2")
        try:
            raise RuntimeError("failed for rtsp://u:hunter2@h")
        except RuntimeError:
            logger.exception("boom")
    finally:
        logger.removeHandler(h)
    assert all("hunter2" not in r for r in records), records
    assert "rtsp://u:***@h/x" in records[0]


def test_cameras_status_has_no_credentials_even_if_a_source_leaks():
    svc, sources = make_service(make_config())
    svc.start()
    try:
        leaky = sources["a"][0]
        leaky.status = lambda: {"state": "streaming", "oops": "rtsp://user:pw-a-secret@127.0.0.1/a"}
        status = svc.view.cameras_status()
        text = str(status)
        assert "pw-a-secret" not in text and "pw-b-secret" not in text
        assert status["cameras"]["a"]["url"] == "rtsp://user:***@127.0.0.1:8554/a"
        assert status["cameras"]["b"]["state"] == "streaming"
    finally:
        svc.stop()


def test_passwords_are_masked_as_typed_and_as_percent_encoded(monkeypatch):
    monkeypatch.setenv("DUSKWATCH_TEST_PW", "p@ss:w0rd/x")
    from daemon.config import parse_config

    cfg = parse_config({"cameras": [{"name": "a", "url": "rtsp://u@h/a", "password_env": "DUSKWATCH_TEST_PW"}],
                        "engines": {"detector": "/x.onnx", "check_files": False}, "sinks": []})
    filt = SecretsFilter()
    svc, _ = make_service(cfg, secrets_filter=filt)
    assert filt.mask("raw p@ss:w0rd/x and encoded p%40ss%3Aw0rd%2Fx") == "raw *** and encoded ***"


def _service_inside_a_detector_call(release: threading.Event):
    """A started service whose scheduler is inside a detector call that ends when ``release``
    is set (or after 10 s)."""
    in_call = threading.Event()

    class SlowDetector(FakeDetector):
        def __call__(self, images):
            in_call.set()
            release.wait(10)
            return super().__call__(images)

    svc, sources = make_service(make_config(), detector_factory=lambda e, b: SlowDetector())
    svc.start()
    sources["a"][0].push(value=200)
    assert in_call.wait(5)
    return svc


def test_stop_never_closes_an_engine_the_scheduler_is_still_using():
    release = threading.Event()
    svc = _service_inside_a_detector_call(release)
    try:
        svc.stop(timeout=0.4, engine_grace=0.2)  # inside the detector call: it cannot stop yet
        assert not svc.detector.closed and not svc.enhancer.closed
    finally:
        release.set()
    assert wait_for(lambda: not svc.scheduler.running)


def test_stop_waits_for_an_engine_call_in_progress_then_closes_the_engines():
    """A process must not exit under a running engine call (ONNX Runtime's threads abort it):
    stop() stops the rest, then waits for the call to end and closes the engines."""
    release = threading.Event()
    svc = _service_inside_a_detector_call(release)
    threading.Timer(1.0, release.set).start()  # the call ends 1 s on, after stop()'s own 0.2 s
    svc.stop(timeout=0.4)
    assert not svc.scheduler.running
    assert svc.detector.closed and svc.enhancer.closed
