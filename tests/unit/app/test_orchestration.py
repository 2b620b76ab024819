"""The orchestrator's parts on their own: lifecycle tiers, events, health, and build with a
null sink (constructs, starts nothing)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from edged.app.build import Builder
from edged.app.cameras import CameraSet
from edged.app.events import Events, ResultPublished, StateChanged
from edged.app.health import Health, Progress
from edged.app.lifecycle import TIERS, Lifecycle
from edged.config import load_config
from edged.mqtt.link import MqttLink
from edged.service.metrics import Metrics
from edged.sinks.null import NullSink
from tests.conftest import demo_config, write_config


class Part:
    def __init__(self, name: str, log: list[str], fail: bool = False) -> None:
        self.name, self.log, self.fail = name, log, fail

    def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot start")
        self.log.append(f"+{self.name}")

    def stop(self) -> None:
        self.log.append(f"-{self.name}")


def test_lifecycle_starts_in_tier_order_and_stops_in_reverse():
    log: list[str] = []
    life = Lifecycle()
    life.start({"capture": [Part("cam1", log), Part("cam2", log)], "sink": [Part("mqtt", log)],
                "listener": [Part("http", log)], "workers": [Part("pool", log)]})
    assert log == ["+http", "+mqtt", "+pool", "+cam1", "+cam2"]
    log.clear()
    life.stop()
    assert log == ["-cam2", "-cam1", "-pool", "-mqtt", "-http"]
    log.clear()
    life.stop()
    assert log == []  # stopped parts are forgotten


def test_lifecycle_rolls_back_what_started_when_a_part_fails():
    log: list[str] = []
    life = Lifecycle()
    with pytest.raises(RuntimeError, match="pool cannot start"):
        life.start({"listener": [Part("http", log)], "sink": [Part("mqtt", log)],
                    "workers": [Part("pool", log, fail=True)], "capture": [Part("cam", log)]})
    assert log == ["+http", "+mqtt", "-mqtt", "-http"]
    with pytest.raises(ValueError, match="unknown tiers"):
        Lifecycle().start({"nope": []})


def test_lifecycle_replace_add_and_remove_one_part():
    log: list[str] = []
    life = Lifecycle()
    old = Part("mqtt-a", log)
    life.start({"sink": [old], "capture": [Part("cam", log)]})
    new = Part("mqtt-b", log)
    life.replace(old, new)
    assert log[-2:] == ["-mqtt-a", "+mqtt-b"]  # the old client goes first (same client id)
    extra = Part("cam2", log)
    life.add("capture", extra)
    life.remove(extra)
    assert log[-2:] == ["+cam2", "-cam2"]
    assert life.parts("sink") == [new]
    with pytest.raises(ValueError):
        life.replace(old, new)
    assert TIERS.index("sink") < TIERS.index("extensions") < TIERS.index("publisher")


class SlowStopper:
    """Stops 0.3 s after it was asked to: like a capture thread finishing its read."""

    def __init__(self) -> None:
        self.asked: float | None = None

    def start(self) -> None:
        pass

    def request_stop(self) -> None:
        self.asked = time.monotonic()

    def stop(self) -> None:
        assert self.asked is not None
        time.sleep(max(0.0, self.asked + 0.3 - time.monotonic()))


def test_stopping_many_parts_takes_as_long_as_one():
    life = Lifecycle()
    parts = [SlowStopper() for _ in range(10)]
    life.start({"capture": parts})
    t0 = time.monotonic()
    life.stop()
    assert time.monotonic() - t0 < 1.5  # 10 x 0.3 s in turn would be 3 s


def test_events_isolate_a_failing_handler_and_unsubscribe():
    events = Events()
    got: list[str] = []

    def bad(_: object) -> None:
        raise RuntimeError("boom")

    events.subscribe(ResultPublished, bad)
    events.subscribe(ResultPublished, lambda e: got.append(e.camera))
    events.emit(ResultPublished("a", None, {}))  # type: ignore[arg-type]
    assert got == ["a"]
    events.unsubscribe(ResultPublished, bad)
    assert events.count(ResultPublished) == 1 and events.count(StateChanged) == 0


def _camera(name: str, **kw: object) -> SimpleNamespace:
    cfg = SimpleNamespace(timeout_s=2.0, model="m")
    base = dict(name=name, alive_mono=0.0, last_frame_mono=0.0, finished=threading.Event(),
                cfg=cfg, lagging=lambda: None)
    base.update(kw)
    return SimpleNamespace(**base)


def test_health_is_one_structured_check():
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    cams = [_camera("up"), _camera("down"), _camera("wedged"), _camera("ended")]
    for c in cams:
        progress.started(c.name)
    now[0] = 112.0
    cams[0].last_frame_mono = cams[0].alive_mono = 111.5
    progress.processed("up")
    cams[1].alive_mono = 115.0  # sleeping through a backoff: alive, no frame
    cams[2].alive_mono = cams[2].last_frame_mono = 101.0  # stuck in a read since
    cams[3].finished.set()
    connected = [True]
    health = Health(lambda: cams, progress, lambda: ["m"],
                    lambda: (connected[0], "127.0.0.1:1883"), lambda: 3,
                    clock=lambda: now[0])
    report = health.check(started=True)
    kinds = {p.subject: p.kind for p in report.problems}
    assert kinds == {"camera down": "stale", "camera wedged": "stalled",
                     "camera ended": "ended"}
    assert [str(p) for p in report.wedged] == [
        "camera wedged: capture stuck for 11.0s (timeout 2s)"]
    assert report.cameras_up == 1 and report.outbox == 3 and not report.ready
    body = report.readiness()
    assert body["ready"] is False and body["mqtt_connected"] is True
    assert "camera down: no frame for 12.0s" in body["problems"]
    connected[0] = False
    assert "mqtt: not connected to 127.0.0.1:1883" in [
        str(p) for p in health.check(started=True).problems]


def test_a_lagging_camera_is_degraded_but_ready():
    """A camera that fell behind its stream and jumped to live is shown, not failed."""
    now = [100.0]
    progress = Progress(clock=lambda: now[0])
    cam = _camera("slow", lagging=lambda: "lagging: was 3.0s behind the stream")
    progress.started("slow")
    now[0] = 101.0
    cam.last_frame_mono = cam.alive_mono = 100.9
    health = Health(lambda: [cam], progress, lambda: ["m"], lambda: (True, "b:1"),
                    clock=lambda: now[0])
    report = health.check(started=True)
    assert report.ready and not report.wedged
    assert [p.kind for p in report.degraded] == ["lagging"]
    body = report.readiness()
    assert body["ready"] is True and body["problems"] == []
    assert body["degraded"] == ["camera slow: lagging: was 3.0s behind the stream"]


def test_build_with_a_null_sink_constructs_and_starts_nothing(tmp_path):
    cfg = demo_config(1)  # no broker at all: nothing may try to connect
    cfg["web"] = {"enabled": True}
    cfg["mqtt"]["commands"] = {"enabled": True}
    cfg["mqtt"]["homeassistant"] = {"enabled": True}
    config = load_config(write_config(tmp_path / "c.yaml", cfg))
    threads = {t.name for t in threading.enumerate()}
    sink = NullSink()
    builder = Builder(Metrics(CollectorRegistry()), Events(), CameraSet(), Progress(),
                      lambda: {}, sink_factory=lambda *_: sink)
    pipeline, link = builder.pipeline(config, lambda s, t: MqttLink(s, t))
    assert link.sink is sink and pipeline.sink.sink is sink
    assert [c.name for c in pipeline.cameras] == ["conveyor"]
    assert sorted(pipeline.pools) == ["default"]
    kinds = sorted(type(p).__name__ for p in pipeline.extensions)
    assert kinds == ["CommandHandler", "HomeAssistant", "LiveView", "Snapshotter",
                     "StateTracker"]
    assert pipeline.listener is not None and pipeline.listener.port == 0  # not listening
    assert {t.name for t in threading.enumerate()} == threads  # no thread started
    tiers = pipeline.tiers()
    assert list(tiers) == list(TIERS)
    assert tiers["capture"] == pipeline.cameras

