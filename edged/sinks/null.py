"""A sink that keeps nothing: for `edged bench` and dry runs. It counts results and keeps
their capture-to-publish latencies, so the pipeline can be measured without a broker."""

from __future__ import annotations

import json
import threading

from edged.sinks.base import Sink


class NullSink(Sink):
    key = "null"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results = 0
        self.latencies_ms: list[float] = []

    def start(self) -> None:
        pass

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool, topic_class: str,
                **_: object) -> None:
        if topic_class != "result":
            return
        latency = json.loads(payload)["latency_ms"]
        with self._lock:
            self.results += 1
            self.latencies_ms.append(latency)

    def take(self) -> tuple[int, list[float]]:
        """Results and latencies since the last call."""
        with self._lock:
            taken = self.results, self.latencies_ms
            self.results, self.latencies_ms = 0, []
        return taken

    def outbox_stats(self) -> tuple[int, int, float]:
        return 0, 0, 0.0

    @property
    def connected(self) -> bool:
        return True

    @property
    def unacknowledged(self) -> int:
        return 0

    def flush(self, timeout: float) -> bool:
        return True

    def stop(self, timeout: float = 0.0) -> None:
        pass
