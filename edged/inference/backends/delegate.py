"""An external TFLite delegate (any `load_delegate` library) in front of the CPU interpreter."""

from __future__ import annotations

import gc
import sys
from typing import Any

from pydantic import Field

from edged.config.base import _Strict
from edged.config.model import ModelConfig
from edged.inference.backends.base import AcceleratorError, Backend
from edged.inference.backends.fallback import AcceleratorModelConfig
from edged.inference.backends.cpu import CpuBackend, _first_line
from edged.model.nativelog import quiet_native_stderr


class ExternalDelegateConfig(_Strict):
    library: str = Field(..., min_length=1, description="Path or name of the delegate's shared "
                         "library (loaded with load_delegate).")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Options passed to the delegate, as key: value."
    )


class ExternalDelegateModelConfig(AcceleratorModelConfig):
    delegate: ExternalDelegateConfig = Field(
        ..., description="{library, options}: any TFLite external delegate."
    )


class DelegateBackend(CpuBackend):
    key = "delegate"
    config_model = ExternalDelegateModelConfig

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        return isinstance(delegate, (dict, ExternalDelegateConfig))

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        assert isinstance(cfg, ExternalDelegateModelConfig)
        return cls(model_bytes, library=cfg.delegate.library, options=cfg.delegate.options,
                   threads=common["threads"], output_index=common["output_index"],
                   name=common["name"])

    def __init__(self, model_bytes: bytes, *, library: str,
                 options: dict[str, object] | None = None, threads: int = 1,
                 output_index: int = 0, name: str = "model") -> None:
        super().__init__(model_bytes, threads=threads, output_index=output_index, name=name)
        self._library = library
        # load_delegate passes every option to the C API as a string.
        self._options = {str(k): _option_text(v) for k, v in (options or {}).items()}

    @property
    def label(self) -> str:
        return f"delegate {self._library}"

    def _delegates(self, runtime) -> list:  # noqa: ANN001
        if runtime.load_delegate is None:
            raise AcceleratorError(f"{runtime} cannot load delegates")
        error = ""
        # The runtime's Delegate object that failed to load complains from its __del__
        # (AttributeError '_library') when freed: freed here, with that complaint muted.
        hook, sys.unraisablehook = sys.unraisablehook, _mute_delegate_del(sys.unraisablehook)
        try:
            with quiet_native_stderr(discard=True):
                try:
                    return [runtime.load_delegate(self._library, self._options)]
                except (ValueError, OSError, RuntimeError) as exc:
                    error = _first_line(exc)
                gc.collect()
        finally:
            sys.unraisablehook = hook
        raise AcceleratorError(f"{self._name}: cannot load the {self.label}: {error}")

    def start(self) -> None:
        try:
            super().start()
        except AcceleratorError:
            raise
        except Exception as exc:  # noqa: BLE001 - a delegate that loads but cannot run the model
            raise AcceleratorError(str(exc)) from None


def _mute_delegate_del(hook):  # noqa: ANN001, ANN202
    def mute(unraisable) -> None:  # noqa: ANN001
        if not (isinstance(unraisable.exc_value, AttributeError)
                and "Delegate" in repr(unraisable.object)):
            hook(unraisable)
    return mute


def _option_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
