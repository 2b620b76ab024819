"""An accelerator with a CPU fallback: policy `fallback: cpu|fail`, periodic retry, timeouts.

When the accelerator cannot start, or an invoke raises or takes longer than the timeout, the
worker switches to the CPU model (an Edge TPU model's CPU twin, `cpu_path`) and the frame in
hand is run there, so nothing is lost. The switch is logged once per episode (not once per
worker or frame) and counted; every `retry_s` the accelerator is tried again. A hung invoke
cannot be interrupted: its thread is abandoned and a fresh accelerator is built on retry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from typing import Literal

import numpy as np
from pydantic import Field

from edged.config.model import ModelConfig
from edged.inference.backends.base import AcceleratorError, Backend
from edged.errors import ModelError

log = logging.getLogger(__name__)

CPU = "cpu"


class AcceleratorModelConfig(ModelConfig):
    """The settings of every accelerator: what happens when it fails."""

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


class AcceleratorState:
    """Shared by the workers of one model: the log-once episode and the metrics."""

    def __init__(self, model: str, accelerator: str) -> None:
        self.model, self.accelerator = model, accelerator
        self._lock = threading.Lock()
        self._on_cpu = 0
        self._logged = False
        self.workers: Callable[[str, float], None] | None = None  # (backend, delta)
        self.fallbacks: Callable[[str], None] | None = None  # (reason)

    def bind(self, metrics: object) -> None:
        """Report to edged.service.metrics.Metrics (accelerator_workers, accelerator_fallbacks)."""
        gauge = metrics.accelerator_workers  # type: ignore[attr-defined]
        counter = metrics.accelerator_fallbacks  # type: ignore[attr-defined]
        for backend in (self.accelerator, CPU):
            gauge.labels(self.model, backend).inc(0)  # both series exist from the start
        self.workers = lambda backend, delta: gauge.labels(self.model, backend).inc(delta)
        self.fallbacks = lambda reason: counter.labels(self.model, reason).inc()

    def moved(self, backend: str, delta: int) -> None:
        if self.workers is not None:
            self.workers(backend, delta)

    def fell_back(self, reason: str, detail: str, cpu_name: str, retry_s: float) -> None:
        if self.fallbacks is not None:
            self.fallbacks(reason)
        with self._lock:
            self._on_cpu += 1
            first, self._logged = not self._logged, True
        if first:
            log.warning("model %s: %s; running on the CPU (%s) and retrying the %s every %gs",
                        self.model, detail, cpu_name, self.accelerator, retry_s)

    def recovered(self, label: str) -> None:
        with self._lock:
            self._on_cpu = max(0, self._on_cpu - 1)
            announce, self._logged = self._logged, False
        if announce:
            log.info("model %s: running on the %s again", self.model, label)


class InvokeTimeout(AcceleratorError):
    pass


class _Invoker:
    """Runs invoke() in an owned thread so that a hung accelerator can be timed out."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._job: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._request = threading.Event()
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[], None], timeout: float) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
            self._thread.start()
        self._job, self._error = fn, None
        self._done.clear()
        self._request.set()
        if not self._done.wait(timeout):
            self._stop.set()  # the thread is stuck in native code: abandon it
            raise InvokeTimeout(f"invoke took longer than {timeout:g}s")
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while not self._stop.is_set():
            if not self._request.wait(0.5):
                continue
            self._request.clear()
            if self._stop.is_set():
                return
            try:
                self._job()  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._error = exc
            self._done.set()

    def stop(self) -> None:
        self._stop.set()
        self._request.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None


