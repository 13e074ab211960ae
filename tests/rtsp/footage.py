"""Test footage: short encoded clips made once from the shared sample clip and cached.

The source is ``../shared/data/video/vtest.avi`` (pedestrians from above). Where that file is
absent, synthetic footage is drawn with OpenCV instead, so the tests still run. Clips are encoded
with Debian's ``ffmpeg`` (fast presets, small sizes, a keyframe every second so a reconnecting
client gets a picture at once) and cached; the RTSP server passes them through without
re-encoding, so serving them costs almost no CPU.

Clips (15 fps, about two minutes unless said otherwise):

=============  ==============================================================
``h264``       640x360 H.264
``h265``       640x360 H.265
``mono``       640x360 H.265, 4:0:0 (true monochrome, like an infrared camera)
``odd``        321x241 H.264 4:4:4 (odd width and height)
``reschange``  MPEG-TS, 640x360 for 4 s then 320x180 for 4 s (resolution change mid-stream)
=============  ==============================================================
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

VTEST = Path(__file__).resolve().parents[3] / "shared" / "data" / "video" / "vtest.avi"
FPS = 15
REPEATS = 9  # the ~13.6 s base clip, repeated: about two minutes

CLIP_NAMES = ("h264", "h265", "mono", "odd", "reschange")
CLIP_FILES = {
    "h264": "h264.mkv",
    "h265": "h265.mkv",
    "mono": "mono.mkv",
    "odd": "odd.mkv",
    "reschange": "reschange.ts",
}
X265_QUIET = ["-x265-params", "log-level=error"]


class FootageError(RuntimeError):
    pass


def source_clip(work: Path) -> Path:
    """The shared sample clip, or a synthetic one drawn with OpenCV when it is absent."""
    env = os.environ.get("DUSKWATCH_TEST_VIDEO")
    if env and Path(env).is_file():
        return Path(env)
    if VTEST.is_file():
        return VTEST
    return synthetic_clip(work / "synthetic.avi")


def synthetic_clip(path: Path, seconds: float = 14.0, size: tuple[int, int] = (640, 360)) -> Path:
    """Moving bright boxes over a gradient that darkens over time (MJPEG AVI)."""
    import cv2
    import numpy as np

    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    if not writer.isOpened():
        raise FootageError(f"OpenCV cannot write {path}")
    ramp = np.tile(np.linspace(40, 220, w, dtype=np.float32), (h, 1))
    n = int(seconds * FPS)
    for i in range(n):
        light = 1.0 - 0.8 * i / n
        img = np.repeat((ramp * light)[:, :, None], 3, axis=2).astype(np.uint8)
        x = int((i * 7) % (w - 80))
        cv2.rectangle(img, (x, h // 3), (x + 60, h // 3 + 120), (40, 200, 240), -1)
        cv2.circle(img, (w - x - 40, 2 * h // 3), 30, (250, 250, 250), -1)
        writer.write(img)
    writer.release()
    return path


def _ffmpeg(*args: str) -> None:
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise FootageError("needs ffmpeg (apt install ffmpeg; run `make sysdeps`)") from None
    if proc.returncode != 0:
        raise FootageError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-800:]}")


def _encode(src: Path, out: Path, vf: str, codec: list[str], seconds: float | None = None) -> None:
    """One base segment: scale/convert ``src`` and encode it (keyframe every second)."""
    dur = ["-t", f"{seconds}"] if seconds else []
    _ffmpeg("-i", str(src), *dur, "-an", "-vf", f"{vf},fps={FPS}", *codec,
            "-g", str(FPS), "-bf", "0", str(out))


def _repeat(segment: Path, out: Path, times: int) -> None:
    """Concatenate ``segment`` ``times`` times without re-encoding."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{segment.name}'\n" for _ in range(times)))
    _ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out))


H264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
H265 = ["-c:v", "libx265", "-preset", "ultrafast", *X265_QUIET, "-pix_fmt", "yuv420p"]


def _make(name: str, src: Path, work: Path, out: Path) -> None:
    seg = work / f"{name}-seg{out.suffix}"
    if name == "h264":
        _encode(src, seg, "scale=640:360", H264)
    elif name == "h265":
        _encode(src, seg, "scale=640:360", H265)
    elif name == "mono":
        mono = ["-c:v", "libx265", "-preset", "ultrafast", *X265_QUIET, "-pix_fmt", "gray"]
        _encode(src, seg, "scale=640:360,format=gray", mono)
    elif name == "odd":
        _encode(src, seg, "scale=321:241", ["-c:v", "libx264", "-preset", "ultrafast",
                                             "-pix_fmt", "yuv444p"])
    elif name == "reschange":
        a, b = work / "rc-a.ts", work / "rc-b.ts"
        _encode(src, a, "scale=640:360", H264, seconds=4)
        _encode(src, b, "scale=320:180", H264, seconds=4)
        out.write_bytes(a.read_bytes() + b.read_bytes())  # MPEG-TS concatenates byte-wise
        return
    else:
        raise FootageError(f"unknown clip {name!r}; known: {', '.join(CLIP_NAMES)}")
    _repeat(seg, out, REPEATS)


def ensure_footage(cache_dir: Path, names: tuple[str, ...] = CLIP_NAMES) -> dict[str, Path]:
    """Make the clips that are not in ``cache_dir`` yet; return ``{name: path}``."""
    if shutil.which("ffmpeg") is None:
        raise FootageError("needs ffmpeg (apt install ffmpeg; run `make sysdeps`)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in names:
        path = cache_dir / CLIP_FILES[name]
        if not path.is_file():
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                work = Path(tmp)
                part = work / path.name
                _make(name, source_clip(work), work, part)
                os.replace(part, path)  # atomic: a half-written clip is never cached
        out[name] = path
    return out
