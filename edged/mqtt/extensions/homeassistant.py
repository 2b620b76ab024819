"""Home Assistant MQTT discovery: one sensor per camera whose state is the current label.

Discovery goes out (retained) on every connect and again whenever Home Assistant announces
itself with its birth message (`{discovery_prefix}/status` = `online`).
"""

from __future__ import annotations

import json
import logging

import paho.mqtt.client as mqtt

from edged import __version__
from edged.config import HomeAssistantConfig
from edged.mqtt.topics import Topics

log = logging.getLogger(__name__)


def discovery_topic(prefix: str, node_id: str, camera: str) -> str:
    return f"{prefix}/sensor/{node_id}/{camera}/config"


def discovery_payload(topics: Topics, camera: str) -> dict:
    """The sensor's config: state and attributes from the state topic, availability from
    the status topic (anything but `online` counts as unavailable)."""
    node = topics.node_id
    return {
        "name": camera,
        "unique_id": f"edged_{node}_{camera}",
        "object_id": f"edged_{node}_{camera}",
        "state_topic": topics.state(camera),
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": topics.state(camera),
        "json_attributes_template":
            "{{ {'score': value_json.score, 'since': value_json.since} | tojson }}",
        "availability_topic": topics.status,
        "availability_template":
            "{{ 'online' if value_json.state == 'online' else 'offline' }}",
        "payload_available": "online",
        "payload_not_available": "offline",
        "icon": "mdi:cctv",
        "device": {"identifiers": [f"edged_{node}"], "name": f"edged {node}",
                   "manufacturer": "edged", "model": "edge inference daemon",
                   "sw_version": __version__},
        "origin": {"name": "edged", "sw_version": __version__},
    }


class HomeAssistant:
    def __init__(self, sink, topics: Topics, cfg: HomeAssistantConfig,  # noqa: ANN001
                 cameras: list[str]) -> None:
        self._sink = sink  # MqttSink
        self._topics = topics
        self._cfg = cfg
        self._cameras = cameras

    @property
    def birth_topic(self) -> str:
        return f"{self._cfg.discovery_prefix}/status"

    def attach(self) -> None:
        """Before the sink starts: discovery on each connect, and the birth subscription."""
        self._sink.add_connect_hook(self.send_discovery)
        self._sink.subscribe(self.birth_topic, self._on_birth)

    def send_discovery(self) -> None:
        for camera in self._cameras:
            data = json.dumps(discovery_payload(self._topics, camera)).encode()
            self._sink.publish_now(discovery_topic(self._cfg.discovery_prefix,
                                                   self._topics.node_id, camera),
                                   data, 1, True, "discovery")

    def _on_birth(self, msg: mqtt.MQTTMessage) -> None:
        if msg.payload.strip() == b"online":
            log.info("home assistant is online; re-sending discovery")
            self._sink.request_greet()  # discovery, states, then `online`, on the sender