class FallbackBackend(Backend):
    """The accelerator while it works, else the CPU model (policy `cpu`), or an error (`fail`)."""

    key = ""  # composite: built by LoadedModel, not chosen by name

    def __init__(self, accelerator: Callable[[], Backend], cpu: Callable[[], Backend] | None, *,
                 state: AcceleratorState, policy: str = "cpu", retry_s: float = 60.0,
                 invoke_timeout_s: float = 5.0, cpu_name: str = "the same model",
                 clock: Callable[[], float] = time.monotonic, name: str = "model") -> None:
        self._make_accel, self._make_cpu = accelerator, cpu
        self._state, self._policy = state, policy
        self._retry_s, self._timeout = retry_s, invoke_timeout_s
        self._cpu_name, self._clock, self._name = cpu_name, clock, name
        self._accel: Backend | None = None
        self._cpu: Backend | None = None
        self._active: Backend | None = None
        self._invoker: _Invoker | None = None
        self._next_retry = 0.0
        self._closed = False

    @property
    def on_accelerator(self) -> bool:
        return self._active is not None and self._active is self._accel

    @property
    def label(self) -> str:
        return self._active.label if self._active is not None else self._state.accelerator

    def start(self) -> None:
        try:
            self._start_accelerator()
        except AcceleratorError as exc:
            self._fall_back("load_failed", str(exc))

    def _start_accelerator(self) -> None:
        backend = self._make_accel()
        try:
            backend.start()
        except ModelError as exc:
            backend.close()
            raise AcceleratorError(str(exc)) from None
        self._accel = self._active = backend
        self._invoker = _Invoker(f"invoke-{self._name}") if self._timeout > 0 else None
        self._state.moved(self._state.accelerator, +1)

    def _fall_back(self, reason: str, detail: str) -> None:
        if self._policy != "cpu" or self._make_cpu is None:
            raise ModelError(detail if self._policy != "cpu" else
                             f"{detail}; and there is no CPU model to fall back to")
        if self._accel is not None:
            self._state.moved(self._state.accelerator, -1)
            if reason != "invoke_timeout":  # a hung one may never return: leave it be
                self._accel.close()
            if self._invoker is not None:
                self._invoker.stop()
                self._invoker = None
            self._accel = None
        if self._cpu is None:
            cpu = self._make_cpu()
            cpu.start()
            self._cpu = cpu
        self._active = self._cpu
        self._state.moved(CPU, +1)
        self._next_retry = self._clock() + self._retry_s
        self._state.fell_back(reason, detail, self._cpu_name, self._retry_s)

    def _maybe_retry(self) -> None:
        if self._active is not self._cpu or self._clock() < self._next_retry:
            return
        try:
            self._start_accelerator()
        except AcceleratorError as exc:
            self._active = self._cpu
            self._next_retry = self._clock() + self._retry_s
            log.debug("model %s: accelerator still unavailable: %s", self._state.model, exc)
            return
        self._state.moved(CPU, -1)
        self._state.recovered(self._accel.label if self._accel else self._state.accelerator)

    def input_buffer(self) -> np.ndarray:
        if self._active is None:
            raise RuntimeError("backend not started")
        self._maybe_retry()  # only between frames: the buffer handed out must stay valid
        return self._active.input_buffer()

    def invoke(self) -> None:
        active = self._active
        if active is None:
            raise RuntimeError("backend not started")
        if active is not self._accel:
            active.invoke()
            return
        try:
            if self._invoker is not None:
                self._invoker.run(active.invoke, self._timeout)
            else:
                active.invoke()
            return
        except InvokeTimeout as exc:
            reason, detail = "invoke_timeout", f"{active.label}: {exc}"
        except Exception as exc:  # noqa: BLE001 - any accelerator failure mid-run
            reason, detail = "invoke_failed", f"{active.label}: invoke failed: {exc}"
        frame = np.array(active.input_buffer(), copy=True)  # the frame in hand, to rerun
        self._fall_back(reason, detail)
        buf = self._active.input_buffer()  # type: ignore[union-attr]
        buf[...] = frame
        del buf
        self._active.invoke()  # type: ignore[union-attr]

    def output(self) -> np.ndarray:
        if self._active is None:
            raise RuntimeError("backend not started")
        return self._active.output()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._invoker is not None:
            self._invoker.stop()
        for backend in (self._accel, self._cpu):
            if backend is not None:
                backend.close()
        if self._active is not None:
            self._state.moved(self._state.accelerator if self._active is self._accel else CPU,
                              -1)
        self._active = self._accel = self._cpu = None
