"""A real RTSP server for tests: GStreamer's gst-rtsp-server serving JPEG frames as H.264.

Run with Debian's system Python (/usr/bin/python3), which has python3-gi; the venv cannot
import gi. scripts/setup.sh installs the packages. Usage:

    /usr/bin/python3 rtsp_server.py --port 8554 --frames DIR [--fps 30] [--user U --password P]

DIR holds 00000.jpg, 00001.jpg, ... which loop forever at --fps, served at rtsp://HOST:PORT/cam.
With --video FILE.mp4 instead of --frames, a pre-encoded H.264 MP4 is served as it is (no
re-encode: its GOP, noise and bit rate are the camera's), paced at its own frame rate, once
per client from its connect.
It prints "ready" on stdout once listening. This file imports nothing from the test package.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--frames")
    src.add_argument("--video")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--path", default="/cam")
    p.add_argument("--user")
    p.add_argument("--password")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    if args.video:
        # Demuxed and payloaded as it is: the stream's GOP and bit rate are the file's own,
        # paced by the sink on the pipeline clock. Each client's media plays the file once
        # from its connect (make it as long as the test or benchmark runs).
        factory.set_launch(
            f'( filesrc location="{args.video}" ! qtdemux ! h264parse ! '
            "rtph264pay name=pay0 pt=96 config-interval=1 )")
    else:
        factory.set_launch(
            f'( multifilesrc location="{args.frames}/%05d.jpg" index=0 loop=true '
            f'caps="image/jpeg,framerate={args.fps}/1" ! jpegdec ! videoconvert ! '
            f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bitrate=800 ! "
            "rtph264pay name=pay0 pt=96 config-interval=1 )")
    # Frames: one shared encoder for every client. A video: a pipeline per client, each from
    # the file's start at its connect, so N clients are N cameras with their own keyframe
    # phase (a shared one would have every camera's keyframes arrive at the same instant).
    factory.set_shared(not args.video)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_ACCESS, True)
        perms.add_permission_for_role("user", GstRtspServer.RTSP_PERM_MEDIA_FACTORY_CONSTRUCT,
                                      True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
