"""The int8 build as a subprocess: ``duskwatch export openvino-int8`` at low CPU priority (the
daemon never imports ``export/``), its output in a log file, ended within a bound on stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Sequence

NICE = 10  # added to the daemon's niceness: the cameras keep the CPU


def export_argv(f32: Path, calib_dir: Path, out: Path, frames: int) -> list[str]:
    """The command that builds ``out`` (int8) from ``f32`` on the frames in ``calib_dir``."""
    return [sys.executable, "-m", "daemon.cli", "export", "openvino-int8", "--ir", str(f32),
            "--calib-dir", str(calib_dir), "--out", str(out), "--calib-frames", str(frames)]


class BuildFailed(Exception):
    """The build ended without an int8 IR; the message names why (and the log's tail)."""


def run_build(argv: Sequence[str], log_path: Path, stop: threading.Event, timeout_s: float,
              nice: int = NICE, kill_grace_s: float = 3.0) -> None:
    """Run ``argv`` niced, its output to ``log_path``; return when it exits 0. Raises
    :class:`BuildFailed` on a non-zero exit or after ``timeout_s``; on ``stop`` the process
    group gets SIGTERM, then SIGKILL after ``kill_grace_s``, and BuildFailed is raised."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(niced(argv, nice), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        waited = 0.0
        while proc.poll() is None:
            if stop.wait(0.2):
                _end(proc, kill_grace_s)
                raise BuildFailed("stopped")
            waited += 0.2
            if waited >= timeout_s:
                _end(proc, kill_grace_s)
                raise BuildFailed(f"still running after {timeout_s:.0f} s; killed")
    if proc.returncode != 0:
        raise BuildFailed(f"exit status {proc.returncode}: {log_tail(log_path)}")


def niced(argv: Sequence[str], nice: int) -> list[str]:
    """``argv`` run by nice(1) (no preexec_fn: the daemon has threads)."""
    tool = shutil.which("nice")
    return [tool, "-n", str(nice), *argv] if nice and tool else list(argv)


def _end(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the build's process group, SIGKILL when it is still there after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def log_tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(no output)"
