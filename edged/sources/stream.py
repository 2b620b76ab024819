"""Kept for imports of `redact` from here; live sources are now one file per kind
(rtsp.py, mjpeg.py, v4l2.py, gstreamer.py) and URL helpers live in url.py."""

from __future__ import annotations

from edged.sources.url import redact

__all__ = ["redact"]
