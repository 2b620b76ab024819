"""The Sink seam: where messages go. Everything the publisher and the extensions call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from edged.mqtt.contract import Message

SINKS: dict[str, type[Sink]] = {}


class Sink(ABC):
    key: ClassVar[str]
    v5: bool = False  # whether MQTT v5 properties (response topics, ...) are available

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "key", None):
            SINKS[cls.key] = cls

    @abstractmethod
    def start(self) -> None:
        """Begin connecting; must not fail because the other end is down."""

    @abstractmethod
    def publish(self, msg: Message) -> None:
        """Hand a message over; never blocks on the network. A durable sink keeps results
        (`msg.durable`) until they are acknowledged."""

    @abstractmethod
    def publish_now(self, msg: Message) -> bool:
        """Send only if connected now (retained messages are re-sent on connect anyway)."""

    def subscribe(self, topic_filter: str, handler: Callable[[object], None],
                  qos: int = 1) -> None:
        """Call `handler` for each message matching `topic_filter`, on every connection."""

    def unsubscribe(self, handler: Callable[[object], None]) -> None:
        """Forget the subscriptions of `handler`."""

    def request_greet(self) -> None:
        """Run the connected event again and re-announce `online`."""

    def first_seq(self, camera: str) -> int:
        """Where the camera's seq continues; sinks that persist it override this."""
        return 0

    def outbox_stats(self) -> tuple[int, int, float]:
        """(messages, bytes, age of the oldest) waiting for an acknowledgement."""
        return 0, 0, 0.0

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @property
    @abstractmethod
    def unacknowledged(self) -> int:
        """Messages handed over but not yet acknowledged by the other end."""

    @abstractmethod
    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` for every message to be acknowledged; True if all were."""

    @abstractmethod
    def stop(self, timeout: float = 3.0) -> None:
        """Deliver what can be within `timeout`, say goodbye and disconnect; idempotent."""
