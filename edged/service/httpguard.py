"""Bounds for the HTTP listener (metrics, health, live view): no client can hold a thread.

- The request head (request line and headers) must arrive whole within `request_timeout_s`,
  however slowly its bytes come, so an idle or slow-loris connection is closed (`idle`).
- Each write must be taken by the client within `write_timeout_s`: an MJPEG viewer that stops
  reading fills the (bounded) socket buffer, its write times out and the stream ends, which
  frees its stream slot (`write_timeout`).
- At most `max_connections` connections are served at once; more are closed at accept
  (`busy`).
Each drop is counted in edged_http_connections_dropped_total{reason} and logged at debug level
(a client that goes away is not an error of edged's), never as a traceback.
"""

from __future__ import annotations

import io
import logging
import socket
import sys
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from edged.capture.sources.deadline import Deadline, DeadlineReader

log = logging.getLogger(__name__)

DROP_REASONS = ("idle", "write_timeout", "gone", "busy")
_SNDBUF = 256 * 1024  # per connection: bounds kernel memory and how long a stuck write hides


class _QuietServerHandler(ServerHandler):
    on_drop: Callable[[str], None] = staticmethod(lambda reason: None)

    def handle_error(self) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # the client stopped reading or left mid-response
            self.on_drop("write_timeout" if isinstance(exc, TimeoutError) else "gone")
            return
        super().handle_error()


def guarded_handler(request_timeout_s: float, write_timeout_s: float,
                    on_drop: Callable[[str], None]) -> type[WSGIRequestHandler]:
    """A WSGIRequestHandler class with these bounds (a class: socketserver instantiates it)."""

    class Handler(_QuietServerHandler):
        pass

    Handler.on_drop = staticmethod(on_drop)

    class GuardedHandler(WSGIRequestHandler):
        def setup(self) -> None:
            super().setup()
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
            except OSError:
                pass
            self._deadline = Deadline()
            self._deadline.start(request_timeout_s)
            self.rfile.close()  # the plain file; the socket stays open
            self.rfile = io.BufferedReader(DeadlineReader(self.connection, self._deadline))

        def handle(self) -> None:
            try:
                self.raw_requestline = self.rfile.readline(65537)
                if len(self.raw_requestline) > 65536:
                    self.requestline = self.request_version = self.command = ""
                    self.send_error(414)
                    return
                if not self.parse_request():  # an error reply was sent
                    return
            except OSError:  # nothing, or not a whole request head, in time
                on_drop("idle")
                return
            # Writes from here on: each must be taken within write_timeout_s.
            self.connection.settimeout(write_timeout_s)
            handler = Handler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(),
                              multithread=False)
            handler.request_handler = self
            handler.run(self.server.get_app())

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib
            pass

    return GuardedHandler


class BoundedServer(ThreadingMixIn, WSGIServer):
    """A threading WSGI server serving at most `max_connections` connections at once."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog (socketserver's 5 drops SYNs under a burst)

    def __init__(self, address: tuple[str, int], handler: type[WSGIRequestHandler],
                 max_connections: int = 64,
                 on_drop: Callable[[str], None] = lambda reason: None) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._on_drop = on_drop
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        if not self._slots.acquire(blocking=False):
            self._on_drop("busy")
            self.shutdown_request(request)
            return
        try:
            thread = threading.Thread(target=self.process_request_thread,
                                      args=(request, client_address), name="http-conn",
                                      daemon=True)
            thread.start()
        except BaseException:
            self._slots.release()
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request, client_address) -> None:  # noqa: ANN001
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        log.warning("http: error serving %s: %s", client_address[0], sys.exc_info()[1])
