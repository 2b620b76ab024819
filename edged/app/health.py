"""Is the pipeline moving? Per-camera progress, and one structured check (`Health.check`)
that readiness (/readyz, edged_ready), the status line (`systemctl status`) and the watchdog
only format: they can never disagree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class CameraProgress:
    started: float  # monotonic time the camera (re)started: the grace baseline
    processed: float = 0.0  # monotonic time a worker last finished one of its frames
    count: int = 0  # frames finished by workers (classified or skipped)


def camera_stall(now: float, progress: CameraProgress, alive: float, captured: float,
                 timeout: float) -> str | None:
    """Why a camera's pipeline is stuck (wedged), or None while it moves.

    `alive` is when the capture thread last showed life (a frame, a failed read or open, or
    the end of the backoff it is sleeping through): a camera that is down and being retried
    is not wedged, so systemd must not restart the daemon for it (no restart storms). A
    capture thread stuck in one call for longer than `timeout` is. And when a frame is waiting
    (captured after the last one finished), a worker must have finished one within `timeout`.
    Both are measured from the (re)start at the latest, which is the grace period.
    """
    last_alive = max(alive, progress.started)
    if now - last_alive > timeout:
        return f"capture stuck for {now - last_alive:.1f}s (timeout {timeout:g}s)"
    last_done = max(progress.processed, progress.started)
    if captured > last_done and now - last_done > timeout:
        return f"no frame processed for {now - last_done:.1f}s (timeout {timeout:g}s)"
    return None


class Progress:
    """Workers report finished frames here; the daemon reads it for health and status."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._cameras: dict[str, CameraProgress] = {}

    def started(self, camera: str) -> None:
        with self._lock:
            old = self._cameras.get(camera)
            self._cameras[camera] = CameraProgress(self.clock(), count=old.count if old else 0)

    def forget(self, camera: str) -> None:
        with self._lock:
            self._cameras.pop(camera, None)

    def processed(self, camera: str) -> None:
        now = self.clock()
        with self._lock:
            entry = self._cameras.get(camera)
            if entry is not None:
                entry.processed = now
                entry.count += 1

    def get(self, camera: str) -> CameraProgress | None:
        with self._lock:
            entry = self._cameras.get(camera)
            return CameraProgress(entry.started, entry.processed, entry.count) if entry else None

    def total(self) -> int:
        with self._lock:
            return sum(entry.count for entry in self._cameras.values())


class Rate:
    """Frames per second between successive calls (for the status line)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last: tuple[float, int] | None = None
        self.value = 0.0

    def update(self, count: int) -> float:
        now = self._clock()
        if self._last is not None and now > self._last[0]:
            self.value = max(0, count - self._last[1]) / (now - self._last[0])
        self._last = (now, count)
        return self.value


def status_line(cameras_up: int, cameras: int, fps: float, broker: str, outbox: int) -> str:
    """One line for `systemctl status` (sd_notify STATUS=)."""
    return (f"{cameras_up}/{cameras} cameras up, {fps:.1f} fps, broker {broker}, "
            f"outbox {outbox}")


def status_text(report: HealthReport, fps: float) -> str:
    return status_line(report.cameras_up, len(report.cameras), fps,
                       "connected" if report.mqtt_connected else "disconnected", report.outbox)


@dataclass(frozen=True)
class Problem:
    """One thing that is not right. `subject` is e.g. "camera door", "mqtt", "model x";
    `wedged` problems (a stuck pipeline) make the watchdog withhold its ping; problems that
    do not `block` leave edged ready and are only shown as degraded (a camera that fell
    behind its stream and jumped back to live)."""

    subject: str
    kind: str  # not_started, not_loaded, stalled, stale, ended, not_connected, lagging, ...
    detail: str
    wedged: bool = False
    blocks: bool = True

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass(frozen=True)
class HealthReport:
    problems: tuple[Problem, ...]
    cameras: tuple[str, ...]
    models: tuple[str, ...]
    mqtt_connected: bool
    outbox: int = 0
    cameras_up: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not any(p.blocks for p in self.problems)

    @property
    def wedged(self) -> list[Problem]:
        return [p for p in self.problems if p.wedged]

    @property
    def degraded(self) -> list[Problem]:
        return [p for p in self.problems if not p.blocks]

    def readiness(self) -> dict[str, Any]:
        """The /readyz body: what makes edged not ready under `problems`, what only
        degrades it under `degraded`."""
        return {"ready": self.ready, "problems": [str(p) for p in self.problems if p.blocks],
                "degraded": [str(p) for p in self.degraded],
                "models": list(self.models), "cameras": list(self.cameras),
                "mqtt_connected": self.mqtt_connected, **self.extra}


class CameraView(Protocol):  # what health reads of a camera
    name: str
    alive_mono: float
    last_frame_mono: float

    @property
    def finished(self) -> threading.Event: ...

    @property
    def cfg(self) -> Any: ...  # noqa: ANN401 - CameraConfig: timeout_s, model

    def lagging(self) -> str | None: ...  # why it counts as behind its stream, or None


Check = Callable[[], Iterable[Problem]]


class Health:
    """Checks the pipeline; constructed with what it reads, so tests can pass their own."""

    def __init__(self, cameras: Callable[[], Iterable[CameraView]], progress: Progress,
                 models: Callable[[], Iterable[str]], mqtt: Callable[[], tuple[bool, str]],
                 outbox: Callable[[], int] = lambda: 0, checks: Iterable[Check] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._cameras = cameras
        self._progress = progress
        self._models = models  # the models with running workers
        self._mqtt = mqtt  # (connected, "host:port")
        self._outbox = outbox
        self._checks = list(checks)  # further checks (e.g. the outbox, lag), each -> problems
        self._clock = clock

    def check(self, started: bool) -> HealthReport:
        now = self._clock()
        cameras = list(self._cameras())
        models = sorted(self._models())
        problems: list[Problem] = []
        if not started:
            problems.append(Problem("edged", "not_started", "models and cameras not started"))
        for name in sorted({c.cfg.model for c in cameras} - set(models)):
            problems.append(Problem(f"model {name}", "not_loaded", "not loaded"))
        down = set()
        for camera in cameras:
            problem = self._camera(now, camera)
            if problem is not None:
                problems.append(problem)
                down.add(camera.name)
            elif why := camera.lagging():
                problems.append(Problem(f"camera {camera.name}", "lagging", why, blocks=False))
        connected, where = self._mqtt()
        if not connected:
            problems.append(Problem("mqtt", "not_connected", f"not connected to {where}"))
        for check in self._checks:
            problems += check()
        return HealthReport(tuple(problems), tuple(sorted(c.name for c in cameras)),
                            tuple(models), connected, self._outbox(),
                            sum(1 for c in cameras if c.name not in down))

    def _camera(self, now: float, camera: CameraView) -> Problem | None:
        subject = f"camera {camera.name}"
        if camera.finished.is_set():
            return Problem(subject, "ended", "source ended")
        progress = self._progress.get(camera.name)
        if progress is None:
            return None
        timeout = camera.cfg.timeout_s
        why = camera_stall(now, progress, camera.alive_mono, camera.last_frame_mono, timeout)
        if why:
            return Problem(subject, "stalled", why, wedged=True)
        # No fresh frame within the timeout: down (being retried), or not up yet.
        since = camera.last_frame_mono or progress.started
        if now - since > timeout or not camera.last_frame_mono:
            what = "no frame for" if camera.last_frame_mono or now - since > timeout \
                else "no frame yet after"
            return Problem(subject, "stale", f"{what} {now - since:.1f}s")
        return None
