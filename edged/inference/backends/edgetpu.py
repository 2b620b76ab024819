"""The Coral Edge TPU: the external delegate libedgetpu.so.1 with its `device` option."""

from __future__ import annotations

from edged.inference.backends.base import AcceleratorError
from edged.inference.backends.delegate import DelegateBackend

LIBRARY = "libedgetpu.so.1"


class EdgeTpuBackend(DelegateBackend):
    key = "edgetpu"

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
