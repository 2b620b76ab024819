"""Is the pipeline moving? Per-camera progress, the checks behind the watchdog and /readyz,
and the one-line status for `systemctl status`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


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
