"""A real HTTP MJPEG camera on loopback that can wedge: after `frames` frames it stops sending
but keeps the connection open, like a camera whose encoder hung."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2


def jpeg_frames(video: Path, count: int) -> list[bytes]:
    cap = cv2.VideoCapture(str(video))
    out = []
    while len(out) < count:
        ok, image = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.imencode(".jpg", image)[1].tobytes())
    cap.release()
    return out


class MjpegCamera:
    def __init__(self, frames: list[bytes], fps: float = 10.0, send: int | None = None) -> None:
        self.frames, self.fps = frames, fps
        self.send = send  # frames per connection before wedging; None = forever
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegCamera:
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        t = threading.Thread(target=self._accept, name="mjpeg-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), name="mjpeg-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            conn.recv(65536)  # the request
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; "
                         b"boundary=frame\r\nCache-Control: no-cache\r\n\r\n")
            i = 0
            while not self._stop.is_set() and (self.send is None or i < self.send):
                jpg = self.frames[i % len(self.frames)]
                conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                             + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                i += 1
                time.sleep(1.0 / self.fps)
            # Wedged: a part that announces 10 MB and trickles a byte at a time. Data keeps
            # coming, so no read timeout fires, and the frame never completes: the capture
            # thread is stuck in one read, which only the watchdog can see.
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 10000000"
                         b"\r\n\r\n" + self.frames[0][:2])
            while not self._stop.wait(0.2):
                conn.sendall(b"\x00")
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(2)
