"""Plug-in folders: every module of a package is imported once, on first use, so that the
classes it defines register themselves (a source kind, a backend). A new one is one file."""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def import_all(package_name: str) -> None:
    """Import every module of `package_name` (once; later calls return at once)."""
    package = importlib.import_module(package_name)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package_name}.{module.name}")
