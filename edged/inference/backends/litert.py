"""LiteRT's own hardware accelerators (GPU, NPU) through its CompiledModel API.

The accelerator runs what it supports and the CPU the rest (LiteRT's documented advice). Only
ai-edge-litert 2.x has this API; with another runtime the backend says so.
"""

from __future__ import annotations

import gc
from typing import Any, Literal

import numpy as np

from edged.config.model import ModelConfig
from edged.inference.backends.base import AcceleratorError, Backend
from edged.inference.backends.fallback import AcceleratorModelConfig
from edged.model.nativelog import quiet_native_stderr
from edged.model.runtime import find_runtime


class LiteRtModelConfig(AcceleratorModelConfig):
    delegate: Literal["gpu", "npu"]


class LiteRtAcceleratorBackend(Backend):
    key = "litert"
    config_model = LiteRtModelConfig

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        return delegate in ("gpu", "npu")

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        assert isinstance(cfg, LiteRtModelConfig)
        return cls(model_bytes, accelerator=cfg.delegate, **common)

    def __init__(self, model_bytes: bytes, *, accelerator: str, input_shape: tuple[int, ...],
                 input_dtype: np.dtype, output_sizes: list[int], output_dtypes: list[np.dtype],
                 output_index: int = 0, name: str = "model", threads: int = 1) -> None:
        self._model_bytes = model_bytes
        self._accelerator = accelerator
        self._name = name
        self._input = np.zeros(input_shape, dtype=input_dtype)
        self._out_size = output_sizes[output_index]
        self._out_dtype = np.dtype(output_dtypes[output_index])
        self._output_index = output_index
        self._model = None
        self._ins: list = []
        self._outs: list = []
        self.fully_accelerated = False

    @property
    def label(self) -> str:
        return f"LiteRT {self._accelerator.upper()} accelerator"

    def start(self) -> None:
        runtime = find_runtime()
        try:
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        except ImportError:
            raise AcceleratorError(f"{self._name}: delegate {self._accelerator}: {runtime} has no "
                                   "hardware accelerator API (install ai-edge-litert>=2)") from None
        flag = HardwareAccelerator[self._accelerator.upper()] | HardwareAccelerator.CPU
        error = ""
        with quiet_native_stderr(discard=True):  # LiteRT logs every accelerator it registers
            try:
                model = CompiledModel.from_buffer(self._model_bytes, hardware_accel=flag)
                self._ins = model.create_input_buffers(0)
                self._outs = model.create_output_buffers(0)
                self.fully_accelerated = bool(model.is_fully_accelerated())
                self._model = model
                return
            except Exception as exc:  # noqa: BLE001 - LiteRT raises RuntimeError and others
                error = _litert_error(exc)
            gc.collect()  # its environment says goodbye on stderr when freed
        raise AcceleratorError(f"{self._name}: cannot start the {self.label}: {error}")

    def input_buffer(self) -> np.ndarray:
        return self._input

    def invoke(self) -> None:
        if self._model is None:
            raise RuntimeError("backend not started")
        with quiet_native_stderr(discard=True):
            self._ins[0].write(self._input[None])
            self._model.run_by_index(0, self._ins, self._outs)

    def output(self) -> np.ndarray:
        return np.asarray(self._outs[self._output_index].read(self._out_size, self._out_dtype)
                          ).reshape(-1).copy()

    def close(self) -> None:
        model, self._model = self._model, None
        self._ins, self._outs = [], []
        if model is not None:
            with quiet_native_stderr(discard=True):
                model.close()
                del model
                gc.collect()


def _litert_error(exc: BaseException) -> str:
    """LiteRT's message minus its source-location lines ('ERROR: [file.h:N]', '└ ')."""
    lines = [ln.strip().lstrip("└").strip() for ln in str(exc).splitlines()]
    useful = [ln for ln in lines if ln and not (ln.startswith("ERROR: [") and ln.endswith("]"))]
    return useful[0] if useful else "LiteRT gives no reason (is that hardware present here?)"
