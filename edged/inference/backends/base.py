"""The Backend seam: one interpreter owned by one worker thread."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from edged.config.model import ModelConfig
from edged.errors import ModelError
from edged.plugins import import_all

BACKENDS: dict[str, type[Backend]] = {}


class AcceleratorError(ModelError):
    """An accelerator (delegate) cannot load or run; the CPU fallback may take over."""


class Backend(ABC):
    """Runs one model. Not thread-safe by design: each worker owns its own instance."""

    key: ClassVar[str]
    # The backend's own settings (a ModelConfig subclass in the backend's file), when a
    # model's `delegate` chooses it (handles()); None for helpers that no config chooses.
    config_model: ClassVar[type[ModelConfig] | None] = None

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        """Whether a model's `delegate` value chooses this backend."""
        return False

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        """This backend for `cfg` (common: threads, output_index, name, and the model's
        input and outputs as allocated: input_shape, input_dtype, output_sizes,
        output_dtypes)."""
        raise NotImplementedError(f"{cls.key} is not configured by a model")

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


def _backends() -> dict[str, type[Backend]]:
    import_all("edged.inference.backends")  # each file registers its backend
    return BACKENDS


def config_models() -> dict[str, type[ModelConfig]]:
    """Backend key -> its config model: the union a model's config is validated as."""
    return {k: c.config_model for k, c in _backends().items() if c.config_model is not None}


def backend_for(delegate: Any) -> str | None:  # noqa: ANN401
    """The backend a model's `delegate` value chooses; None if none does."""
    return next((k for k, c in _backends().items()
                 if c.config_model is not None and c.handles(delegate)), None)


def get_backend(key: str) -> type[Backend]:
    _backends()
    try:
        return BACKENDS[key]
    except KeyError:
        raise ModelError(f"unknown backend {key!r}; known: {', '.join(sorted(BACKENDS))}") from None
