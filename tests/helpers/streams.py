"""Live stream servers for tests: a real RTSP server (gst-rtsp-server in a subprocess) and an
HTTP MJPEG server (in a thread), both on loopback, both serving frames of the demo video."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

from tests.helpers.broker import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_HELPER = Path(__file__).with_name("rtsp_server.py")


def write_frames(video: Path, folder: Path, count: int = 60) -> Path:
    """The first `count` frames of `video` as 00000.jpg, 00001.jpg, ... in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    try:
        for i in range(count):
            ok, image = cap.read()
            if not ok:
                break
            cv2.imwrite(str(folder / f"{i:05d}.jpg"), image)
    finally:
        cap.release()
    return folder


class RtspServer:
    """gst-rtsp-server serving `frames` as H.264 (or a `video` file as it is) at
    rtsp://127.0.0.1:PORT/cam."""

    def __init__(self, frames: Path | None, port: int | None = None, fps: int = 30,
                 user: str | None = None, password: str | None = None,
                 video: Path | None = None) -> None:
        # `video`: a pre-encoded H.264 MP4 served as it is (tests/helpers/h264.py), not frames.
        self.frames, self.port, self.fps = frames, port or free_port(), fps
        self.video = video
        self.user, self.password = user, password
        self.proc: subprocess.Popen | None = None

    def url(self, path: str = "/cam", user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 10.0) -> RtspServer:
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(f"{SYSTEM_PYTHON} is missing: run scripts/setup.sh")
        cmd = [SYSTEM_PYTHON, str(RTSP_HELPER), "--port", str(self.port), "--fps", str(self.fps)]
        cmd += ["--video", str(self.video)] if self.video else ["--frames", str(self.frames)]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ready = threading.Event()
        threading.Thread(target=lambda: ready.set() if self.proc.stdout.readline() else None,
                         name="rtsp-ready", daemon=True).start()
        if not ready.wait(timeout):
            err = self.stop()
            raise RuntimeError(f"RTSP test server did not start (run scripts/setup.sh): {err}")
        return self

    def stop(self) -> str:
        """Kill the server (like a camera losing power); its stderr."""
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            self.proc = None
        return err or ""


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at http://127.0.0.1:PORT/stream.mjpg (and one
    JPEG at /snapshot.jpg), at `fps`, optionally behind Basic auth; 404 elsewhere."""

    def __init__(self, frames: Path, fps: float = 15, user: str | None = None,
                 password: str | None = None, content_length: bool = True) -> None:
        self.jpegs = [p.read_bytes() for p in sorted(frames.glob("*.jpg"))]
        self.fps = fps
        self.content_length = content_length
        self.auth = (base64.b64encode(f"{user}:{password}".encode()).decode()
                     if user else None)
        self.stopping = threading.Event()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.clients = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    def start(self) -> MjpegServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                if owner.auth and self.headers.get("Authorization") != f"Basic {owner.auth}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="cam"')
                    self.end_headers()
                    return
                if self.path == "/snapshot.jpg":
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.send_header("Content-Length", str(len(owner.jpegs[0])))
                    self.end_headers()
                    self.wfile.write(owner.jpegs[0])
                    return
                if self.path != "/stream.mjpg":
                    self.send_error(404)
                    return
                owner.clients += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not owner.stopping.is_set():
                        jpeg = owner.jpegs[i % len(owner.jpegs)]
                        head = b"--frame\r\nContent-Type: image/jpeg\r\n"
                        if owner.content_length:
                            head += f"Content-Length: {len(jpeg)}\r\n".encode()
                        self.wfile.write(head + b"\r\n" + jpeg + b"\r\n")
                        i += 1
                        time.sleep(1 / owner.fps)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="mjpeg-server",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join(5)
