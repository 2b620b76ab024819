"""The Coral Edge TPU: the external delegate libedgetpu.so.1 with its `device` option."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from edged.config.model import ModelConfig
from edged.inference.backends.base import AcceleratorError, Backend
from edged.inference.backends.delegate import DelegateBackend
from edged.inference.backends.fallback import AcceleratorModelConfig

LIBRARY = "libedgetpu.so.1"


class EdgeTpuModelConfig(AcceleratorModelConfig):
    delegate: Literal["edgetpu"] = "edgetpu"
    device: str | None = Field(
        None, description="Edge TPU to use: usb, usb:N or pci:N; default the first found."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(usb|pci)(:\d+)?", v):
            raise ValueError("expected usb, usb:N, pci or pci:N")
        return v


class EdgeTpuBackend(DelegateBackend):
    key = "edgetpu"
    config_model = EdgeTpuModelConfig

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        return delegate == "edgetpu"

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        assert isinstance(cfg, EdgeTpuModelConfig)
        return cls(model_bytes, device=cfg.device, threads=common["threads"],
                   output_index=common["output_index"], name=common["name"])

    def __init__(self, model_bytes: bytes, *, device: str | None = None, threads: int = 1,
                 output_index: int = 0, name: str = "model", library: str = LIBRARY) -> None:
        # device: "usb", "usb:N", "pci:N" (libedgetpu's own syntax); None = the first found.
        super().__init__(model_bytes, library=library,
                         options={"device": device} if device else {}, threads=threads,
                         output_index=output_index, name=name)
        self._device = device

    @property
    def label(self) -> str:
        return f"Edge TPU delegate ({self._library}{', ' + self._device if self._device else ''})"

    def _delegates(self, runtime) -> list:  # noqa: ANN001
        try:
            return super()._delegates(runtime)
        except AcceleratorError as exc:
            raise AcceleratorError(f"{exc} (is an Edge TPU plugged in and the Edge TPU runtime "
                                   "libedgetpu1-std installed?)") from None
