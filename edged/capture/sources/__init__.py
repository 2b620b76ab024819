"""Frame sources, registered under the key that is also their config `type`."""

from __future__ import annotations

from edged.capture.sources.base import SOURCES, Frame, Source, make_source

__all__ = ["SOURCES", "Frame", "Source", "make_source"]
