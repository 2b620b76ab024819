"""A live camera stuck for good inside one read (a hung USB camera's driver: the one part here
that cannot be real): edged abandons that capture thread and reopens the source, at most
MAX_ABANDONED times while those threads stay stuck; then the watchdog decides. No timing is
relied on: `now` is passed in, and every wait is on an event with a generous bound."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

import edged.capture.camera as camera_module
from edged.capture.camera import MAX_ABANDONED, Camera
from edged.capture.sources.base import Source
from edged.config import CameraConfig
from edged.inference.scheduler import Scheduler
from edged.service.metrics import Metrics

WAIT = 10.0


class StuckUsbCamera(Source):
    """A V4L2 device whose driver never returns from a read (until `release`)."""

    live = True
    made: list[StuckUsbCamera] = []

    def __init__(self, cfg: CameraConfig) -> None:
        super().__init__(cfg)
        self.reading = threading.Event()
        self.release = threading.Event()
        self.closed = threading.Event()
        StuckUsbCamera.made.append(self)

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return False

    def open(self) -> None:
        self.closed.clear()

    def read(self):  # noqa: ANN201
        self.reading.set()
        assert self.release.wait(60), "never released"
        return np.zeros((4, 4, 3), np.uint8), None

    def close(self) -> None:
        self.closed.set()


@pytest.fixture
def camera(monkeypatch):
    StuckUsbCamera.made = []
    monkeypatch.setattr(camera_module, "make_source", StuckUsbCamera)
    metrics = Metrics(CollectorRegistry())
    cam = Camera("door", CameraConfig(source="/dev/video7", timeout_s=2.0), Scheduler(2),
                 metrics)
    cam.start()
    yield cam, metrics
    cam.stop(timeout=0.2)
    for src in StuckUsbCamera.made:
        src.release.set()


def value(metrics: Metrics, kind: str) -> float:
    return metrics.registry.get_sample_value("edged_source_failures_total",
                                             {"camera": "door", "kind": kind})


def test_a_stuck_read_is_abandoned_and_the_source_reopened_then_left_to_the_watchdog(
        camera, caplog):
    cam, metrics = camera
    made = StuckUsbCamera.made
    assert made[0].reading.wait(WAIT)
    later = cam.alive_mono + cam.cfg.timeout_s + 1.0
    # Not yet past timeout_s: nothing to do.
    assert not cam.recover_if_wedged(now=cam.alive_mono + cam.cfg.timeout_s - 0.5)
    for n in range(1, MAX_ABANDONED + 1):
        assert cam.recover_if_wedged(now=later + n * 10)
        assert len(made) == n + 1 and made[n].reading.wait(WAIT)  # a new thread reads
    assert value(metrics, "wedged") == MAX_ABANDONED
    assert "[wedged]; abandoning that thread and reopening the source" in caplog.text
    # Both earlier threads still stuck: no third one; the watchdog's case now.
    assert not cam.recover_if_wedged(now=later + 100)
    assert not cam.recover_if_wedged(now=later + 200)
    assert len(made) == 1 + MAX_ABANDONED
    assert caplog.text.count("not reopening again (the watchdog decides)") == 1
    # The first driver returns at last: its thread leaves without touching the camera (no
    # frame submitted, not "finished") and closes its own source.
    made[0].release.set()
    assert made[0].closed.wait(WAIT)
    assert not cam.finished.is_set() and cam.last_frame is None
    # One stuck thread fewer: the camera can be reopened once more.
    assert cam.recover_if_wedged(now=later + 300)
    assert len(made) == 2 + MAX_ABANDONED and made[-1].reading.wait(WAIT)


def test_a_thread_that_shows_life_is_not_abandoned(camera):
    cam, _ = camera
    assert StuckUsbCamera.made[0].reading.wait(WAIT)
    cam.alive_mono = later = cam.alive_mono + 50.0  # e.g. sleeping through a long backoff
    assert not cam.recover_if_wedged(now=later + cam.cfg.timeout_s - 0.1)
    assert len(StuckUsbCamera.made) == 1


def test_a_stopped_camera_is_not_reopened(camera):
    cam, _ = camera
    assert StuckUsbCamera.made[0].reading.wait(WAIT)
    cam.request_stop(0.1)
    assert not cam.recover_if_wedged(now=cam.alive_mono + 100)
    assert len(StuckUsbCamera.made) == 1
