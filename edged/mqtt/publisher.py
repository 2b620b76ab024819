"""Results in per-camera order: reorders what workers finish, numbers it, hands it to the sink.

Workers never wait here: they put outcomes on an unbounded queue, and this thread does the
reordering, the JSON encoding and the hand-off.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from edged.service.metrics import Metrics
from edged.sinks.base import Sink
from edged.capture.sources.base import Frame
from edged.mqtt.topics import Topics
from edged.inference.worker import Outcome

log = logging.getLogger(__name__)
_STOP = object()


@dataclass
class _Lane:
    next_ticket: int = 0
    seq: int = 0
    waiting: dict[int, Outcome] = field(default_factory=dict)


def result_payload(o: Outcome, seq: int, node_id: str, published_mono: float) -> dict:
    labels = o.model.labels
    top = o.top or []
    index, score = top[0]
    frame = o.job.frame
    msg = {
        "node_id": node_id,
        "camera": o.job.camera,
        "seq": seq,
        "frame": frame.index,
        "ts": round(frame.ts, 6),
        "model": o.model.name,
        "label": labels[index],
        "index": index,
        "score": round(score, 6),
        "top_k": [{"label": labels[i], "index": i, "score": round(s, 6)} for i, s in top],
        "inference_ms": round(o.inference_s * 1000, 3),
        "latency_ms": round((published_mono - frame.mono) * 1000, 3),
    }
    if frame.name is not None:
        msg["file"] = frame.name
    return msg


class Publisher:
    def __init__(self, sink: Sink, topics: Topics, qos: int, metrics: Metrics) -> None:
        self._sink = sink
        self._topics = topics
        self._qos = qos
        self.retain = False  # mqtt.result_retain
        self._metrics = metrics
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lanes: dict[str, _Lane] = {}
        self._thread: threading.Thread | None = None
        # Called with (camera, result dict) after each result is handed over (e.g. state).
        self.listeners: list[Callable[[str, dict], None]] = []
        self._gate = threading.Lock()  # held while a result is handed to the sink
        # The frame of each camera's newest result, set before the listeners run (so a
        # state-change snapshot shows the very frame that changed the state).
        self.last_frames: dict[str, Frame] = {}

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Results wait in the queue (none lost) while the caller swaps the sink."""
        with self._gate:
            yield

    def use_sink(self, sink: Sink, topics: Topics, qos: int) -> None:
        """Publish to another sink from now on; call inside hold(). Lanes and seq are kept."""
        self._sink, self._topics, self._qos = sink, topics, qos

    def submit(self, outcome: Outcome) -> None:
        """Called by workers; never blocks."""
        self._queue.put(outcome)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="publisher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish everything submitted so far, then end the thread."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("publisher did not finish within %.1fs", timeout)
        self._thread = None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                with self._gate:
                    self._accept(item)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a bug in one result must not stop publishing
                log.exception("publisher: result dropped")

    def _accept(self, o: Outcome) -> None:
        lane = self._lanes.get(o.job.camera)
        if lane is None:  # seq continues where the sink's durable store left it
            lane = self._lanes[o.job.camera] = _Lane(seq=self._sink.first_seq(o.job.camera))
        lane.waiting[o.job.ticket] = o
        while lane.next_ticket in lane.waiting:
            ready = lane.waiting.pop(lane.next_ticket)
            lane.next_ticket += 1
            if ready.top is not None:
                self._emit(ready, lane)
            if ready.job.frame.on_done is not None:  # e.g. move a hot-folder file to done/
                try:
                    ready.job.frame.on_done()
                except Exception:  # noqa: BLE001 - the result is out; only the tidy-up failed
                    log.exception("publisher: after-result action failed")

    def _emit(self, o: Outcome, lane: _Lane) -> None:
        now = time.monotonic()
        payload = result_payload(o, lane.seq, self._topics.node_id, now)
        data = json.dumps(payload, separators=(",", ":")).encode()
        self._sink.publish(self._topics.result(o.job.camera), data, self._qos, self.retain,
                           "result", camera=o.job.camera, seq=lane.seq,
                           model_sha256=getattr(o.model, "sha256", None))
        lane.seq += 1
        self.last_frames[o.job.camera] = o.job.frame
        for listener in self.listeners:
            try:
                listener(o.job.camera, payload)
            except Exception:
                log.exception("publisher: result listener failed")
        self._metrics.latency_seconds.labels(o.job.camera).observe(now - o.job.frame.mono)
