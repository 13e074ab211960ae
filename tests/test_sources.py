"""Camera sources without a camera: scripted captures through the ``capture_factory`` seam,
real files for playback, the backoff schedule and the RTSP failure probe."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from daemon.pipeline.backoff import Backoff
from daemon.pipeline.frames import CameraState
from daemon.pipeline.rtsp_probe import describe_request, diagnose, explain_reply
from daemon.pipeline.lifecycle import ALLOWED, InvalidTransition
from daemon.pipeline.sources import (
    OpenCVSource,
    Scrubber,
    make_source,
    to_bgr,
)
from tests.rtsp.helpers import EventRecorder, camera, wait_until

S = CameraState
SECRET = "hunter2-secret"


# -- a scripted capture ------------------------------------------------------------------------
class ScriptedCapture:
    """Returns ``frames`` one per read; then either fails at once (``then="lost"``) or blocks
    for ``block_s`` and fails (``then="stall"``)."""

    def __init__(self, frames, then="lost", block_s=0.0, release_evt=None):
        self.frames = list(frames)
        self.then, self.block_s = then, block_s
        self.released = False
        self._gate = release_evt or threading.Event()

    def isOpened(self):
        return True

    def read(self):
        if self.frames:
            return True, self.frames.pop(0)
        if self.then == "stall":
            self._gate.wait(self.block_s)
        return False, None

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True


class ClosedCapture(ScriptedCapture):
    def __init__(self):
        super().__init__([])

    def isOpened(self):
        return False


class ScriptedFactory:
    """``capture_factory`` handing out one scripted session per open; the last repeats."""

    def __init__(self, *sessions):
        self.sessions = list(sessions)
        self.opened: list = []
        self.urls: list[str] = []

    def __call__(self, url, opts):
        self.urls.append(url)
        item = self.sessions.pop(0) if len(self.sessions) > 1 else self.sessions[0]
        if isinstance(item, Exception):
            raise item
        cap = item() if callable(item) else item
        self.opened.append(cap)
        return cap


def img(value=0, shape=(4, 6, 3), dtype=np.uint8):
    return np.full(shape, value, dtype=dtype)


@pytest.fixture
def sources():
    made: list[OpenCVSource] = []

    def make(cfg, factory, **kw):
        events = EventRecorder()
        src = OpenCVSource(cfg, events, capture_factory=factory, **kw)
        made.append(src)
        return src, events

    yield make
    for src in made:
        src.stop(timeout=5)


# -- state machine -----------------------------------------------------------------------------
def test_transition_table_covers_every_state_and_refuses_the_rest():
    assert set(ALLOWED) == set(CameraState)
    for state, targets in ALLOWED.items():
        assert state not in targets
        if state is not S.STOPPED:
            assert S.STOPPED in targets, f"{state} cannot be stopped"
    src = OpenCVSource(camera("a", "rtsp://127.0.0.1:1/x"), EventRecorder())
    with pytest.raises(InvalidTransition, match="stopped -> streaming"):
        src._transition(S.STREAMING, "bug")


def test_frames_flow_into_a_one_slot_buffer_and_overwrites_are_counted(sources):
    hold = threading.Event()
    frames = [img(i) for i in range(5)]
    factory = ScriptedFactory(lambda: ScriptedCapture(frames, "stall", 30, hold))
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x"), factory)
    src.start()
    assert wait_until(lambda: src.status()["frames"] == 5, 10)
    frame = src.latest()
    assert frame.seq == 4 and int(frame.image[0, 0, 0]) == 4 and frame.camera == "cam"
    assert src.latest(after_seq=4) is None
    assert events.skipped == {"cam": 4}
    assert src.status()["skipped"] == 4
    assert events.states("cam")[:2] == [S.CONNECTING, S.STREAMING]
    hold.set()


def test_a_frame_taken_by_the_scheduler_is_not_counted_as_skipped(sources):
    hold, step = threading.Event(), threading.Semaphore(0)

    class Stepped(ScriptedCapture):
        def read(self):
            step.acquire(timeout=10)
            return super().read()

    factory = ScriptedFactory(lambda: Stepped([img(1), img(2), img(3)], "stall", 30, hold))
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x"), factory)
    src.start()
    step.release()
    assert wait_until(lambda: src.latest() is not None, 10)  # frame 0 taken
    step.release()
    assert wait_until(lambda: src.status()["frames"] == 2, 10)
    step.release()
    assert wait_until(lambda: src.status()["frames"] == 3, 10)  # frame 1 overwritten untaken
    assert events.skipped == {"cam": 1}
    hold.set()
    for _ in range(3):
        step.release()


@pytest.mark.parametrize(
    "raw",
    [img(7, (4, 6)), img(7, (4, 6, 1)), img(7, (4, 6, 4)), img(7 * 257, (4, 6), np.uint16)],
    ids=["gray", "gray-hw1", "bgra", "gray16"],
)
def test_decoded_frames_become_8bit_bgr(raw):
    out = to_bgr(raw)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    assert np.all(out == 7)


def test_mono_stream_frames_reach_the_slot_as_three_channels(sources):
    hold = threading.Event()
    factory = ScriptedFactory(lambda: ScriptedCapture([img(9, (5, 7))], "stall", 30, hold))
    src, _ = sources(camera("ir", "rtsp://127.0.0.1:1/x"), factory)
    src.start()
    assert wait_until(lambda: src.latest() is not None, 10)
    assert src.latest(-1).image.shape == (5, 7, 3)
    assert src.status()["width"] == 7 and src.status()["height"] == 5
    hold.set()


# -- failures, backoff, reconnects -------------------------------------------------------------
def test_failed_opens_back_off_reconnect_and_name_the_cause(sources, closed_port):
    hold = threading.Event()
    factory = ScriptedFactory(ClosedCapture, ClosedCapture,
                              lambda: ScriptedCapture([img(1)], "stall", 30, hold))
    url = f"rtsp://admin:{SECRET}@127.0.0.1:{closed_port}/stream"
    src, events = sources(camera("door", url), factory)
    src.start()
    events.wait_state("door", S.STREAMING, 20)
    assert events.states("door")[:6] == [S.CONNECTING, S.BACKING_OFF, S.CONNECTING,
                                         S.BACKING_OFF, S.CONNECTING, S.STREAMING]
    assert events.reconnects == {"door": 2} and src.status()["reconnects"] == 2
    assert factory.urls[0] == url  # OpenCV gets the real URL ...
    failure = [r for r in events.reasons() if "cannot open" in r][0]
    assert "connection refused" in failure and f"admin:***@127.0.0.1:{closed_port}" in failure
    assert "retrying in" in failure
    status = src.status()
    assert "connection refused" in status["last_error"]
    assert SECRET not in repr(status) + repr(events.changes)  # ... nothing else does
    hold.set()


def test_errors_raised_by_opencv_are_scrubbed_of_the_password(sources):
    url = f"rtsp://admin:{SECRET}@127.0.0.1:9/x"
    factory = ScriptedFactory(RuntimeError(f"cannot open {url} (password {SECRET})"))
    src, events = sources(camera("cam", url), factory)
    src.start()
    events.wait_state("cam", S.BACKING_OFF, 10)
    err = src.status()["last_error"]
    assert "admin:***@127.0.0.1:9" in err and "RuntimeError" not in err
    assert SECRET not in err and SECRET not in " ".join(events.reasons())


def test_a_blocked_read_is_a_stall_a_quick_failure_is_a_lost_stream(sources):
    factory = ScriptedFactory(lambda: ScriptedCapture([img(1)], "stall", 0.4),
                              lambda: ScriptedCapture([img(1)], "lost"),
                              ClosedCapture)
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x", read_timeout_s=0.4), factory)
    src.start()
    assert wait_until(lambda: events.states("cam").count(S.BACKING_OFF) >= 2, 20)
    states = events.states("cam")
    assert states[:4] == [S.CONNECTING, S.STREAMING, S.STALLED, S.BACKING_OFF]
    assert states[4:7] == [S.CONNECTING, S.STREAMING, S.BACKING_OFF]  # lost: no stall
    stall_reason = [c.reason for c in events.changes if c.new is S.STALLED][0]
    assert "no frame for" in stall_reason and "read_timeout_s 0.4" in stall_reason


def test_backoff_grows_with_jitter_up_to_the_cap_and_resets():
    b = Backoff(0.5, 4.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    for d, top in zip(delays, ceilings):
        assert top * 0.5 <= d <= top
    assert len(set(delays)) == len(delays)  # jittered: no two equal
    b.reset()
    assert b.next_delay() <= 0.5
    with pytest.raises(ValueError, match="initial"):
        Backoff(2.0, 1.0)


@pytest.mark.parametrize("healthy_after_s,expected_attempt", [(0.0, 1), (1e9, 2)])
def test_backoff_resets_only_after_a_healthy_stream(sources, healthy_after_s, expected_attempt):
    backoff = Backoff(0.05, 0.1, rng=random.Random(0))
    hold = threading.Event()
    factory = ScriptedFactory(ClosedCapture, lambda: ScriptedCapture([img(1)], "lost"),
                              lambda: ScriptedCapture([img(1)], "stall", 30, hold))
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x"), factory, backoff=backoff,
                          healthy_after_s=healthy_after_s)
    src.start()
    assert wait_until(lambda: events.states("cam").count(S.STREAMING) >= 2, 20)
    assert backoff.attempt == expected_attempt
    hold.set()


def test_stop_returns_while_a_read_is_blocked_and_the_thread_ends(sources):
    factory = ScriptedFactory(lambda: ScriptedCapture([img(1)], "stall", 1.0))
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x", read_timeout_s=1.0), factory)
    src.start()
    events.wait_state("cam", S.STREAMING, 10)
    src.stop(timeout=5)
    assert not src.thread.is_alive()
    assert src.state is S.STOPPED and events.states("cam")[-1] is S.STOPPED
    assert all(c.released for c in factory.opened)


def test_heartbeat_is_fresh_inside_a_bounded_read_and_stale_past_its_bound(sources):
    now = [100.0]
    hold = threading.Event()
    factory = ScriptedFactory(lambda: ScriptedCapture([img(1)], "stall", 30, hold))
    src, events = sources(camera("cam", "rtsp://127.0.0.1:1/x", read_timeout_s=1.0), factory,
                          clock=lambda: now[0])
    src.start()
    events.wait_state("cam", S.STREAMING, 10)
    assert wait_until(lambda: src._blocked_until is not None, 5)  # in the second read
    now[0] = 102.5  # within read_timeout_s + grace: alive
    assert src.heartbeat() == 102.5
    now[0] = 110.0  # past the bound: a hung read shows as a stale heartbeat
    assert src.heartbeat() == 100.0
    hold.set()


def test_missing_password_env_is_a_stopped_camera_with_the_reason(sources):
    cfg = camera("cam", "rtsp://admin@127.0.0.1:1/x", password_env="DUSKWATCH_TEST_UNSET_PW")
    src, events = sources(cfg, ScriptedFactory(ClosedCapture))
    src.start()
    events.wait_state("cam", S.STOPPED, 10)
    assert "DUSKWATCH_TEST_UNSET_PW" in src.status()["last_error"]


def test_make_source_is_the_default_factory():
    src = make_source(camera("cam", "rtsp://127.0.0.1:1/x"), EventRecorder())
    assert isinstance(src, OpenCVSource) and src.name == "cam" and src.state is S.STOPPED
    assert src.status()["url"] == "rtsp://127.0.0.1:1/x"


def test_scrubber_removes_raw_and_encoded_passwords():
    scrub = Scrubber("rtsp://u:p%40ss@h/x", "rtsp://u:***@h/x")
    assert scrub("open rtsp://u:p%40ss@h/x failed; p@ss; p%40ss") == (
        "open rtsp://u:***@h/x failed; ***; ***")


# -- files -------------------------------------------------------------------------------------
def write_clip(path, n=6, size=(32, 24), fps=25):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 30 * i, np.uint8))
    writer.release()
    return path


def test_a_file_plays_to_its_end_and_stops(tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    events = EventRecorder()
    src = OpenCVSource(camera("f", str(clip)), events)
    src.start()
    events.wait_state("f", S.STOPPED, 20)
    src.stop()
    assert src.status()["frames"] == 6
    assert events.states("f") == [S.CONNECTING, S.STREAMING, S.STOPPED]
    assert "end of file" in events.changes[-1].reason


def test_a_looping_file_restarts_without_reconnecting(tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    events = EventRecorder()
    src = OpenCVSource(camera("f", f"file://{clip}", loop=True), events)
    src.start()
    try:
        assert wait_until(lambda: src.status()["frames"] >= 15, 20)
        assert events.states("f") == [S.CONNECTING, S.STREAMING]
        assert events.reconnects == {} and src.status()["reconnects"] == 0
    finally:
        src.stop()


def test_resolution_change_mid_stream_in_a_file(footage):
    """The clip switches from 640x360 to 320x180 after 59 frames. OpenCV's FFmpeg backend scales
    every frame to the size the stream had when it was opened: frames keep flowing, no error."""
    events = EventRecorder()
    src = OpenCVSource(camera("rc", str(footage["reschange"])), events)
    shapes: set[tuple] = set()

    def collect():
        frame = src.latest()
        if frame is not None:
            shapes.add(frame.image.shape)
        return src.state is S.STOPPED

    src.start()
    try:
        assert wait_until(collect, 60, interval=0.02)
    finally:
        src.stop()
    assert src.status()["frames"] >= 110  # both halves (59 + 59 frames) decoded
    assert shapes == {(360, 640, 3)}
    assert events.states("rc") == [S.CONNECTING, S.STREAMING, S.STOPPED]
    assert src.status()["last_error"] == ""


# -- the failure probe -------------------------------------------------------------------------
def test_probe_explains_rtsp_replies():
    where = "cam:554"
    assert "rejected the credentials" in explain_reply(
        b"RTSP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=x\r\n\r\n", where, "/x",
        has_user=True)
    assert "needs credentials" in explain_reply(b"RTSP/1.0 401 Unauthorized\r\n\r\n", where,
                                                "/x", has_user=False)
    assert "no stream at path '/x'" in explain_reply(b"RTSP/1.0 404 Not Found\r\n\r\n", where,
                                                     "/x", has_user=False)
    assert "does not speak RTSP" in explain_reply(b"HTTP/1.1 400 Bad\r\n\r\n", where, "/x",
                                                  has_user=False)
    assert "closed the connection" in explain_reply(b"", where, "/x", has_user=False)


def test_probe_request_keeps_the_password_out_of_the_request_line():
    req = describe_request(f"rtsp://admin:{SECRET}@10.0.0.5/live?x=1",
                           challenge={"scheme": "basic"}).decode()
    first = req.split("\r\n")[0]
    assert first == "DESCRIBE rtsp://10.0.0.5:554/live?x=1 RTSP/1.0"
    assert SECRET not in first and "Authorization: Basic " in req
    assert "Authorization" not in describe_request(f"rtsp://admin:{SECRET}@10.0.0.5/x").decode()


def test_probe_against_real_sockets(closed_port, garbage_server):
    assert "connection refused" in diagnose(f"rtsp://127.0.0.1:{closed_port}/x", 2)
    host, port = garbage_server
    assert "does not speak RTSP" in diagnose(f"rtsp://{host}:{port}/x", 2)


@pytest.mark.parametrize("threads", [1, 4])
def test_decode_threads_reach_the_capture_options(sources, threads):
    seen = []
    frames = [img(i) for i in range(2)]

    def factory(url, opts):
        seen.append(opts)
        return ScriptedCapture(frames, "stall", 30, threading.Event())

    src, _ = sources(camera("cam", "rtsp://127.0.0.1:1/x", decode_threads=threads), factory)
    src.start()
    assert wait_until(lambda: bool(seen), 10)
    assert seen[0].decode_threads == threads and seen[0].transport == "tcp"


def test_default_capture_passes_decode_threads_to_opencv(tmp_path):
    """The real factory: OpenCV reports the decoder thread count it was given."""
    import cv2

    from daemon.pipeline.sources import OpenOptions, opencv_capture

    clip = write_clip(tmp_path / "clip.avi")
    cap = opencv_capture(str(clip), OpenOptions(3.0, 3.0, None, decode_threads=1))
    try:
        assert cap.isOpened()
        assert int(cap.get(cv2.CAP_PROP_N_THREADS)) == 1
    finally:
        cap.release()
