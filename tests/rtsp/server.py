"""A multi-mount RTSP server for tests, built on GStreamer's RTSP server library.

Run it with Debian's ``/usr/bin/python3`` (the project's virtualenv cannot import ``gi``)::

    /usr/bin/python3 tests/rtsp/server.py --port 8554 \
        --mount cam1=/path/clip_h264.mkv --mount ir=/path/clip_mono.mkv \
        --mount pattern='( videotestsrc is-live=true ! x264enc tune=zerolatency ! rtph264pay name=pay0 pt=96 )' \
        [--user alice --password s3cret]

Each ``--mount NAME=SPEC`` serves ``rtsp://127.0.0.1:PORT/NAME``. SPEC is either a media file
(its video codec, H.264 or H.265, is detected and the stream is passed through without
re-encoding, paced at the file's own rate) or a ``gst-launch`` description in parentheses whose
payloader is named ``pay0``. With ``--user``/``--password`` every mount needs HTTP Basic
credentials. Every client gets its own pipeline, so a reconnecting client starts the clip again.

Once the server listens it prints one line ``READY port=PORT`` on stdout (``--port 0`` picks a
free port). It runs until killed; SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstPbutils", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402

PASS_THROUGH = {
    "video/x-h264": "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1",
    "video/x-h265": "h265parse config-interval=-1 ! rtph265pay name=pay0 pt=96 config-interval=1",
}


def video_caps_of(path: str) -> str:
    """The media type of the first video stream in ``path`` (e.g. ``video/x-h264``)."""
    discoverer = GstPbutils.Discoverer.new(10 * Gst.SECOND)
    info = discoverer.discover_uri(Gst.filename_to_uri(path))
    streams = info.get_video_streams()
    if not streams:
        raise SystemExit(f"server.py: {path} has no video stream")
    return streams[0].get_caps().get_structure(0).get_name()


def launch_for(spec: str) -> str:
    """The gst-launch description for a mount SPEC (a file or a parenthesised pipeline)."""
    if spec.lstrip().startswith("("):
        return spec
    media = video_caps_of(spec)
    if media not in PASS_THROUGH:
        raise SystemExit(f"server.py: {spec}: video is {media}; only H.264/H.265 files are served")
    location = spec.replace("\\", "\\\\").replace('"', '\\"')
    return f'( filesrc location="{location}" ! parsebin ! {PASS_THROUGH[media]} )'


def add_auth(server: GstRtspServer.RTSPServer, user: str, password: str) -> None:
    """Require HTTP Basic credentials for every mount."""
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)


def make_factory(launch: str, with_auth: bool) -> GstRtspServer.RTSPMediaFactory:
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    factory.set_eos_shutdown(True)
    if with_auth:
        factory.add_role_from_structure(
            Gst.Structure.new_from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
    return factory


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--mount", action="append", default=[], metavar="NAME=SPEC", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    with_auth = args.user is not None
    if with_auth:
        add_auth(server, args.user, args.password or "")
    mounts = server.get_mount_points()
    for item in args.mount:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"server.py: --mount wants NAME=SPEC, got {item!r}")
        mounts.add_factory("/" + name.strip("/"), make_factory(launch_for(spec), with_auth))
    if server.attach(None) == 0:
        raise SystemExit(f"server.py: cannot listen on {args.address}:{args.port}")
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"READY port={server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
