"""A model's config."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from edged.config.base import _Strict


class ExternalDelegateConfig(_Strict):
    library: str = Field(..., min_length=1, description="Path or name of the delegate's shared "
                         "library (loaded with load_delegate).")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Options passed to the delegate, as key: value."
    )


class ModelConfig(_Strict):
    path: str = Field(..., description="TFLite model file (relative to the config file).")
    labels: str | None = Field(
        None, description="Labels file, one per line (relative to the config file)."
    )
    threads: int = Field(1, ge=1, le=64, description="Interpreter threads per worker.")
    workers: int = Field(2, ge=1, le=64, description="Worker threads, each owning an interpreter.")
    top_k: int = Field(3, ge=1, description="How many best classes each result lists.")
    mean: float | list[float] | None = Field(
        None, description="Input normalization mean (scalar or per channel); default 127.5."
    )
    std: float | list[float] | None = Field(
        None, description="Input normalization std (scalar or per channel); default 127.5."
    )

    resize: Literal["stretch", "center-crop", "letterbox"] = Field(
        "stretch", description="How a frame is fitted to the input size: stretch (whole frame, "
        "aspect not kept), center-crop (centred region of the model's aspect) or letterbox "
        "(whole frame, aspect kept, black bars)."
    )
    output: Literal["auto", "probabilities", "logits"] = Field(
        "auto", description="Output kind: logits get a softmax; auto decides from the output's "
        "quantization and values (README: Outputs)."
    )
    output_tensor: int | str | None = Field(
        None, description="Models with several outputs: the output to use, by index or name; "
        "default the first."
    )
    delegate: Literal["edgetpu", "gpu", "npu"] | ExternalDelegateConfig | None = Field(
        None, description="Accelerator: edgetpu (libedgetpu.so.1), gpu or npu (LiteRT hardware "
        "accelerators, with CPU for unsupported ops), or {library, options} for any external "
        "delegate; default none (CPU, XNNPACK)."
    )
    device: str | None = Field(
        None, description="Edge TPU to use: usb, usb:N or pci:N; default the first found."
    )
    fallback: Literal["cpu", "fail"] = Field(
        "cpu", description="When the accelerator cannot load or fails mid-run: cpu (run on the "
        "CPU model, retry the accelerator every retry_s) or fail (stop with an error)."
    )
    cpu_path: str | None = Field(
        None, description="CPU version of an accelerator-compiled model (an Edge TPU model's "
        "twin) for the CPU fallback; default the model itself."
    )
    retry_s: float = Field(
        60.0, gt=0, description="After a fallback to the CPU, retry the accelerator this often."
    )
    invoke_timeout_s: float = Field(
        5.0, ge=0, description="An accelerator invoke taking longer counts as failed (0: no "
        "limit)."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(usb|pci)(:\d+)?", v):
            raise ValueError("expected usb, usb:N, pci or pci:N")
        return v

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: float | list[float] | None) -> float | list[float] | None:
        values = v if isinstance(v, list) else [v] if v is not None else []
        if any(x == 0 for x in values):
            raise ValueError("std must not be 0")
        return v


