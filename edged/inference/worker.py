"""Inference workers: each a named thread owning one interpreter (invoke releases the GIL)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from edged.inference.backends import Backend
from edged.errors import ModelError
from edged.service.metrics import Metrics
from edged.model.loaded import LoadedModel
from edged.inference.postprocess import to_scores, top_k
from edged.inference.preprocess import Scratch, prepare
from edged.service.ratelimit import EpisodeLog
from edged.inference.scheduler import Job, Scheduler

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """A classified frame, or a skipped one (top is None) that keeps the publish order whole."""

    job: Job
    model: LoadedModel
    top: list[tuple[int, float]] | None
    inference_s: float = 0.0


def classify(backend: Backend, model: LoadedModel, image,  # noqa: ANN001
             scratch: Scratch | None = None, k: int | None = None
             ) -> tuple[list[tuple[int, float]], float]:
    """Preprocess straight into the input tensor, invoke, return (top-k, invoke seconds)."""
    buf = backend.input_buffer()
    prepare(image, model.spec, model.lut, buf, model.resize, scratch)
    del buf  # the runtime refuses to invoke while a view of its memory is alive
    t0 = time.perf_counter()
    backend.invoke()
    elapsed = time.perf_counter() - t0
    scores = to_scores(backend.output(), model.out_scale, model.out_zero_point,
                       model.output_kind)
    return top_k(scores, k or model.top_k), elapsed


class WorkerPool:
    """The workers of one model, draining its scheduler."""

    def __init__(self, model: LoadedModel, workers: int, scheduler: Scheduler,
                 deliver: Callable[[Outcome], None], metrics: Metrics) -> None:
        self.model = model
        self._count = workers
        self.scheduler = scheduler
        self._deliver = deliver
        self._metrics = metrics
        self._backends: list[Backend] = []
        self._threads: list[threading.Thread] = []
        self._episodes = EpisodeLog(log)

    def start(self) -> None:
        self._metrics.declare_model(self.model.name, self.model.backend_key,
                                    self.model.accelerator)
        for i in range(self._count):
            backend = self.model.new_backend(self._metrics)
            backend.start()
            self._backends.append(backend)
            thread = threading.Thread(target=self._run, args=(backend,), daemon=True,
                                      name=f"worker-{self.model.name}-{i}")
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Finish every queued frame, then end the threads."""
        self.scheduler.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("%s did not finish within %.1fs", thread.name, timeout)
        self._threads.clear()
        for backend in self._backends:
            backend.close()
        self._backends.clear()

    def _run(self, backend: Backend) -> None:
        histogram = self._metrics.inference_seconds.labels(self.model.name,
                                                           self.model.backend_key)
        scratch = Scratch()  # this thread's preprocessing buffers
        while True:
            job = self.scheduler.get(timeout=0.5)
            if job is None:
                if self.scheduler.drained:
                    return
                continue
            self._metrics.frame_age_seconds.labels(job.camera).observe(
                time.monotonic() - job.frame.mono)
            top = None
            elapsed = 0.0
            if job.max_age_s and time.monotonic() - job.frame.mono > job.max_age_s:
                # Too old to be worth classifying; the skip keeps the publish order whole.
                self._metrics.frames_dropped.labels(job.camera, "stale").inc()
                self._deliver(Outcome(job, self.model, None))
                continue
            try:
                top, elapsed = classify(backend, self.model, job.frame.region(), scratch,
                                       job.top_k)
                histogram.observe(elapsed)
                self._metrics.frames_processed.labels(job.camera).inc()
                self._episodes.recovered("model %s: inference works again", self.model.name)
            except ValueError as exc:  # a frame that cannot be preprocessed
                self._metrics.frames_dropped.labels(job.camera, "bad_frame").inc()
                self._episodes.failure("camera %s: frame %d skipped: %s", job.camera,
                                       job.frame.index, exc)
            except ModelError as exc:
                self._metrics.frames_dropped.labels(job.camera, "inference_error").inc()
                self._episodes.failure("%s", exc)
            except Exception:  # noqa: BLE001 - one bad frame must not end the worker
                self._metrics.frames_dropped.labels(job.camera, "inference_error").inc()
                log.exception("camera %s: frame %d failed", job.camera, job.frame.index)
            self._deliver(Outcome(job, self.model, top, elapsed))
