"""Availability that does not rest on the last will alone: the status payload and its heartbeat.

In a broker cluster the last will is sent by the node the client was connected to; when that
node dies no `offline` is ever published and the retained `online` stays on the others. So
`online` is re-published (retained, with a fresh `ts`) every `mqtt.status.interval_s`, and a
consumer treats a status whose `ts` is older than STALE_AFTER x `interval_s` as offline. The
payload itself is built in edged.mqtt.contract (status_payload).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

STALE_AFTER = 3  # intervals without a heartbeat after which a consumer shows offline


def expire_after(interval_s: float) -> int | None:
    """Home Assistant's expire_after (whole seconds) for a heartbeat interval; None if off."""
    if not interval_s:
        return None
    return max(1, math.ceil(STALE_AFTER * interval_s))


def is_stale(payload: dict, now: float) -> bool:
    """How a consumer reads a status: offline unless `online` and fresh enough."""
    if payload.get("state") != "online":
        return True
    interval = payload.get("interval_s")
    if not interval:
        return False  # a publisher without a heartbeat: only the last will can tell
    return now - float(payload.get("ts", 0)) > STALE_AFTER * float(interval)


class Heartbeat:
    """When the next beat is due; driven by the sink's sender thread (no thread of its own)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._next: float | None = None

    def reset(self) -> None:
        """`online` was just published: the next beat is one interval from now."""
        self._next = self._clock() + self.interval_s if self.interval_s else None

    def due(self) -> bool:
        return self._next is not None and self._clock() >= self._next
