"""A sink that keeps nothing: for `edged bench` and dry runs. It counts results and keeps
their capture-to-publish latencies, so the pipeline can be measured without a broker."""

from __future__ import annotations

import json
import threading

from edged.mqtt.contract import Message
from edged.sinks.base import Sink


class NullSink(Sink):
    key = "null"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.results = 0
        self.latencies_ms: list[float] = []
        self.messages: dict[str, int] = {}  # per kind, e.g. {"result": 600, "state": 12}

    def start(self) -> None:
        pass

    def publish(self, msg: Message) -> None:
        with self._lock:
            self.messages[msg.kind] = self.messages.get(msg.kind, 0) + 1
            if msg.kind == "result":
                self.results += 1
                self.latencies_ms.append(json.loads(msg.payload)["latency_ms"])

    def publish_now(self, msg: Message) -> bool:
        self.publish(msg)
        return True

    def take(self) -> tuple[int, list[float]]:
        """Results and latencies since the last call."""
        with self._lock:
            taken = self.results, self.latencies_ms
            self.results, self.latencies_ms = 0, []
        return taken

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
