"""Camera URLs: credentials split off and redacted, so no log line, metric or message holds them."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://***@host/x"""
    return _CREDENTIALS.sub("***@", url)


def credentials(url: str) -> tuple[str | None, str | None]:
    """(user, password) from a URL's userinfo, percent-decoded; (None, None) if absent."""
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def without_credentials(url: str) -> str:
    """The URL with its userinfo removed (for request lines sent to the camera)."""
    return _CREDENTIALS.sub("", url)


def host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or default_port
