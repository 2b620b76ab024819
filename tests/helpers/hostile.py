"""A hostile HTTP camera on loopback: each path misbehaves in its own way, byte by byte on a
real socket. Connections are counted per path with their times (to see reconnect backoff).

Paths (all answer any GET; the part or image bytes are a real JPEG's start):
  /trickle          a valid MJPEG head, then one part's bytes at 1 byte/s
  /trickle-head     the HTTP status line and headers themselves at 1 byte/s
  /endless-header   an HTTP header line that never ends (500 bytes/s)
  /endless-part-header  a valid head, then a part header line that never ends (500 bytes/s)
  /slow-part-headers    a valid head, then whole part header lines, one every 0.2 s, forever
  /endless-body     image/jpeg without a length, as fast as the socket takes it, forever
  /slow-body        image/jpeg with a length, its body at 20 bytes/s
  /mixed            a well-behaved MJPEG stream at 10 fps whose parts cycle through: a good
                    JPEG, a truncated JPEG, a good JPEG, a PNG declaring 30000 x 30000 pixels
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import zlib
from collections import defaultdict

MJPEG_HEAD = (b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n"
              b"Cache-Control: no-cache\r\n\r\n")
JPEG_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\n\r\n"


def png_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit grey PNG of side x side pixels (all black), about 110 kB: a decoder
    without a budget makes a side*side*3 byte colour image of it (2.7 GB for 30000)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


class HostileCamera:
    def __init__(self, jpeg: bytes, bomb: bytes = b"") -> None:
        self.jpeg = jpeg
        self.bomb = bomb
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self.connections: dict[str, list[float]] = defaultdict(list)
        self.sent: dict[str, int] = defaultdict(int)  # bytes sent per path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> HostileCamera:
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        t = threading.Thread(target=self._accept, name="hostile-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), name="hostile-conn",
                                 daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _serve(self, conn: socket.socket) -> None:
        path = "?"
        try:
            conn.settimeout(5)
            request = conn.recv(65536).decode("latin-1")
            path = request.split(" ", 2)[1] if request.count(" ") >= 2 else "?"
            self.connections[path].append(time.monotonic())
            behave = {
                "/trickle": self._trickle, "/trickle-head": self._trickle_head,
                "/endless-header": self._endless_header,
                "/endless-part-header": self._endless_part_header,
                "/slow-part-headers": self._slow_part_headers,
                "/endless-body": self._endless_body, "/slow-body": self._slow_body,
                "/mixed": self._mixed,
            }.get(path)
            if behave is None:
                conn.sendall(b"HTTP/1.0 404 Not Found\r\n\r\n")
            else:
                behave(conn, path)
        except OSError:
            pass  # the client gave up: what it should do
        finally:
            conn.close()

    def _drip(self, conn: socket.socket, path: str, data: bytes, every_s: float,
              size: int = 1) -> None:
        for i in range(0, len(data), size):
            if self._stop.wait(every_s):
                return
            conn.sendall(data[i:i + size])
            self.sent[path] += size

    def _forever(self, conn: socket.socket, path: str, piece: bytes, every_s: float) -> None:
        while not self._stop.wait(every_s):
            conn.sendall(piece)
            self.sent[path] += len(piece)

    def _trickle(self, conn: socket.socket, path: str) -> None:
        conn.sendall(MJPEG_HEAD)
        part = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                % len(self.jpeg) + self.jpeg + b"\r\n")
        self._drip(conn, path, part, 1.0)

    def _trickle_head(self, conn: socket.socket, path: str) -> None:
        self._drip(conn, path, MJPEG_HEAD + b"--frame\r\n", 1.0)

    def _endless_header(self, conn: socket.socket, path: str) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nX-Endless: ")
        self._forever(conn, path, b"a" * 50, 0.1)

    def _endless_part_header(self, conn: socket.socket, path: str) -> None:
        conn.sendall(MJPEG_HEAD + b"--frame\r\nContent-Type: image/jpeg\r\nX-Endless: ")
        self._forever(conn, path, b"a" * 50, 0.1)

    def _slow_part_headers(self, conn: socket.socket, path: str) -> None:
        conn.sendall(MJPEG_HEAD + b"--frame\r\n")
        n = 0
        while not self._stop.wait(0.2):
            line = b"X-Pad-%d: x\r\n" % n
            conn.sendall(line)
            self.sent[path] += len(line)
            n += 1

    def _endless_body(self, conn: socket.socket, path: str) -> None:
        conn.sendall(JPEG_HEAD + self.jpeg[:600])
        block = b"\x00" * 65536
        while not self._stop.is_set():
            conn.sendall(block)
            self.sent[path] += len(block)

    def _slow_body(self, conn: socket.socket, path: str) -> None:
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                     % len(self.jpeg))
        self._drip(conn, path, self.jpeg, 0.05, 1)

    def _mixed(self, conn: socket.socket, path: str) -> None:
        conn.sendall(MJPEG_HEAD)
        parts = [self.jpeg, self.jpeg[: len(self.jpeg) // 2], self.jpeg, self.bomb]
        i = 0
        while not self._stop.wait(0.1):
            body = parts[i % len(parts)]
            conn.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                         % len(body) + body + b"\r\n")
            self.sent[path] += len(body)
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for t in self._threads:
            t.join(2)
