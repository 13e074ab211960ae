"""Camera sources: one reader thread per camera over OpenCV's FFmpeg backend.

A source's life is a :class:`~daemon.pipeline.lifecycle.Lifecycle` (the state machine every
source shares: the allowed transitions, one lock, an event to ``events.on_state`` on every
change).

Opening and reading are bounded by the camera's ``open_timeout_s`` and ``read_timeout_s``
(OpenCV's ``CAP_PROP_OPEN_TIMEOUT_MSEC``/``CAP_PROP_READ_TIMEOUT_MSEC``), so :meth:`stop` joins
within those bounds. A read that blocks for the whole read timeout is a stall; one that fails
sooner is a lost stream (a read that returns a frame only after the whole read timeout, which
OpenCV does when it drains its decoder after the timeout fired, is a stall too). Reconnects wait with capped exponential backoff and jitter
(:mod:`daemon.pipeline.backoff`), reset after a healthy streaming period.

Buffer policy: *keep the latest*. The source decodes every frame and keeps only the newest in a
one-slot buffer; a frame overwritten before the scheduler took it is counted through
``events.on_frame_skipped``. Per-camera ``fps`` limits belong to the scheduler. Files play at
their own frame rate (``loop`` restarts them). Monochrome, 16-bit and BGRA frames become 8-bit BGR.

Credentials: the resolved URL is only ever handed to OpenCV. Logs, states, errors and
:meth:`status` use ``cfg.display_url``, and any text from OpenCV/FFmpeg is scrubbed of the
password. FFmpeg's own stderr logging is silenced (``OPENCV_FFMPEG_LOGLEVEL``) because it can
echo URLs.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import quote, unquote, urlsplit

import numpy as np

from daemon.pipeline.backoff import Backoff
from daemon.pipeline.child_capture import ChildCapture, child_capture_factory
from daemon.config import CameraConfig, ConfigError
from daemon.pipeline.frames import CameraSource, CameraState, Frame, SourceEvents
from daemon.pipeline.latest import LatestFrame
from daemon.pipeline.lifecycle import Lifecycle
from daemon.pipeline.rtsp_probe import diagnose

log = logging.getLogger("duskwatch.sources")

S = CameraState

HEALTHY_STREAM_S = 10.0  # streaming this long resets the backoff
STALL_FRACTION = 0.8  # a failed read that blocked this much of read_timeout_s is a stall
FPS_WINDOW = 30  # frames in the measured-fps window
WAIT_SLICE_S = 0.5  # backoff waits in slices so the heartbeat stays fresh
BLOCK_GRACE_S = 2.0  # a blocking OpenCV call may overrun its own timeout by this much
PROBE_TIMEOUT_S = 3.0  # most time the failure probe may take per step

# FFmpeg logs straight to stderr and some of its messages echo URLs: keep it quiet unless an
# operator asked for more (they then accept that risk). Read once, at the first FFmpeg capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

_OPEN_LOCK = threading.Lock()  # OPENCV_FFMPEG_CAPTURE_OPTIONS is process-global


class Capture(Protocol):
    """What a source needs from ``cv2.VideoCapture`` (the ``capture_factory`` seam)."""

    def isOpened(self) -> bool: ...
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def get(self, prop: int) -> float: ...
    def release(self) -> None: ...


CaptureFactory = Callable[[str, "OpenOptions"], Capture]


@dataclass(frozen=True)
class OpenOptions:
    """How to open one stream (what the default factory turns into VideoCapture params)."""

    open_timeout_s: float
    read_timeout_s: float
    transport: str | None  # "tcp"/"udp" for RTSP, None for files and HTTP
    decode_threads: int = 1  # FFmpeg decoder threads; 0 lets OpenCV choose (one per core)


def opencv_capture(url: str, opts: OpenOptions) -> Capture:
    """The default capture factory: ``cv2.VideoCapture(url, CAP_FFMPEG, params)``.

    OpenCV asks FFmpeg for RTSP over TCP unless ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is set, so the
    common case (TCP, variable unset) opens without any lock. Otherwise the transport goes through
    that variable, which is process-global: it is set under a module lock around the open and
    restored after (opens of such cameras then take turns, each bounded by its open timeout).
    """
    import cv2

    _quiet_opencv_logging(cv2)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(opts.open_timeout_s * 1000),
              cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(opts.read_timeout_s * 1000)]
    if opts.decode_threads > 0:
        params += [cv2.CAP_PROP_N_THREADS, int(opts.decode_threads)]
    key = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
    if opts.transport in (None, "tcp") and key not in os.environ:
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    with _OPEN_LOCK:
        before = os.environ.get(key)
        if opts.transport:
            extra = f"rtsp_transport;{opts.transport}"
            os.environ[key] = f"{before}|{extra}" if before else extra
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if before is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = before


def _quiet_opencv_logging(cv2: Any) -> None:
    """OpenCV's INFO/DEBUG logs can print capture file names (URLs): cap them at WARNING."""
    try:
        if cv2.utils.logging.getLogLevel() > cv2.utils.logging.LOG_LEVEL_WARNING:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    except AttributeError:  # a build without cv2.utils.logging
        pass


