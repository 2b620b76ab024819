"""Which TFLite runtime is installed: ai-edge-litert (LiteRT) preferred, tflite-runtime else."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

from edged.errors import ModelError

# (module holding Interpreter, distribution name) in order of preference.
_CANDIDATES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


@dataclass(frozen=True)
class Runtime:
    name: str
    version: str
    interpreter: Any  # the Interpreter class
    load_delegate: Any  # the load_delegate function

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@lru_cache(maxsize=1)
def find_runtime() -> Runtime:
    """The first importable runtime; ModelError naming what to install when there is none."""
    for module_name, dist in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "unknown"
        return Runtime(dist, version, module.Interpreter, getattr(module, "load_delegate", None))
    raise ModelError(
        "no TFLite runtime installed: pip install ai-edge-litert "
        "(or tflite-runtime with 'numpy<2')"
    )
