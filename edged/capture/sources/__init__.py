"""Frame sources, registered under the key that is also their config `type`."""

from __future__ import annotations

from edged.capture.sources.base import SOURCES, Source, make_source

__all__ = ["SOURCES", "Source", "make_source"]
