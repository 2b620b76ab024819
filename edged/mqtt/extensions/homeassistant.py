"""Home Assistant MQTT discovery: one sensor per camera whose state is the current label (one
per region for a camera with regions).

An extension: discovery goes out (retained) on "broker connected", for the cameras the
pipeline has at that moment, and again whenever Home Assistant announces itself with its
birth message (`{discovery_prefix}/status` = `online`). A reload that adds cameras greets
again, so their sensors appear too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from edged.app.events import BrokerConnected, Events
from edged.config import HomeAssistantConfig
from edged.frame import split_subject
from edged.mqtt.contract import Message, Topics, discovery_message

log = logging.getLogger(__name__)


class Link(Protocol):
    topics: Topics

    def publish_now(self, msg: Message) -> bool: ...
    def subscribe(self, topic_filter: str, handler: Callable, qos: int = 1) -> None: ...
    def unsubscribe(self, handler: Callable) -> None: ...
    def request_greet(self) -> None: ...


class HomeAssistant:
    def __init__(self, link: Link, events: Events, cfg: HomeAssistantConfig,
                 cameras: Callable[[], list[str]], expire_after: int | None = None) -> None:
        self._link = link
        self._expire_after = expire_after  # 3 heartbeat intervals (edged.mqtt.heartbeat)
        self._events = events
        self._cfg = cfg
        self._cameras = cameras  # the camera set's subjects, read at each announcement

    @property
    def birth_topic(self) -> str:
        return f"{self._cfg.discovery_prefix}/status"

    def start(self) -> None:
        self._events.subscribe(BrokerConnected, self.send_discovery)
        self._link.subscribe(self.birth_topic, self._on_birth)

    def stop(self) -> None:
        self._events.unsubscribe(BrokerConnected, self.send_discovery)
        self._link.unsubscribe(self._on_birth)

    def send_discovery(self, _: BrokerConnected | None = None) -> None:
        for key in self._cameras():
            camera, region = split_subject(key)
            self._link.publish_now(discovery_message(self._link.topics,
                                                     self._cfg.discovery_prefix, camera,
                                                     self._expire_after, region))

    def _on_birth(self, msg) -> None:  # noqa: ANN001 - paho MQTTMessage
        if msg.payload.strip() == b"online":
            log.info("home assistant is online; re-sending discovery")
            self._link.request_greet()  # discovery, states, then `online`, on the sender
