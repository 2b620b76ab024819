"""Inference backends, registered under the key that is also their config name."""

from __future__ import annotations

from edged.inference.backends.base import BACKENDS, Backend, get_backend

__all__ = ["BACKENDS", "Backend", "get_backend"]
