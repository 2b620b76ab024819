"""The Backend seam: one interpreter owned by one worker thread."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from edged.errors import ModelError

BACKENDS: dict[str, type[Backend]] = {}


class AcceleratorError(ModelError):
    """An accelerator (delegate) cannot load or run; the CPU fallback may take over."""


class Backend(ABC):
    """Runs one model. Not thread-safe by design: each worker owns its own instance."""

    key: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "key", None):
            BACKENDS[cls.key] = cls

    @property
    def label(self) -> str:
        """What runs the model, for logs and errors."""
        return self.key

    @abstractmethod
    def start(self) -> None:
        """Load the model and allocate tensors (raises ModelError)."""

    @abstractmethod
    def input_buffer(self) -> np.ndarray:
        """The input tensor's memory (H x W x C) to write a frame into; valid until invoke()."""

    @abstractmethod
    def invoke(self) -> None:
        """Run the model on what was written to input_buffer()."""

    @abstractmethod
    def output(self) -> np.ndarray:
        """A copy of the raw output tensor of the last invoke, flattened."""

    @abstractmethod
    def close(self) -> None:
        """Free the interpreter; safe to call twice."""


def get_backend(key: str) -> type[Backend]:
    # Importing the implementations registers them; done here, not at package import.
    from edged.inference.backends import cpu, delegate, edgetpu, litert  # noqa: F401

    try:
        return BACKENDS[key]
    except KeyError:
        raise ModelError(f"unknown backend {key!r}; known: {', '.join(sorted(BACKENDS))}") from None
