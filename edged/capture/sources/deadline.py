"""A deadline for a whole operation on a socket, not for each read.

A socket timeout bounds one recv(): a server that sends one byte a second never trips it, and
a frame (or an HTTP header) that is never finished holds the reader forever. Here every recv
and send is given only the time left until the deadline, so reading a whole frame, however
the bytes are spread, ends by its deadline with TimeoutError. Used by the HTTP camera sources
(through http.client, which keeps its parser, chunked decoding and header limits) and by the
HTTP listener for request heads.
"""

from __future__ import annotations

import http.client
import io
import math
import socket
import ssl
import time
from collections.abc import Callable


class DeadlineExceeded(TimeoutError):
    """The operation's deadline passed (a TimeoutError, so failure kinds say `timeout`)."""


class Deadline:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.at = math.inf

    def start(self, seconds: float) -> None:
        self.at = self._clock() + seconds

    def clear(self) -> None:
        self.at = math.inf

    def remaining(self) -> float | None:
        """Seconds left (None: no deadline); DeadlineExceeded once it has passed."""
        if self.at == math.inf:
            return None
        left = self.at - self._clock()
        if left <= 0:
            raise DeadlineExceeded("deadline passed")
        return left


class DeadlineReader(io.RawIOBase):
    """Raw reads from a socket, each bounded by the time left until the deadline."""

    def __init__(self, sock: socket.socket, deadline: Deadline,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._sock, self._deadline = sock, deadline
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        super().close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def readinto(self, buffer) -> int:  # noqa: ANN001 - a writable buffer
        self._sock.settimeout(self._deadline.remaining())
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise DeadlineExceeded("deadline passed") from None


class _DeadlineSocket:
    """What http.client sees as its socket: its file reads and its sends obey the deadline.
    Like socket.makefile, an open file keeps the socket open after close() (http.client
    closes the connection and leaves the response to read the rest)."""

    def __init__(self, sock: socket.socket, deadline: Deadline) -> None:
        self._sock, self._deadline = sock, deadline
        self._files = 0
        self._closed = False

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        assert mode == "rb", mode  # http.client only reads through files
        self._files += 1
        return io.BufferedReader(DeadlineReader(self._sock, self._deadline, self._file_closed),
                                 65536)

    def _file_closed(self) -> None:
        self._files -= 1
        if self._closed and self._files <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._files <= 0:
            self._sock.close()

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._deadline.remaining())
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class DeadlineHTTPConnection(http.client.HTTPConnection):
    """http.client with every network wait (connect, TLS handshake, request, status line,
    headers, body) bounded by `deadline`, which the caller restarts per operation. Name
    resolution is left to the system resolver's own timeouts."""

    def __init__(self, host: str, port: int | None, deadline: Deadline,
                 context: ssl.SSLContext | None = None) -> None:
        super().__init__(host, port if port is not None else (443 if context else 80))
        self.deadline = deadline
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.deadline.remaining())
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                # CPython bounds the whole handshake by the socket timeout.
                sock.settimeout(self.deadline.remaining())
                sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self.deadline)  # type: ignore[assignment]
