"""A decoder that wedges can be killed (issue 21): with ``decoder: process`` a camera is decoded
in a child process; a child stopped with SIGSTOP (a decoder wedged inside FFmpeg) is killed
once no frame came for ``read_timeout_s``, counted in ``duskwatch_decoder_kills_total``, and the
camera comes back with a new child while the other camera goes on. A wedged child never holds
up the service's stop. A real RTSP server; a fake detector at the engine seam."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from daemon.config import Config
from daemon.service.service import Service
from daemon.service.systemd import Notifier
from tests.daemon_fakes import FakeDetector
from tests.wait import wait_for

pytestmark = [pytest.mark.rtsp, pytest.mark.timeout(120)]


def decoder_children() -> list[psutil.Process]:
    """This process's decoder children (multiprocessing spawn), not the RTSP server."""
    out = []
    for p in psutil.Process().children():
        try:
            if any("spawn_main" in part for part in p.cmdline()) and p.is_running() \
                    and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def sample(svc: Service, name: str, labels: dict) -> float:
    return svc.metrics.registry.get_sample_value(name, labels) or 0.0


def processed(svc: Service, camera: str) -> float:
    return sample(svc, "duskwatch_frames_total", {"camera": camera, "outcome": "processed"})


def test_a_wedged_decoder_is_killed_and_its_camera_comes_back_while_the_other_goes_on(rtsp_server):
    srv = rtsp_server({"cam": "h264"})
    cam = {"url": srv.url("cam"), "read_timeout_s": 2.0, "backoff_initial_s": 0.2, "fps": 10}
    cfg = Config.model_validate({
        "cameras": [{"name": "wedge", "decoder": "process", **cam},
                    {"name": "steady", "decoder": "thread", **cam}],
        "engines": {"detector": "/nonexistent/det.onnx", "check_files": False},
        "http": {"listen": "127.0.0.1:0"}, "sinks": [],
        "events": {"evidence": {"snapshots": False, "clips": False}},
    })
    svc = Service(cfg, detector_factory=lambda e, b: FakeDetector(), enhancer_factory=lambda e: None,
                  notifier=Notifier(environ={}), serve_http=False)
    svc.start()
    stopped: list[psutil.Process] = []
    try:
        assert wait_for(lambda: processed(svc, "wedge") > 0 and processed(svc, "steady") > 0, 30)
        kills = {"camera": "wedge"}
        steady_before = processed(svc, "steady")
        for _attempt in range(3):  # the test clip ends now and then: a child may be replaced
            child = wait_for(decoder_children, 20)[0]  # before it could be stopped; try again
            os.kill(child.pid, signal.SIGSTOP)  # wedged: alive, holding its connection, silent
            stopped.append(child)
            if wait_for(lambda: sample(svc, "duskwatch_decoder_kills_total", kills) == 1, 15):
                break
        assert sample(svc, "duskwatch_decoder_kills_total", kills) == 1
        assert wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 5)
        wedge_after_kill = processed(svc, "wedge")
        assert wait_for(lambda: processed(svc, "wedge") > wedge_after_kill, 30), "wedge never came back"
        assert processed(svc, "steady") > steady_before  # the other camera went on
        fresh = wait_for(decoder_children, 20)[0]
        assert fresh.pid != child.pid
        os.kill(fresh.pid, signal.SIGSTOP)  # wedged again, now at shutdown
        stopped.append(fresh)
    finally:
        svc.stop()
        for p in stopped:  # never leave a stopped process behind, whatever failed
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert not decoder_children(), "the stop left a decoder process behind"
    assert sample(svc, "duskwatch_decoder_kills_total", {"camera": "wedge"}) >= 1
