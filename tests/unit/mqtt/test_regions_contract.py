"""Regions in the MQTT contract: topics, payloads (against the schemas), the seq key, one
Home Assistant sensor per region, and a state per region with its own smoothing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from edged.app.cameras import CameraSet
from edged.app.events import BrokerConnected, Events, ResultPublished, StateChanged
from edged.config import CameraConfig, StateTopicConfig
from edged.frame import Frame
from edged.mqtt.contract import (
    Topics,
    discovery_message,
    result_message,
    result_payload,
    snapshot_message,
)
from edged.mqtt.extensions.state import StateTracker
from edged.service.metrics import Metrics
from tests.helpers.schemas import validate

T = Topics("edged", "n")


def test_topics_payloads_and_the_seq_key():
    assert T.result("cam") == "edged/n/cam/result"  # unchanged without a region
    assert T.result("cam", "s1") == "edged/n/cam/s1/result"
    assert T.state("cam", "s1") == "edged/n/cam/s1/state"
    assert T.snapshot("cam", "s1") == "edged/n/cam/s1/snapshot"
    image = np.zeros((4, 4, 3), np.uint8)
    plain = result_payload("n", "cam", 3, Frame(image, 9, 1.0, 0.0), "m", ["a", "b"],
                           [(1, 0.9)], 0.001, 0.002)
    assert "region" not in plain
    validate("result", plain)
    frame = Frame(image, 9, 1.0, 0.0, box=(0, 0, 2, 2), region_name="s1")
    payload = result_payload("n", "cam", 3, frame, "m", ["a", "b"], [(1, 0.9)], 0.001, 0.002)
    assert payload["region"] == "s1" and list(payload)[:4] == ["node_id", "camera", "region",
                                                               "seq"]
    validate("result", payload)
    msg = result_message(T, payload, 1, False, None, None)
    # The outbox keys seq by this: each region's seq is its own and persists.
    assert (msg.topic, msg.camera, msg.seq, msg.durable) == \
        ("edged/n/cam/s1/result", "cam/s1", 3, True)
    assert result_message(T, plain, 1, False, None, None).camera == "cam"
    snap = snapshot_message(T, "cam", b"jpeg", 1, "a", payload, 9, "s1")
    assert snap.topic == "edged/n/cam/s1/snapshot" and ("region", "s1") in snap.user_properties


def test_one_home_assistant_sensor_per_region():
    msg = discovery_message(T, "homeassistant", "cam", region="s1")
    assert msg.topic == "homeassistant/sensor/n/cam__s1/config" and msg.retain
    payload = json.loads(msg.payload)
    validate("ha-discovery", payload)
    assert payload["state_topic"] == "edged/n/cam/s1/state"
    assert payload["unique_id"] == "edged_n_cam__s1" and payload["name"] == "cam s1"
    # Without a region: exactly as before.
    assert discovery_message(T, "homeassistant", "cam").topic == \
        "homeassistant/sensor/n/cam/config"


class _Link:
    topics = T

    def __init__(self) -> None:
        self.sent = []

    def publish_now(self, msg) -> bool:  # noqa: ANN001
        self.sent.append(msg)
        return True


def test_state_per_region_with_its_own_smoothing():
    cfg = CameraConfig(source="a.mp4", smoothing={"window": 3, "min_votes": 3}, regions={
        "slow": {"box": [0, 0, 2, 2]},
        "fast": {"box": [2, 0, 2, 2], "smoothing": {"method": "none"}}})
    cameras = CameraSet()
    cameras.add(SimpleNamespace(name="cam", cfg=cfg, last_frame=None), None)  # type: ignore
    assert cameras.subjects() == ["cam/slow", "cam/fast"]
    link, events = _Link(), Events()
    tracker = StateTracker(link, events, StateTopicConfig(), cameras, Metrics())
    changes: list[StateChanged] = []
    events.subscribe(StateChanged, changes.append)
    tracker.start()
    image = np.zeros((2, 4, 3), np.uint8)
    for seq in range(2):
        for region in ("slow", "fast"):
            events.emit(ResultPublished("cam", Frame(image, seq, 0.0, 0.0,
                                                     region_name=region),
                                        {"label": "x", "score": 0.9, "seq": seq, "ts": 5.0,
                                         "top_k": [{"label": "x", "score": 0.9}]}, region))
    # `fast` (method none) changed at once; `slow` needs 3 votes, it has 2.
    assert [(c.subject, c.state) for c in changes] == [("cam/fast", "x")]
    assert [m.topic for m in link.sent] == ["edged/n/cam/fast/state"]
    fast = json.loads(link.sent[0].payload)
    validate("state", fast)
    assert (fast["region"], fast["state"], fast["method"], fast["seq"]) == ("fast", "x",
                                                                           "none", 0)
    assert tracker.payload("cam/slow")["state"] == "unknown"
    assert tracker.payload("cam") is None  # a camera with regions has no state of its own
    events.emit(BrokerConnected())  # every region's state again, retained
    assert sorted(m.topic for m in link.sent[1:]) == ["edged/n/cam/fast/state",
                                                      "edged/n/cam/slow/state"]
    tracker.stop()