# -- frames ------------------------------------------------------------------------------------
def to_bgr(image: np.ndarray) -> np.ndarray:
    """8-bit HxWx3 BGR from what a decoder returns (gray, gray HxWx1, BGRA, 16-bit)."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    channels = image.shape[2]
    if channels == 3:
        return np.ascontiguousarray(image)
    if channels == 1:
        return np.ascontiguousarray(np.repeat(image, 3, axis=2))
    if channels == 4:
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"cannot use a frame with {channels} channels (shape {image.shape})")


class Scrubber:
    """Removes a URL's password (raw and percent-encoded) and the URL itself from text."""

    def __init__(self, secret_url: str, display_url: str):
        self._pairs = [(secret_url, display_url)] if secret_url != display_url else []
        password = urlsplit(secret_url).password
        self._words = sorted({w for w in (password, unquote(password or ""),
                                          quote(unquote(password or ""), safe="")) if w},
                             key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret, shown in self._pairs:
            text = text.replace(secret, shown)
        for word in self._words:
            text = text.replace(word, "***")
        return text


# -- the source --------------------------------------------------------------------------------
class OpenCVSource:
    """One camera: a reader thread, a state machine, a one-slot latest-frame buffer."""

    def __init__(self, cfg: CameraConfig, events: SourceEvents, *,
                 capture_factory: CaptureFactory | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff: Backoff | None = None, healthy_after_s: float = HEALTHY_STREAM_S):
        self.name = cfg.name
        self.cfg = cfg
        self._events = events
        self._factory = capture_factory or opencv_capture
        self._clock = clock
        self._backoff = backoff or Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        self._healthy_after_s = healthy_after_s
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._life = Lifecycle(self.name, events, self._stop_evt.is_set, clock)
        self._heartbeat = clock()
        self._blocked_until: float | None = None
        self._last_error = ""
        self._latest = LatestFrame(self.name)
        self._reconnects = 0
        self._size: tuple[int, int] | None = None
        self._stamps: collections.deque[float] = collections.deque(maxlen=FPS_WINDOW)
        self._scrub: Callable[[str], str] = lambda text: text
        self._cap: Capture | None = None  # the open capture (the reader's; stop() may kill it)

    # CameraSource ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader thread (again, after :meth:`stop`)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
        self._stop_evt.clear()
        self._transition(S.CONNECTING, f"starting {self.cfg.display_url}")
        self._thread = threading.Thread(target=self._run, name=f"duskwatch-source-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reader; returns within ``timeout``. A thread still blocked in an open or
        read (bounded by the camera's timeouts) exits on its own once that call returns."""
        self._stop_evt.set()
        cap = self._cap
        if isinstance(cap, ChildCapture):
            cap.kill()  # a decoder process, wedged or not, never holds up the stop
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("camera %s: reader still blocked in OpenCV after %.1f s; it exits "
                            "when its open/read timeout expires", self.name, timeout)
        if self.state is not S.STOPPED:
            self._transition(S.STOPPED, "stopped")

    def latest(self, after_seq: int = -1) -> Frame | None:
        return self._latest.take(after_seq)

    @property
    def state(self) -> CameraState:
        return self._life.state

    def status(self) -> dict:
        """JSON-able state for /cameras (no credentials)."""
        state = self._life.state
        with self._lock:
            w, h = self._size or (None, None)
            return {
                "name": self.name,
                "state": state.value,
                "since": round(self._life.since_wall, 3),
                "last_error": self._last_error,
                "frames": self._latest.frames,
                "skipped": self._latest.skipped,
                "reconnects": self._reconnects,
                "url": self.cfg.display_url,
                "width": w,
                "height": h,
                "fps": round(self._measured_fps(), 2) if state is S.STREAMING else 0.0,
            }

    def heartbeat(self) -> float:
        """The reader's last sign of life. Inside a blocking open/read that is still within its
        timeout (plus grace) the reader counts as alive now; past that bound it goes stale."""
        now = self._clock()
        until = self._blocked_until
        if until is not None and now <= until:
            return now
        return self._heartbeat

    @contextlib.contextmanager
    def _blocking(self, bound_s: float):
        """Mark a call that may block for up to ``bound_s`` (its own timeout)."""
        self._heartbeat = self._clock()
        self._blocked_until = self._heartbeat + bound_s + BLOCK_GRACE_S
        try:
            yield
        finally:
            self._blocked_until = None
            self._heartbeat = self._clock()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    # state machine -----------------------------------------------------------------------------
    def _transition(self, new: CameraState, reason: str = "") -> bool:
        """Move to ``new`` and report it; False (no event) when stopping made it moot."""
        reason = self._scrub(reason)
        moved = self._life.move(new, reason)
        if moved:
            log.debug("camera %s: -> %s (%s)", self.name, new.value, reason)
        return moved

    def _fail(self, reason: str) -> None:
        """Record a credential-free error and back off before the next attempt."""
        delay = self._backoff.next_delay()
        with self._lock:
            self._last_error = self._scrub(reason)
        if self._transition(S.BACKING_OFF, f"{reason}; retrying in {delay:.1f} s"):
            self._wait(delay)

    def _wait(self, seconds: float) -> None:
        end = self._clock() + seconds
        while not self._stop_evt.is_set():
            self._heartbeat = self._clock()
            left = end - self._clock()
            if left <= 0:
                return
            self._stop_evt.wait(min(left, WAIT_SLICE_S))

    # reader thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        attempt = 0
        reopen_quietly = False
        try:
            url = self.cfg.resolved_url()
        except ConfigError as exc:
            self._last_error = str(exc)
            self._transition(S.STOPPED, str(exc))
            return
        self._scrub = Scrubber(url, self.cfg.display_url)
        try:
            while not self._stop_evt.is_set():
                if attempt and not reopen_quietly:
                    self._reconnects += 1
                    self._events.on_reconnect(self.name)
                    if not self._transition(S.CONNECTING, f"reconnecting to {self.cfg.display_url}"):
                        break
                attempt += 1
                outcome = self._session(url)
                if outcome == "ended":
                    break
                reopen_quietly = outcome == "loop"
        except Exception as exc:  # noqa: BLE001 - a reader bug must end in a visible state
            log.exception("camera %s: reader failed", self.name)
            with self._lock:
                self._last_error = self._scrub(f"{type(exc).__name__}: {exc}")
            self._stop_evt.set()
            self._transition(S.STOPPED, self._last_error)

    def _session(self, url: str) -> str:
        """One connection: open, stream until it fails, back off. Returns "ended" when the
        source is done for good (end of a non-looping file, or stopped), "loop" when a looping
        file ended and should be reopened at once, else "retry"."""
        cap = self._open(url)
        if cap is None:
            return "retry"
        self._cap = cap
        try:
            outcome, reason, healthy = self._stream(cap, url)
        finally:
            self._cap = None
            cap.release()
        if healthy:
            self._backoff.reset()
        if outcome == "eof":
            if self.cfg.loop and self.state is S.STREAMING:
                return "loop"
            if not self.cfg.loop:
                self._transition(S.STOPPED, reason)
                return "ended"
        if outcome == "stalled" and self.state is S.STREAMING:
            self._transition(S.STALLED, reason)
        if not self._stop_evt.is_set():
            self._fail(reason)
        return "retry"

    def _options(self) -> OpenOptions:
        transport = self.cfg.transport if urlsplit(self.cfg.display_url).scheme in (
            "rtsp", "rtsps") else None
        return OpenOptions(self.cfg.open_timeout_s, self.cfg.read_timeout_s, transport,
                           self.cfg.decode_threads)

    def _open(self, url: str) -> Capture | None:
        """An opened capture, or None after reporting why and backing off."""
        try:
            with self._blocking(self.cfg.open_timeout_s):
                cap = self._factory(url, self._options())
                opened = cap.isOpened()
        except Exception as exc:  # noqa: BLE001 - OpenCV raises cv2.error with URL text
            self._fail(f"cannot open {self.cfg.display_url}: {self._scrub(str(exc))}")
            return None
        if opened:
            return cap
        cap.release()
        if self._stop_evt.is_set():
            return None
        probe_s = min(self.cfg.open_timeout_s, PROBE_TIMEOUT_S)
        with self._blocking(2 * probe_s):  # connect, then the reply
            why = diagnose(url, probe_s)
        self._fail(f"cannot open {self.cfg.display_url}: {why}")
        return None

    def _stream(self, cap: Capture, url: str) -> tuple[str, str, bool]:
        """Read until the stream fails: (outcome, reason, was it healthy long enough)."""
        period = self._file_period(cap)
        started = None
        next_due = self._clock()
        while not self._stop_evt.is_set():
            t0, cpu0 = self._clock(), time.thread_time()
            with self._blocking(self.cfg.read_timeout_s):
                ok, image = cap.read()
            t1, cpu_s = self._clock(), time.thread_time() - cpu0
            if isinstance(cap, ChildCapture):  # the decode ran in the child: its CPU time
                cpu_s += cap.decode_seconds
            timed_out = period is None and t1 - t0 >= self.cfg.read_timeout_s
            if not ok or image is None or timed_out:
                # OpenCV may hand out a frame drained from the decoder after its read timeout
                # fired: the stream has still stalled.
                healthy = started is not None and t1 - started >= self._healthy_after_s
                return (*self._classify_failure(t1 - t0, period is not None), healthy)
            # The decode cost is the reader's CPU time, not the wall time of read(): on a live
            # stream read() mostly waits for the next frame to arrive.
            self._publish(image, cpu_s)
            if started is None:
                started = t1
                h, w = image.shape[:2]
                self._transition(S.STREAMING, f"streaming {w}x{h} from {self.cfg.display_url}")
            if period is not None:
                next_due = max(next_due + period, t1 - period)
                self._wait(next_due - self._clock())
        return "stopped", "stopped", False

    def _file_period(self, cap: Capture) -> float | None:
        """Seconds per frame for file sources (played at their own rate), None for streams."""
        if not self.cfg.is_file:
            return None
        try:
            import cv2

            fps = float(cap.get(cv2.CAP_PROP_FPS))
        except Exception:  # noqa: BLE001 - a fake capture, or no FPS in the file
            fps = 0.0
        return 1.0 / fps if 0 < fps <= 1000 else 1.0 / 25.0

    def _classify_failure(self, blocked_s: float, is_file: bool) -> tuple[str, str]:
        if is_file:
            return "eof", f"end of file {self.cfg.display_url}"
        if blocked_s >= STALL_FRACTION * self.cfg.read_timeout_s:
            return "stalled", f"no frame for {blocked_s:.1f} s (read_timeout_s {self.cfg.read_timeout_s:g})"
        return "lost", f"stream from {self.cfg.display_url} ended or the connection was lost"

    def _publish(self, raw: np.ndarray, decode_s: float) -> None:
        image = to_bgr(raw)
        now = self._clock()
        skipped = self._latest.put(image, now, time.time(), decode_s)
        with self._lock:
            self._size = (image.shape[1], image.shape[0])
            self._stamps.append(now)
        if skipped:
            self._events.on_frame_skipped(self.name, skipped)

    def _measured_fps(self) -> float:
        if len(self._stamps) < 2 or self._stamps[-1] <= self._stamps[0]:
            return 0.0
        return (len(self._stamps) - 1) / (self._stamps[-1] - self._stamps[0])


def make_source(cfg: CameraConfig, events: SourceEvents) -> CameraSource:
    """The default :data:`daemon.pipeline.frames.SourceFactory`: the camera's ``decoder``
    (thread: OpenCV in this process; process: PyAV in a child process that can be killed)."""
    if cfg.decoder == "process":
        factory = child_capture_factory(lambda: events.on_decoder_killed(cfg.name))
        return OpenCVSource(cfg, events, capture_factory=factory)
    return OpenCVSource(cfg, events)
