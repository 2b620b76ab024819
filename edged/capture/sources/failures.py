"""Why a source failed, as one of a few kinds: a log word and a metric label.

unreachable: nothing answers at the address (refused, no route, name unknown)
auth: the camera refused the credentials (or the device's permissions)
not_found: the address answers but the stream or device does not exist
decode: the stream arrived but could not be decoded (codec, corrupt data)
timeout: no answer, or no frame, within the camera's timeout_s
ended: the stream was closed by the other side
wedged: a read blocked past timeout_s; edged abandoned that thread and reopened the source
error: anything else
"""

from __future__ import annotations

import errno
import socket

from edged.errors import SourceError

KINDS = ("unreachable", "auth", "not_found", "decode", "timeout", "ended", "wedged", "error")


class SourceFailure(SourceError):
    """A SourceError that knows its kind."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind if kind in KINDS else "error"


def kind_of(exc: BaseException) -> str:
    """The failure kind of any exception raised while opening or reading a source."""
    if isinstance(exc, SourceFailure):
        return exc.kind
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, socket.gaierror):
        return "unreachable"
    if isinstance(exc, (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError)):
        return "unreachable" if isinstance(exc, ConnectionRefusedError) else "ended"
    if isinstance(exc, PermissionError):
        return "auth"
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH,
                                                   errno.EADDRNOTAVAIL):
        return "unreachable"
    return "error"


def status_kind(code: int) -> str | None:
    """An RTSP or HTTP status code -> failure kind; None for success."""
    if 200 <= code < 300:
        return None
    if code in (401, 403, 407):
        return "auth"
    if code in (404, 410, 454):  # 454: RTSP Session Not Found
        return "not_found"
    if code in (408, 504):
        return "timeout"
    return "error"


def describe_os_error(exc: BaseException) -> str:
    """A short reason without the exception class name (no URLs are in socket errors)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__
