"""One camera: a named capture thread feeding its model's scheduler."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator

from edged.config import CameraConfig
from edged.errors import SourceError
from edged.metrics import Metrics
from edged.ratelimit import EpisodeLog
from edged.scheduler import Scheduler
from edged.sources import Frame, Source, make_source

log = logging.getLogger(__name__)


def backoff_delays(initial: float, maximum: float, rng: random.Random):  # noqa: ANN201
    """Exponential backoff with full jitter in the upper half: initial, 2x, ... up to max."""
    delay = initial
    while True:
        yield delay * (0.5 + 0.5 * rng.random())
        delay = min(delay * 2, maximum)


class Camera:
    def __init__(self, name: str, cfg: CameraConfig, scheduler: Scheduler, metrics: Metrics,
                 tickets: Iterator[int] | None = None) -> None:
        self.name = name
        self._tickets = tickets  # publish-order numbers, kept across reloads
        self.cfg = cfg
        self._scheduler = scheduler
        self._metrics = metrics
        self._stop = threading.Event()
        self.finished = threading.Event()  # set when a finite source has ended
        self._thread: threading.Thread | None = None
        self._source: Source | None = None
        self._index = 0
        self._episodes = EpisodeLog(log)
        self.last_frame_mono = 0.0

    @property
    def live(self) -> bool:
        return self._source is not None and self._source.live

    @property
    def policy(self) -> str:
        if self.cfg.policy:
            return self.cfg.policy
        return "latest" if (self.live or self.cfg.realtime) else "every"

    def open(self) -> None:
        """Choose the source kind and open finite sources now, so a file that cannot be read
        stops the daemon before anything else starts. Live sources open in the thread."""
        self._source = make_source(self.cfg)
        if not self._source.live:
            self._source.open()
            log.info("camera %s: %s (%s, %.1f fps)", self.name, self._source.describe(),
                     self._source.key, self._source.fps)

    def start(self) -> None:
        if self._source is None:
            self.open()
        self._scheduler.add_camera(self.name, self.policy, self._tickets)
        for reason in ("replaced", "fps", "decode"):
            self._metrics.frames_dropped.labels(self.name, reason)
        self._metrics.frames_captured.labels(self.name)
        self._metrics.camera_reconnects.labels(self.name, "error")
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def use_scheduler(self, scheduler: Scheduler) -> None:
        """Feed another model's workers from the next frame on (a reload swapped the model)."""
        scheduler.add_camera(self.name, self.policy, self._tickets)
        self._scheduler = scheduler

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("camera %s: capture thread did not stop within %.1fs", self.name,
                            timeout)
            self._thread = None
        if self._source is not None:
            self._source.close()

    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                self._run_finite()
        except Exception:  # a bug must not pass silently, nor kill the daemon unseen
            log.exception("camera %s: capture failed", self.name)
        finally:
            self._metrics.camera_up.labels(self.name).set(0)
            self.finished.set()

    def _run_finite(self) -> None:
        src = self._source
        assert src is not None
        interval = 0.0
        if self.cfg.realtime and src.fps > 0:
            interval = 1.0 / src.fps
        if self.cfg.fps > 0:
            interval = max(interval, 1.0 / self.cfg.fps)
        self._metrics.camera_up.labels(self.name).set(1)
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                item = src.read()
            except SourceError as exc:
                self._metrics.frames_dropped.labels(self.name, "decode").inc()
                self._episodes.failure("camera %s: %s", self.name, exc)
                self._index += 1
                continue
            if item is None:
                log.info("camera %s: end of source after %d frames", self.name, self._index)
                return
            if interval:
                # Pace like a camera; after a stall, restart the clock instead of bursting.
                due = max(due + interval, time.monotonic() - interval)
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
            self._submit(*item)

    def _run_live(self) -> None:
        src = self._source
        assert src is not None
        delays = backoff_delays(self.cfg.reconnect.initial_s, self.cfg.reconnect.max_s,
                                random.Random())
        min_gap = 1.0 / self.cfg.fps if self.cfg.fps > 0 else 0.0
        last_accepted = -1e9
        while not self._stop.is_set():
            try:
                src.open()
                log.info("camera %s: %s up (%.1f fps)", self.name, src.describe(), src.fps)
                self._metrics.camera_up.labels(self.name).set(1)
                delays = backoff_delays(self.cfg.reconnect.initial_s, self.cfg.reconnect.max_s,
                                        random.Random())
                while not self._stop.is_set():
                    image, name = src.read()  # type: ignore[misc]
                    now = time.monotonic()
                    if now - last_accepted < min_gap:
                        self._index += 1
                        self._metrics.frames_captured.labels(self.name).inc()
                        self._metrics.frames_dropped.labels(self.name, "fps").inc()
                        continue
                    last_accepted = now
                    self._submit(image, name)
            except SourceError as exc:
                self._metrics.camera_up.labels(self.name).set(0)
                self._metrics.source_errors.labels(self.name).inc()
                self._metrics.camera_reconnects.labels(self.name, "error").inc()
                src.close()
                delay = next(delays)
                self._episodes.failure("camera %s: %s; retrying in %.1fs", self.name, exc, delay)
                self._stop.wait(delay)

    def _submit(self, image, name: str | None) -> None:  # noqa: ANN001
        now = time.monotonic()
        frame = Frame(image=image, index=self._index, ts=time.time(), mono=now, name=name)
        self._index += 1
        self.last_frame_mono = now
        self._metrics.frames_captured.labels(self.name).inc()
        replaced = self._scheduler.put(self.name, frame, self._stop.is_set)
        if replaced is not None and replaced is not frame:
            self._metrics.frames_dropped.labels(self.name, "replaced").inc()
