"""Each camera's retained state: the smoothed label, published on change and on reconnect."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Protocol

from edged.config import SmoothingConfig, StateTopicConfig
from edged.service.metrics import Metrics
from edged.mqtt.extensions.smoothing import UNKNOWN, Smoother
from edged.mqtt.topics import Topics


class StateSink(Protocol):
    def publish_now(self, topic: str, payload: bytes, qos: int, retain: bool,
                    topic_class: str) -> bool: ...


class StateTracker:
    """Fed by the publisher thread (`observe`); read by the sender and command threads."""

    def __init__(self, sink: StateSink, topics: Topics, cfg: StateTopicConfig,
                 smoothing: dict[str, SmoothingConfig], metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        self._sink = sink
        self._topics = topics
        self._cfg = cfg
        self._metrics = metrics
        self._clock = clock
        self._lock = threading.Lock()
        self._smoothers = {cam: Smoother(s.method, s.window, s.min_votes, s.min_score)
                           for cam, s in smoothing.items()}
        start = clock()
        self._since = {cam: start for cam in smoothing}
        self._seq: dict[str, int | None] = {cam: None for cam in smoothing}
        # Called with (camera, new state, the result that changed it) on the publisher
        # thread after each change; must be quick (e.g. snapshots hand off to their thread).
        self.change_listeners: list[Callable[[str, str, dict], None]] = []

    def use_sink(self, sink: StateSink, topics: Topics) -> None:
        """Publish through another sink from now on (an MQTT reload)."""
        self._sink, self._topics = sink, topics

    def add_camera(self, camera: str, smoothing: SmoothingConfig) -> None:
        """Track a camera added by a reload (an existing one keeps its state)."""
        with self._lock:
            if camera not in self._smoothers:
                s = smoothing
                self._smoothers[camera] = Smoother(s.method, s.window, s.min_votes, s.min_score)
                self._since[camera] = self._clock()
                self._seq[camera] = None

    def payload(self, camera: str) -> dict:
        with self._lock:
            sm = self._smoothers[camera]
            return {"node_id": self._topics.node_id, "camera": camera, "state": sm.state,
                    "score": sm.score, "since": round(self._since[camera], 6),
                    "seq": self._seq[camera], "method": sm.method,
                    "ts": round(self._clock(), 6)}

    def observe(self, camera: str, result: dict) -> None:
        """One published result; publishes the state when it changed."""
        scores = {t["label"]: t["score"] for t in result.get("top_k", [])}
        with self._lock:
            sm = self._smoothers.get(camera)
            if sm is None:
                return
            before = sm.state
            after = sm.update(result["label"], result["score"], scores)
            changed = after != before
            if changed:
                self._since[camera] = result.get("ts", self._clock())
                self._seq[camera] = result.get("seq")
        if changed:
            self._metrics.state_changes.labels(camera).inc()
            self.publish(camera)
            for listener in self.change_listeners:
                listener(camera, after, result)

    def publish(self, camera: str) -> bool:
        data = json.dumps(self.payload(camera), separators=(",", ":")).encode()
        return self._sink.publish_now(self._topics.state(camera), data, self._cfg.qos,
                                      self._cfg.retain, "state")

    def republish(self) -> None:
        """On every (re)connect: every camera's current state, retained."""
        for camera in list(self._smoothers):
            self.publish(camera)

    @property
    def cameras(self) -> list[str]:
        return list(self._smoothers)


__all__ = ["UNKNOWN", "StateTracker"]
