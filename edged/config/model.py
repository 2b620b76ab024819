"""A model's config: what every model shares, and the choice of its backend's own model.

Each backend carries its own config model in its own file, beside its implementation
(`edged/inference/backends/edgetpu.py` has `EdgeTpuModelConfig` with `device`, and so on);
they subclass `ModelConfig` and the Backend registry knows them. `delegate` chooses the
backend: none (the CPU), edgetpu, gpu or npu (LiteRT's accelerators), or {library, options}.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from edged.config.base import Variants


class ModelConfig(Variants):
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
    delegate: Any = Field(
        None, description="Accelerator: edgetpu (libedgetpu.so.1), gpu or npu (LiteRT hardware "
        "accelerators, with CPU for unsupported ops), or {library, options} for any external "
        "delegate; default none (CPU, XNNPACK). Each has settings of its own (README: "
        "Accelerators)."
    )

    @classmethod
    def variants(cls) -> dict[str, type[ModelConfig]]:  # type: ignore[override]
        from edged.inference.backends.base import config_models

        return config_models()

    @classmethod
    def variant_of(cls, data: dict[str, Any], base_dir: str | None) -> str | None:
        from edged.inference.backends.base import backend_for

        return backend_for(data.get("delegate"))

    @property
    def backend(self) -> str:
        """The backend's key (cpu, edgetpu, litert, delegate)."""
        return next(k for k, m in self.variants().items() if m is type(self))

    @field_validator("delegate")
    @classmethod
    def _delegate(cls, v: Any) -> Any:  # noqa: ANN401
        # Reached on the root only when no backend takes the value.
        if cls is ModelConfig and v is not None:
            raise ValueError("expected edgetpu, gpu, npu, or {library, options} for an "
                             "external delegate")
        return v

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: float | list[float] | None) -> float | list[float] | None:
        values = v if isinstance(v, list) else [v] if v is not None else []
        if any(x == 0 for x in values):
            raise ValueError("std must not be 0")
        return v
