"""An external TFLite delegate (any `load_delegate` library) in front of the CPU interpreter."""

from __future__ import annotations

import gc
import sys

from edged.inference.backends.base import AcceleratorError
from edged.inference.backends.cpu import CpuBackend, _first_line
from edged.model.nativelog import quiet_native_stderr


class DelegateBackend(CpuBackend):
    key = "delegate"

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
