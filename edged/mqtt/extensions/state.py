"""Each camera's retained state: the smoothed label, published on change and on reconnect.
A camera with regions has one state per region instead (keyed by subject, `camera/region`,
with the region's smoothing override).

An extension: it joins "result published" (smooths, and on a change publishes the state and
emits "state changed") and "broker connected" (re-publishes every state, retained).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from edged.app.events import (BrokerConnected, Events, HeartbeatDue, ResultPublished,
                              StateChanged)
from edged.config import SmoothingConfig, StateTopicConfig
from edged.frame import split_subject
from edged.mqtt.contract import Message, Topics, state_message, state_payload
from edged.mqtt.extensions.smoothing import UNKNOWN, Smoother
from edged.service.metrics import Metrics


class Link(Protocol):
    topics: Topics

    def publish_now(self, msg: Message) -> bool: ...


class SmoothingSource(Protocol):  # the camera set
    def names(self) -> list[str]: ...

    def smoothing(self, camera: str) -> SmoothingConfig | None: ...


def _smoother(s: SmoothingConfig) -> Smoother:
    return Smoother(s.method, s.window, s.min_votes, s.min_score)


class StateTracker:
    """Fed on the publisher thread; read by the sender and command threads."""

    def __init__(self, link: Link, events: Events, cfg: StateTopicConfig,
                 cameras: SmoothingSource, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._link = link
        self._events = events
        self._cfg = cfg
        self._cameras = cameras  # each camera's smoothing settings, as configured now
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._smoothers: dict[str, tuple[SmoothingConfig, Smoother]] = {}
        self._since: dict[str, float] = {}
        self._seq: dict[str, int | None] = {}

    def start(self) -> None:
        self._events.subscribe(ResultPublished, self._on_result)
        self._events.subscribe(BrokerConnected, self._on_connected)
        self._events.subscribe(HeartbeatDue, self._on_connected)  # feeds expire_after

    def stop(self) -> None:
        self._events.unsubscribe(ResultPublished, self._on_result)
        self._events.unsubscribe(BrokerConnected, self._on_connected)
        self._events.unsubscribe(HeartbeatDue, self._on_connected)

    def _tracked(self, camera: str) -> Smoother | None:
        """The camera's smoother; a new one for a new camera or changed smoothing (a reload),
        while a camera whose smoothing did not change keeps its state. Lock held."""
        settings = self._cameras.smoothing(camera)
        if settings is None:
            return None
        entry = self._smoothers.get(camera)
        if entry is None or entry[0] != settings:
            entry = self._smoothers[camera] = (settings, _smoother(settings))
            self._since[camera] = self._clock()
            self._seq[camera] = None
        return entry[1]

    def payload(self, camera: str) -> dict | None:
        """The camera's current state (None for a camera edged does not have)."""
        with self._lock:
            sm = self._tracked(camera)
            if sm is None:
                return None
            name, region = split_subject(camera)
            return state_payload(self._link.topics.node_id, name, sm.state, sm.score,
                                 self._since[camera], self._seq[camera], sm.method,
                                 self._clock(), region)

    def _on_result(self, event: ResultPublished) -> None:
        result = event.result
        scores = {t["label"]: t["score"] for t in result.get("top_k", [])}
        key = event.subject
        with self._lock:
            sm = self._tracked(key)
            if sm is None:
                return
            before = sm.state
            after = sm.update(result["label"], result["score"], scores)
            changed = after != before
            if changed:
                self._since[key] = result.get("ts", self._clock())
                self._seq[key] = result.get("seq")
        if changed:
            self._metrics.state_changes.labels(event.camera).inc()
            self.publish(key)
            self._events.emit(StateChanged(event.camera, after, result, event.frame,
                                           event.region))

    def publish(self, camera: str) -> bool:
        payload = self.payload(camera)
        if payload is None:
            return False
        return self._link.publish_now(state_message(self._link.topics, payload, self._cfg.qos,
                                                    self._cfg.retain))

    def _on_connected(self, _: BrokerConnected | HeartbeatDue) -> None:
        """On every (re)connect and heartbeat: every camera's current state, retained."""
        for camera in self.cameras:
            self.publish(camera)

    @property
    def cameras(self) -> list[str]:
        """The subjects with a state: every camera of the pipeline (or each region of a
        camera with regions), as it is now."""
        subjects = getattr(self._cameras, "subjects", self._cameras.names)
        return [c for c in subjects() if self._cameras.smoothing(c) is not None]


__all__ = ["UNKNOWN", "StateTracker"]
