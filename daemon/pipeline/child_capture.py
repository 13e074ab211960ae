"""A camera's decode in a child process that can be killed (``cameras[].decoder: process``).

OpenCV decodes inside the daemon's process: a decoder wedged inside FFmpeg can only be
abandoned, never killed. :class:`ChildCapture` has the same face as ``cv2.VideoCapture`` (the
:data:`~daemon.pipeline.sources.CaptureFactory` seam of :class:`~daemon.pipeline.sources.OpenCVSource`)
but opens and decodes the stream with PyAV (FFmpeg's libraries) in a child process started
with ``spawn`` (never ``fork`` from a threaded daemon) and receives BGR frames over a pipe.

Supervision is the source's own: every read waits at most ``read_timeout_s`` for the next
frame; a read that times out is a stall, the session ends, and :meth:`ChildCapture.release`
kills the child (SIGKILL works on a stopped or wedged process) and reports the kill through
``on_kill`` (``duskwatch_decoder_kills_total``); the source reconnects with a fresh child after
its backoff. :meth:`ChildCapture.kill` (called by the source's ``stop``) ends a read at once, so
a wedged child never holds up shutdown.

The URL (with its password) reaches the child through the spawn pipe, never its command line.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import select
import struct
import time
from typing import Any, Callable

import numpy as np

log = logging.getLogger("duskwatch.sources")

CAP_PROP_FPS = 5  # cv2.CAP_PROP_FPS: the only property the source asks for
POLL_SLICE_S = 0.25  # a read waits in slices, so kill() ends it promptly
KILL_WAIT_S = 2.0  # most time release() waits for a killed child to be reaped


# Messages, each one multiprocessing "bytes" message (a 4-byte length, then the payload), read by
# the parent with its own deadline (Connection.recv would block on a message half sent by a
# child that was stopped mid-write): b"O" + fps (double); b"F" + height, width (uint32) + CPU
# seconds (double) + BGR bytes; b"E" + error text; b"X" (end of stream).
_FRAME_HEAD = struct.Struct("!IId")


def _decode(conn, url: str, transport: str | None, open_s: float, read_s: float,
            threads: int) -> None:
    """The child: open ``url`` with PyAV, then send each frame as BGR (see the messages)."""
    import av

    options = {"rtsp_transport": transport} if transport else {}
    try:
        container = av.open(url, options=options, timeout=(open_s, read_s))
        stream = container.streams.video[0]
        stream.thread_count = threads  # as decode_threads: 1 (default) decodes on one thread
        if threads != 1:
            stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        conn.send_bytes(b"O" + struct.pack("!d", float(rate) if rate else 0.0))
        cpu = time.thread_time()
        for frame in container.decode(stream):
            image = np.ascontiguousarray(frame.to_ndarray(format="bgr24"))
            h, w = image.shape[:2]
            msg = bytearray(1 + _FRAME_HEAD.size + image.nbytes)  # one copy of the pixels
            msg[1 + _FRAME_HEAD.size:] = memoryview(image).cast("B")
            now = time.thread_time()
            msg[0:1 + _FRAME_HEAD.size] = b"F" + _FRAME_HEAD.pack(h, w, now - cpu)
            conn.send_bytes(msg)
            cpu = now
        conn.send_bytes(b"X")
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which scrubs it
        try:
            conn.send_bytes(b"E" + f"{type(exc).__name__}: {exc}".encode(errors="replace"))
        except OSError:
            pass


class ChildCapture:
    """``cv2.VideoCapture``'s face over a PyAV decoder in a child process."""

    def __init__(self, url: str, opts: Any, on_kill: Callable[[], None] = lambda: None):
        self._opts = opts
        self._on_kill = on_kill
        ctx = multiprocessing.get_context("spawn")
        self._conn, child_conn = ctx.Pipe(duplex=False)
        self.process = ctx.Process(
            target=_decode, name="duskwatch-decoder", daemon=True,
            args=(child_conn, url, opts.transport, opts.open_timeout_s, opts.read_timeout_s,
                  opts.decode_threads))
        self.process.start()
        child_conn.close()
        self._fps = 0.0
        self._wedged = False  # the last read timed out with the child alive
        self._killed = False
        self.error = ""
        self.decode_seconds = 0.0  # the child's CPU time for the last frame
        self._opened = self._wait_open(opts.open_timeout_s)

    # cv2.VideoCapture's face ----------------------------------------------------------------------
    def isOpened(self) -> bool:  # noqa: N802 - the cv2.VideoCapture name
        return self._opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        msg = self._receive(self._opts.read_timeout_s)
        if msg is None or msg[:1] != b"F":
            return False, None
        h, w, self.decode_seconds = _FRAME_HEAD.unpack_from(msg, 1)
        image = np.frombuffer(msg, np.uint8, h * w * 3, 1 + _FRAME_HEAD.size)
        return True, image.reshape(h, w, 3)

    def get(self, prop: int) -> float:
        return self._fps if prop == CAP_PROP_FPS else 0.0

    def release(self) -> None:
        """End the child: killed at once (it may be wedged or stopped); a kill of a child whose
        last read timed out is reported through ``on_kill``."""
        wedged = self._wedged and self.process.is_alive()
        self._terminate()
        if wedged:
            log.warning("decoder process %s wedged (no frame for %.1f s): killed",
                        self.process.pid, self._opts.read_timeout_s)
            self._on_kill()

    def kill(self) -> None:
        """Kill the child now, from any thread (the source's stop): a read waiting for it
        returns at once; the reader's :meth:`release` then reaps it and closes the pipe (only
        the reader's thread touches the pipe)."""
        self._killed = True
        try:
            self.process.kill()
        except (ValueError, OSError):  # already reaped and closed
            pass

    # internals ------------------------------------------------------------------------------------
    def _terminate(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(KILL_WAIT_S)
        self._conn.close()

    def _wait_open(self, timeout: float) -> bool:
        msg = self._receive(timeout)
        if msg is not None and msg[:1] == b"O":
            self._fps = struct.unpack_from("!d", msg, 1)[0]
            return True
        if msg is not None and msg[:1] == b"E":
            self.error = msg[1:].decode(errors="replace")
        return False

    def _receive(self, timeout: float) -> bytearray | None:
        """The child's next message, or None: not complete within ``timeout`` (``_wedged``),
        the child gone, or :meth:`kill`."""
        deadline = time.monotonic() + timeout
        self._wedged = False
        head = self._read_exactly(4, deadline)
        if head is None:
            return None
        size = struct.unpack("!i", head)[0]
        if size == -1:  # multiprocessing's framing of messages over 2 GiB
            big = self._read_exactly(8, deadline)
            if big is None:
                return None
            size = struct.unpack("!Q", big)[0]
        return self._read_exactly(size, deadline)

    def _read_exactly(self, n: int, deadline: float) -> bytearray | None:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        fd = self._conn.fileno()
        while got < n and not self._killed:
            left = deadline - time.monotonic()
            if left <= 0:
                self._wedged = self.process.is_alive()
                return None
            ready, _, _ = select.select([fd], [], [], min(POLL_SLICE_S, left))
            if not ready:
                continue
            k = os.readv(fd, [view[got:]])
            if not k:  # the child is gone
                return None
            got += k
        return buf if got == n else None


def child_capture_factory(on_kill: Callable[[], None]) -> Callable[[str, Any], ChildCapture]:
    """A :data:`~daemon.pipeline.sources.CaptureFactory` whose captures report kills to ``on_kill``."""
    return lambda url, opts: ChildCapture(url, opts, on_kill)
