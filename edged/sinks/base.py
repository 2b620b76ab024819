"""The Sink seam: where results go."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

SINKS: dict[str, type[Sink]] = {}


class Sink(ABC):
    key: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "key", None):
            SINKS[cls.key] = cls

    @abstractmethod
    def start(self) -> None:
        """Begin connecting; must not fail because the other end is down."""

    @abstractmethod
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                topic_class: str, camera: str | None = None, seq: int | None = None,
                model_sha256: str | None = None) -> None:
        """Hand a message over; never blocks on the network. A result names its camera and
        seq (so a durable sink can keep and replay it) and its model's sha256."""

    def first_seq(self, camera: str) -> int:
        """Where the camera's seq continues; sinks that persist it override this."""
        return 0

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
    def stop(self) -> None:
        """Say goodbye cleanly and disconnect; safe to call twice."""
