"""The one handle that the publisher and the MQTT extensions publish through.

A reload that changes the broker builds a new sink; `use()` points the link at it, so no
extension has a sink (or topics) of its own to swap. Subscriptions are kept here and
registered on every sink the link is pointed at, before that sink starts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from edged.mqtt.contract import Message, Topics
from edged.sinks.base import Sink

Handler = Callable[[object], None]  # paho MQTTMessage


class MqttLink:
    def __init__(self, sink: Sink, topics: Topics) -> None:
        self._lock = threading.Lock()
        self._sink = sink
        self._topics = topics
        self._subscriptions: list[tuple[str, Handler, int]] = []

    @property
    def sink(self) -> Sink:
        return self._sink

    @property
    def topics(self) -> Topics:
        return self._topics

    @property
    def v5(self) -> bool:
        return bool(getattr(self._sink, "v5", False))

    @property
    def connected(self) -> bool:
        return self._sink.connected

    def use(self, sink: Sink, topics: Topics) -> None:
        """From now on, publish through `sink` (not started yet: it gets the subscriptions)."""
        with self._lock:
            for topic_filter, handler, qos in self._subscriptions:
                sink.subscribe(topic_filter, handler, qos)
            self._sink, self._topics = sink, topics

    def publish(self, msg: Message) -> None:
        self._sink.publish(msg)

    def publish_now(self, msg: Message) -> bool:
        return self._sink.publish_now(msg)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        with self._lock:
            self._subscriptions.append((topic_filter, handler, qos))
            sink = self._sink
        sink.subscribe(topic_filter, handler, qos)  # may wait for the SUBACK: not under the lock

    def unsubscribe(self, handler: Handler) -> None:
        """Forget `handler`'s subscriptions (on the next sink; the broker keeps the current
        one until it disconnects, and its messages then find no handler)."""
        with self._lock:
            self._subscriptions = [s for s in self._subscriptions if s[1] != handler]
            unsubscribe = getattr(self._sink, "unsubscribe", None)
            if unsubscribe is not None:
                unsubscribe(handler)

    def first_seq(self, camera: str) -> int:
        return self._sink.first_seq(camera)

    def request_greet(self) -> None:
        """The connected event and `online` again (Home Assistant restarted, cameras added)."""
        self._sink.request_greet()
