"""Camera sources against a real RTSP server: codecs, shapes, credentials."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.pipeline.frames import CameraState
from tests.rtsp.helpers import EventRecorder, camera, wait_until

pytestmark = pytest.mark.rtsp
S = CameraState


def test_h264_h265_mono_and_odd_sizes_stream_as_bgr(rtsp_server, started):
    srv = rtsp_server({"h264": "h264", "h265": "h265", "mono": "mono", "odd": "odd"})
    events = EventRecorder()
    sources = [started(camera(n, srv.url(n)), events) for n in ("h264", "h265", "mono", "odd")]
    assert wait_until(lambda: all(s.status()["frames"] >= 10 for s in sources), 40), \
        [s.status() for s in sources]
    got = {s.name: s.latest() for s in sources}
    assert {n: f.image.shape for n, f in got.items()} == {
        "h264": (360, 640, 3), "h265": (360, 640, 3), "mono": (360, 640, 3), "odd": (241, 321, 3)}
    for frame in got.values():
        assert frame.image.dtype == np.uint8 and frame.image.std() > 5  # real picture, not flat
    mono = got["mono"].image.astype(int)
    assert np.abs(mono[:, :, 0] - mono[:, :, 1]).max() <= 2  # gray in, gray out
    for s in sources:
        status = s.status()
        assert status["state"] == "streaming" and status["fps"] > 0 and status["last_error"] == ""
        assert events.states(s.name)[:2] == [S.CONNECTING, S.STREAMING]


def test_resolution_change_over_rtsp_keeps_streaming(rtsp_server, started):
    """640x360 for 59 frames, then 320x180: frames keep coming (scaled to the opened size)."""
    srv = rtsp_server({"rc": "reschange"})
    events = EventRecorder()
    src = started(camera("rc", srv.url("rc")), events)
    assert wait_until(lambda: src.status()["frames"] >= 75, 30), src.status()
    assert events.states("rc") == [S.CONNECTING, S.STREAMING]
    assert src.latest().image.shape == (360, 640, 3)


def test_password_in_the_url_streams_and_is_never_shown(rtsp_server, started, caplog):
    password = "Pa55-in-url-91"
    srv = rtsp_server({"cam": "h264"}, user="viewer", password=password)
    events = EventRecorder()
    caplog.set_level("DEBUG")
    src = started(camera("cam", srv.url("cam", user="viewer", password=password)), events)
    assert wait_until(lambda: src.status()["frames"] >= 5, 30), src.status()
    status = src.status()
    assert status["url"] == f"rtsp://viewer:***@127.0.0.1:{srv.port}/cam"
    assert password not in repr(status)
    assert password not in repr(events.changes) and password not in caplog.text


def test_password_from_env_streams(rtsp_server, started, monkeypatch):
    srv = rtsp_server({"cam": "h264"}, user="viewer", password="env-pw-77")
    monkeypatch.setenv("DUSKWATCH_TEST_CAM_PW", "env-pw-77")
    events = EventRecorder()
    src = started(camera("cam", srv.url("cam", user="viewer"),
                         password_env="DUSKWATCH_TEST_CAM_PW"), events)
    assert wait_until(lambda: src.status()["frames"] >= 5, 30), src.status()
    assert "env-pw-77" not in repr(src.status()) + repr(events.changes)
