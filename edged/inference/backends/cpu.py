"""The CPU backend: a LiteRT (or tflite-runtime) interpreter with its default XNNPACK delegate."""

from __future__ import annotations

from typing import Any

import numpy as np

from edged.config.model import ModelConfig
from edged.inference.backends.base import Backend
from edged.errors import ModelError
from edged.model.nativelog import quiet_native_stderr
from edged.model.runtime import find_runtime


class CpuModelConfig(ModelConfig):
    """A model on the CPU (LiteRT's XNNPACK): no settings beyond every model's."""

    delegate: None = None


class CpuBackend(Backend):
    key = "cpu"
    config_model = CpuModelConfig

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        return delegate is None

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        return cls(model_bytes, threads=common["threads"], output_index=common["output_index"],
                   name=common["name"])

    def __init__(self, model_bytes: bytes, *, threads: int = 1, output_index: int = 0,
                 name: str = "model") -> None:
        self._model_bytes = model_bytes
        self._threads = threads
        self._output_index = output_index
        self._name = name
        self._interp = None
        self._in_index = self._out_index = -1

    def start(self) -> None:
        runtime = find_runtime()
        try:
            with quiet_native_stderr():
                delegates = self._delegates(runtime)
                kwargs = {"experimental_delegates": delegates} if delegates else {}
                interp = runtime.interpreter(model_content=self._model_bytes,
                                             num_threads=self._threads, **kwargs)
                _batch_of_one(interp)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if "edgetpu-custom-op" in str(exc):
                raise ModelError(f"{self._name}: compiled for the Coral Edge TPU; it needs the "
                                 "edgetpu delegate (or use the model's CPU version)") from None
            raise ModelError(f"{self._name}: {runtime} cannot load the model: "
                             f"{_first_line(exc)}") from None
        self._interp = interp
        self._in_index = interp.get_input_details()[0]["index"]
        self._out_index = interp.get_output_details()[self._output_index]["index"]

    def _delegates(self, runtime) -> list:  # noqa: ANN001 - the runtime's own types
        """Delegates to build the interpreter with; none on the CPU (XNNPACK is the default)."""
        return []

    @property
    def interpreter(self):  # noqa: ANN201 - the runtime's own type
        if self._interp is None:
            raise RuntimeError("backend not started")
        return self._interp

    def input_buffer(self) -> np.ndarray:
        return self.interpreter.tensor(self._in_index)()[0]

    def invoke(self) -> None:
        try:
            self.interpreter.invoke()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self._name}: invoke failed: {_first_line(exc)}") from None

    def output(self) -> np.ndarray:
        return self.interpreter.get_tensor(self._out_index).reshape(-1).copy()

    def close(self) -> None:
        self._interp = None


def _batch_of_one(interp) -> None:  # noqa: ANN001
    """A dynamic batch dimension (shape_signature[0] == -1) stored as another size: make it 1."""
    for detail in interp.get_input_details():
        shape, signature = list(detail["shape"]), list(detail.get("shape_signature", []))
        if shape and shape[0] != 1 and signature and signature[0] == -1:
            interp.resize_tensor_input(detail["index"], [1, *shape[1:]])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # LiteRT puts the useful part ("... custom op ... not found") on a later line.
    useful = [line for line in lines if "op" in line.lower() or "fail" in line.lower()]
    return (useful or lines or [type(exc).__name__])[0].strip()
