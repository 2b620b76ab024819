"""Smoothing math (pure functions) and the state it drives."""

from __future__ import annotations

import pytest

from edged.config import SmoothingConfig, StateTopicConfig
from edged.service.metrics import Metrics
from edged.mqtt.extensions.smoothing import (
    UNKNOWN,
    Smoother,
    ema_alpha,
    ema_state,
    ema_update,
    majority_state,
    vote,
)
from edged.app.events import BrokerConnected, Events, ResultPublished, StateChanged
from edged.frame import Frame
from edged.mqtt.extensions.state import StateTracker
from edged.mqtt.contract import Topics
from tests.helpers.schemas import validate


def test_vote_is_unknown_below_min_score():
    assert vote("ok", 0.8, 0.5) == "ok"
    assert vote("ok", 0.49, 0.5) == UNKNOWN


def test_majority_needs_k_of_n_and_keeps_the_state_otherwise():
    assert majority_state(UNKNOWN, ["a", "b", "a"], 2) == "a"
    assert majority_state("a", ["b", "a", "b"], 3) == "a"  # b has only 2 of 3
    assert majority_state("a", ["b", "b", "b"], 3) == "b"
    assert majority_state("a", [], 1) == "a"


def test_majority_smoother_ignores_a_one_frame_flicker():
    sm = Smoother("majority", window=5, min_votes=3, min_score=0.5)
    states = [sm.update(lab, 0.9) for lab in "aaaabaabbbb"]
    # The single b (index 4) changes nothing; b wins once it has 3 of the last 5 (index 8).
    assert states == [UNKNOWN, UNKNOWN, "a", "a", "a", "a", "a", "a", "b", "b", "b"]
    assert sm.update("b", 0.1) == "b"  # a low score votes unknown; one vote is not enough


def test_none_follows_every_frame_and_low_scores_are_unknown():
    sm = Smoother("none", min_score=0.6)
    assert [sm.update(lab, s) for lab, s in [("a", 0.9), ("b", 0.7), ("b", 0.2)]] == \
        ["a", "b", UNKNOWN]


def test_ema_math_and_threshold():
    assert ema_alpha(3) == pytest.approx(0.5)
    ema = ema_update({}, {"a": 1.0}, 0.5)
    assert ema == {"a": 0.5}
    ema = ema_update(ema, {"b": 1.0}, 0.5)
    assert ema == {"a": 0.25, "b": 0.5}
    assert ema_state(ema, 0.5) == ("b", 0.5)
    assert ema_state(ema, 0.6) == (UNKNOWN, 0.5)
    sm = Smoother("ema", window=3, min_score=0.6)
    assert [sm.update("a", 0.9, {"a": 0.9}) for _ in range(3)] == [UNKNOWN, "a", "a"]


def test_smoothing_config_rejects_more_votes_than_window():
    with pytest.raises(ValueError, match="min_votes must be <= window"):
        SmoothingConfig(window=2, min_votes=3)


class _Link:
    def __init__(self) -> None:
        self.topics = Topics("edged", "n")
        self.sent = []

    def publish_now(self, msg):  # noqa: ANN001, ANN201
        self.sent.append(msg)
        return True


class _Cameras:
    def __init__(self, **smoothing: SmoothingConfig) -> None:
        self.by_name = smoothing

    def names(self) -> list[str]:
        return list(self.by_name)

    def smoothing(self, camera: str) -> SmoothingConfig | None:
        return self.by_name.get(camera)


def _result(events: Events, camera: str, seq: int, label: str, frame: Frame) -> None:
    events.emit(ResultPublished(camera, frame, {
        "label": label, "score": 0.9, "ts": 50.0 + seq, "seq": seq,
        "top_k": [{"label": label, "score": 0.9}]}))


def test_state_tracker_publishes_only_on_change_with_since():
    import json

    import numpy as np

    link, events = _Link(), Events()
    clock = iter(range(1000, 2000)).__next__
    cameras = _Cameras(cam=SmoothingConfig(window=3, min_votes=2))
    tracker = StateTracker(link, events, StateTopicConfig(), cameras, Metrics(),
                           clock=lambda: float(clock()))
    changes: list[StateChanged] = []
    events.subscribe(StateChanged, changes.append)
    frames = [Frame(np.zeros((2, 2, 3), np.uint8), i, 0.0, 0.0) for i in range(4)]
    for seq, lab in enumerate("aaab"):
        _result(events, "cam", seq, lab, frames[seq])
    assert link.sent == []  # not started: it has not joined the events
    tracker.start()
    for seq, lab in enumerate("aaab"):
        _result(events, "cam", seq, lab, frames[seq])
    assert len(link.sent) == 1  # unknown -> a once; the single b changes nothing
    msg = link.sent[0]
    payload = json.loads(msg.payload)
    assert msg.topic == "edged/n/cam/state" and msg.retain and msg.qos == 1
    assert payload["state"] == "a" and payload["since"] == 51.0 and payload["seq"] == 1
    validate("state", payload)
    # The change event carries the frame that changed the state (snapshots use it).
    assert [(c.camera, c.state, c.frame) for c in changes] == [("cam", "a", frames[1])]
    events.emit(BrokerConnected())
    assert len(link.sent) == 2  # re-published on connect
    # A camera added by a reload is tracked from its first result; a changed smoothing
    # starts afresh, an unchanged one keeps its state.
    cameras.by_name["door"] = SmoothingConfig(method="none")
    _result(events, "door", 0, "b", frames[0])
    assert json.loads(link.sent[-1].payload)["camera"] == "door"
    assert tracker.payload("cam")["state"] == "a"
    cameras.by_name["cam"] = SmoothingConfig(method="none")
    assert tracker.payload("cam")["state"] == UNKNOWN
    tracker.stop()
    before = len(link.sent)
    _result(events, "door", 1, "c", frames[1])
    events.emit(BrokerConnected())
    assert len(link.sent) == before  # left the events


def test_command_request_schema():
    import jsonschema

    validate("command-request", {})
    validate("command-request", {"id": "x"})
    with pytest.raises(jsonschema.ValidationError):
        validate("command-request", {"id": "x", "other": 1})
