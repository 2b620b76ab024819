"""A broker that keeps sessions across its restarts and a subscriber with a persistent session:
together they record every message edged publishes, even while the broker was down."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.helpers.broker import Mosquitto
from tests.helpers.subscriber import wait_on


def persistent_broker(workdir: Path, port: int | None = None) -> Mosquitto:
    store = workdir / "mosquitto-store"
    store.mkdir(exist_ok=True)
    # The later `persistence true` wins over the helper's default; no queue limit per client.
    return Mosquitto(workdir, port, extra_conf=f"user root\npersistence true\npersistence_location {store}/\n"
                                                "max_queued_messages 0\nautosave_interval 1\n")


class DurableSubscriber:
    """MQTT v5, clean_start False, session expiry 10 min: the broker queues for it."""

    def __init__(self, port: int, topic: str, client_id: str = "durable-sub") -> None:
        self.port, self.topic = port, topic
        self.messages: list[tuple[str, dict]] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._cond:
            self.messages.append((msg.topic, json.loads(msg.payload)))
            self._cond.notify_all()

    def start(self) -> DurableSubscriber:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=props)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("subscriber did not subscribe")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def results(self) -> list[dict]:
        with self._cond:
            return [m for t, m in self.messages if t.endswith("/result")]

    def wait_for(self, predicate, timeout: float) -> bool:  # noqa: ANN001
        return wait_on(self._cond, predicate, timeout)


def first_seen(seqs: list[int]) -> list[int]:
    """The seqs in order of first arrival (a redelivered duplicate is not a new arrival)."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
