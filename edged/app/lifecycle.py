"""Start the pipeline's parts in named tiers, roll back on failure, stop in reverse.

The tiers, in start order, and why:
- sources:    open finite sources (a file that cannot be read stops the daemon before
              anything else starts);
- listener:   /metrics, /healthz, /readyz (and the live view mounted on it);
- sink:       the MQTT client (connects in the background; a broker that is down is retried);
- extensions: state, Home Assistant, commands, snapshots, the live view; they join the events
              before any result can be published, and leave after the last one was;
- publisher:  results in order to the sink;
- workers:    the inference threads;
- capture:    the cameras' threads, last, so the first frame finds everything ready.
Stopping runs backwards: capture ends first, workers finish what they hold, the publisher
publishes it, extensions send what is pending, the sink delivers it, the listener goes.
A tier stops its parts together: each gets the stop signal first, then all are awaited with
one deadline, so stopping N cameras takes as long as stopping one.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)

TIERS = ("sources", "listener", "sink", "extensions", "publisher", "workers", "capture")


class Component(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


@runtime_checkable
class Signalled(Protocol):
    """A component that can be told to stop before it is awaited (see the module doc)."""

    def request_stop(self) -> None: ...


class Lifecycle:
    def __init__(self, stop_timeout_s: float = 5.0) -> None:
        self._started: dict[str, list[Component]] = {tier: [] for tier in TIERS}
        self._stop_timeout_s = stop_timeout_s

    def start(self, tiers: dict[str, list[Component]]) -> None:
        """Start every part tier by tier; on any failure stop what started, then raise."""
        unknown = set(tiers) - set(TIERS)
        if unknown:
            raise ValueError(f"unknown tiers: {sorted(unknown)}")
        try:
            for tier in TIERS:
                for component in tiers.get(tier, []):
                    self.add(tier, component)
        except BaseException:
            self.stop()
            raise

    def add(self, tier: str, component: Component) -> None:
        """Start one more part in `tier` (e.g. a camera a reload added)."""
        component.start()
        self._started[tier].append(component)

    def remove(self, component: Component) -> None:
        """Stop one part and forget it."""
        for parts in self._started.values():
            if component in parts:
                parts.remove(component)
                self._stop_one(component)
                return

    def replace(self, old: Component, new: Component) -> None:
        """Swap a part in place: the old one stops first (the same MQTT client id or port
        must be free), then the new one starts where the old one was."""
        for parts in self._started.values():
            if old in parts:
                index = parts.index(old)
                self._stop_one(old)
                new.start()
                parts[index] = new
                return
        raise ValueError(f"{type(old).__name__} is not running")

    def parts(self, tier: str) -> list[Component]:
        return list(self._started[tier])

    def stop(self) -> None:
        """Stop every tier in reverse order; a failing part does not stop the others."""
        for tier in reversed(TIERS):
            parts = self._started[tier]
            self._started[tier] = []
            self.stop_together(list(reversed(parts)))

    def stop_together(self, parts: list[Component]) -> None:
        for component in parts:
            if isinstance(component, Signalled):
                component.request_stop()
        t0 = time.monotonic()
        for component in parts:
            self._stop_one(component)
        took = time.monotonic() - t0
        if took > self._stop_timeout_s:
            log.warning("stopping %d parts took %.1fs", len(parts), took)

    @staticmethod
    def _stop_one(component: Component) -> None:
        try:
            component.stop()
        except Exception:  # noqa: BLE001 - keep stopping the rest
            log.exception("error while stopping %s", type(component).__name__)
