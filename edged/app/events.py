"""The events that extensions join: a result published, a state changed, the broker connected.

Extensions (state, Home Assistant, commands, snapshots, the live view) subscribe in `start()`
and unsubscribe in `stop()`, so the daemon wires nothing by hand and the order is explicit.
Handlers run on the emitting thread (the publisher's, or the MQTT sender's) and must be
quick: one that needs time hands the work to its own thread. A failing handler is logged and
the others still run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged.frame import Frame, subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResultPublished:
    camera: str
    frame: Frame
    result: dict[str, Any]  # the result payload as published
    region: str | None = None  # the camera's region it is for, if any

    @property
    def subject(self) -> str:
        """Whose result: the camera, or camera/region (what state and the view key by)."""
        return subject(self.camera, self.region)


@dataclass(frozen=True)
class StateChanged:
    camera: str
    state: str
    result: dict[str, Any]  # the result that changed it
    frame: Frame | None  # its frame
    region: str | None = None

    @property
    def subject(self) -> str:
        return subject(self.camera, self.region)


@dataclass(frozen=True)
class BrokerConnected:
    """After each connect, before `online`: re-send what is retained."""


@dataclass(frozen=True)
class HeartbeatDue:
    """Every mqtt.status.interval_s while connected, before `online` is re-published: re-send
    what consumers judge freshness by (the states, for Home Assistant's expire_after)."""


Handler = Callable[[Any], None]


class Events:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[type, tuple[Handler, ...]] = {}

    def subscribe(self, kind: type, handler: Handler) -> None:
        with self._lock:
            self._handlers[kind] = (*self._handlers.get(kind, ()), handler)

    def unsubscribe(self, kind: type, handler: Handler) -> None:
        with self._lock:
            self._handlers[kind] = tuple(h for h in self._handlers.get(kind, ())
                                         if h != handler)

    def emit(self, event: object) -> None:
        with self._lock:
            handlers = self._handlers.get(type(event), ())
        for handler in handlers:  # a snapshot: subscribing meanwhile affects the next event
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - one extension must not break the others
                log.exception("%s handler %s failed", type(event).__name__,
                              getattr(handler, "__qualname__", handler))

    def count(self, kind: type) -> int:
        with self._lock:
            return len(self._handlers.get(kind, ()))
