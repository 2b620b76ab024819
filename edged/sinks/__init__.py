"""Result sinks (publishers), registered under the key that is also their config name."""

from __future__ import annotations

from edged.sinks.base import SINKS, Sink

__all__ = ["SINKS", "Sink"]
