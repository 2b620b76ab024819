"""MQTT sink on paho-mqtt 2.x: availability with a last will, acknowledgement tracking."""

from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edged.config import MqttConfig
from edged.metrics import Metrics
from edged.ratelimit import EpisodeLog
from edged.sinks.base import Sink
from edged.topics import Topics

log = logging.getLogger(__name__)

_PROTOCOLS = {"v5": mqtt.MQTTv5, "v3.1.1": mqtt.MQTTv311}


def status_payload(state: str) -> bytes:
    return json.dumps({"state": state, "ts": round(time.time(), 3)}).encode()


class MqttSink(Sink):
    key = "mqtt"

    def __init__(self, cfg: MqttConfig, topics: Topics, metrics: Metrics) -> None:
        self._cfg = cfg
        self._topics = topics
        self._metrics = metrics
        self._client: mqtt.Client | None = None
        self._lock = threading.Condition()
        self._pending: dict[int, str] = {}  # mid -> topic class, until acknowledged
        self._early: set[int] = set()  # acks that arrived before publish() returned the mid
        self._sizes: dict[int, tuple[int, float]] = {}  # mid -> (bytes, monotonic sent)
        self._connected = threading.Event()
        self._episodes = EpisodeLog(log)

    @property
    def client_id(self) -> str:
        return self._cfg.client_id or f"edged-{self._topics.node_id}"

    def start(self) -> None:
        cfg = self._cfg
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=_PROTOCOLS[cfg.protocol])
        client.will_set(self._topics.status, status_payload("offline"), qos=1, retain=True)
        client.reconnect_delay_set(min_delay=max(1, int(cfg.reconnect.initial_s)),
                                   max_delay=max(1, int(cfg.reconnect.max_s)))
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)  # unbounded: nothing accepted is dropped here
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        self._client = client
        self._metrics.mqtt_connected.set(0)
        # connect_async + loop_start: a broker that is down at start is retried, not fatal.
        client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        client.loop_start()
        client._thread.name = f"mqtt-{self.client_id}"  # paho names it generically

    # paho callbacks run on paho's network thread.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        if reason_code.is_failure:
            self._episodes.failure("mqtt: broker %s:%d refused the connection: %s",
                                   self._cfg.host, self._cfg.port, reason_code)
            return
        self._episodes.recovered("mqtt: connected to %s:%d", self._cfg.host, self._cfg.port)
        log.info("mqtt: connected to %s:%d", self._cfg.host, self._cfg.port)
        self._connected.set()
        self._metrics.mqtt_connected.set(1)
        self._publish(self._topics.status, status_payload("online"), 1, True, "status")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ANN001
        was = self._connected.is_set()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)
        if was and reason_code != 0:
            self._episodes.failure("mqtt: disconnected from %s:%d (%s); reconnecting",
                                   self._cfg.host, self._cfg.port, reason_code)

    def _on_connect_fail(self, client, userdata) -> None:  # noqa: ANN001
        self._episodes.failure("mqtt: cannot reach broker %s:%d; retrying", self._cfg.host,
                               self._cfg.port)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # noqa: ANN001
        with self._lock:
            topic_class = self._pending.pop(mid, None)
            self._sizes.pop(mid, None)
            if topic_class is None:
                self._early.add(mid)
                return
            self._lock.notify_all()
        self._metrics.published.labels(topic_class).inc()

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                topic_class: str) -> None:
        self._publish(topic, payload, qos, retain, topic_class)

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                 topic_class: str) -> None:
        if self._client is None:
            raise RuntimeError("mqtt sink not started")
        # Never hold our lock while calling paho: its ack path takes its lock, then ours.
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0 and info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            self._metrics.mqtt_failed.labels(topic_class).inc()
            return  # QoS 0 is fire-and-forget: paho drops it while disconnected
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
                acked = True
            else:
                self._pending[info.mid] = topic_class
                self._sizes[info.mid] = (len(payload), time.monotonic())
                acked = False
        if acked:
            self._metrics.published.labels(topic_class).inc()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def unacknowledged(self) -> int:
        with self._lock:
            return len(self._pending)

    def outbox_stats(self) -> tuple[int, int, float]:
        """(messages, payload bytes, age in seconds of the oldest) not yet acknowledged."""
        with self._lock:
            sizes = list(self._sizes.values())
        oldest = min((sent for _, sent in sizes), default=None)
        age = time.monotonic() - oldest if oldest is not None else 0.0
        return len(sizes), sum(size for size, _ in sizes), age

    def flush(self, timeout: float) -> bool:
        with self._lock:
            return self._lock.wait_for(lambda: not self._pending, timeout=timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Publish `stopped`, wait up to `timeout` for acknowledgements, disconnect."""
        client = self._client
        if client is None:
            return
        if self._connected.is_set():
            self._publish(self._topics.status, status_payload("stopped"), 1, True, "status")
            if not self.flush(timeout):
                log.warning("mqtt: %d messages not acknowledged at exit", self.unacknowledged)
        elif self.unacknowledged:
            log.warning("mqtt: broker unreachable at exit; %d messages not delivered",
                        self.unacknowledged)
        self._client = None
        client.disconnect()
        client.loop_stop()
        self._connected.clear()
        self._metrics.mqtt_connected.set(0)
