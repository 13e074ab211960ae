"""The connection-failure probe sends a password only when a camera challenges for it (issue 12,
item 1): a silent TCP "camera" and a garbage one never see credentials; a real RTSP server that
asks for them gets them and the reason says whether they were refused."""

from __future__ import annotations

import socket
import threading

import pytest

from daemon.pipeline.rtsp_probe import diagnose
from tests.rtsp.helpers import EventRecorder, camera, wait_until

SECRET = "pr0be-s3cret-pw"


class SilentCamera:
    """Accepts TCP connections, records every byte it receives, never answers."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.received = bytearray()
        self.connections = 0
        self._done = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            self._conns.append(conn)
            threading.Thread(target=self._record, args=(conn,), daemon=True).start()

    def _record(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        while not self._done.is_set():
            try:
                chunk = conn.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            self.received += chunk

    def close(self) -> None:
        self._done.set()
        self._thread.join(5)
        for c in self._conns:
            c.close()
        self.listener.close()


@pytest.fixture
def silent_camera():
    cam = SilentCamera()
    yield cam
    cam.close()


def test_probe_alone_sends_no_credentials_to_a_silent_server(silent_camera):
    why = diagnose(f"rtsp://admin:{SECRET}@127.0.0.1:{silent_camera.port}/x", 0.5)
    assert "did not answer" in why and SECRET not in why
    assert wait_until(lambda: b"DESCRIBE" in silent_camera.received, 5)
    assert b"Authorization" not in silent_camera.received
    assert SECRET.encode() not in silent_camera.received


def test_probe_sends_no_credentials_to_a_garbage_server(garbage_server):
    host, port = garbage_server
    assert "does not speak RTSP" in diagnose(f"rtsp://admin:{SECRET}@{host}:{port}/x", 2)


def test_source_with_password_env_never_sends_it_to_a_silent_server(silent_camera, started,
                                                                    monkeypatch):
    """The whole reader: OpenCV's open times out, the probe runs, nothing asked for a password."""
    monkeypatch.setenv("DUSKWATCH_PROBE_PW", SECRET)
    src = started(camera("cam", f"rtsp://viewer@127.0.0.1:{silent_camera.port}/live",
                         password_env="DUSKWATCH_PROBE_PW", open_timeout_s=1.0,
                         backoff_initial_s=5.0, backoff_max_s=5.0), EventRecorder())
    assert wait_until(lambda: "did not answer" in src.status()["last_error"], 30), src.status()
    received = bytes(silent_camera.received)
    assert b"DESCRIBE" in received  # the probe did run
    assert b"Authorization" not in received and SECRET.encode() not in received
    import base64
    assert base64.b64encode(f"viewer:{SECRET}".encode()) not in received


@pytest.mark.rtsp
def test_probe_answers_a_real_challenge(rtsp_server):
    srv = rtsp_server({"cam": "h264"}, user="viewer", password="right-pw")
    wrong = diagnose(srv.url("cam", user="viewer", password="wrong-pw"), 3)
    assert "rejected the credentials" in wrong and "wrong-pw" not in wrong
    assert "needs credentials" in diagnose(srv.url("cam"), 3)
    right = diagnose(srv.auth_url("cam"), 3)
    assert "answered DESCRIBE (200)" in right
