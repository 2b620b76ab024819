"""Results in per-camera order: reorders what workers finish, numbers it, hands it to the sink.

Workers never wait here: they put outcomes on an unbounded queue, and this thread does the
reordering, the JSON encoding and the hand-off.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from edged.app.events import Events, ResultPublished
from edged.mqtt.contract import Message, Topics, result_message, result_payload
from edged.service.metrics import Metrics
from edged.service.ratelimit import EpisodeLog

if TYPE_CHECKING:  # only the outcome's data is read here, not the worker module
    from edged.inference.worker import Outcome

log = logging.getLogger(__name__)
_STOP = object()


class Link(Protocol):  # the MQTT link (or any sink with topics)
    topics: Topics

    def publish(self, msg: Message) -> None: ...
    def first_seq(self, camera: str) -> int: ...


@dataclass
class _Lane:
    next_ticket: int = 0
    seq: int = 0
    waiting: dict[int, Outcome] = field(default_factory=dict)


class Publisher:
    def __init__(self, link: Link, events: Events, qos: int, retain: bool, expiry_s: int,
                 metrics: Metrics) -> None:
        self._link = link
        self._events = events
        self._qos = qos
        self._retain = retain  # mqtt.result_retain
        self._expiry_s = expiry_s  # mqtt.message_expiry_s
        self._metrics = metrics
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lanes: dict[str, _Lane] = {}
        self._thread: threading.Thread | None = None
        self._gate = threading.Lock()  # held while a result is handed to the sink
        self._lost_log = EpisodeLog(log)  # a failing hand-over: one line per episode

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Results wait in the queue (none lost) while the caller swaps the sink."""
        with self._gate:
            yield

    def configure(self, qos: int, retain: bool, expiry_s: int) -> None:
        """New MQTT settings (a reload); call inside hold(). Lanes and seq are kept."""
        self._qos, self._retain, self._expiry_s = qos, retain, expiry_s

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
        # One lane per subject (camera, or camera/region): its own order and gap-free seq.
        lane = self._lanes.get(o.job.subject)
        if lane is None:  # seq continues where the sink's durable store left it
            lane = self._lanes[o.job.subject] = _Lane(seq=self._link.first_seq(o.job.subject))
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
        frame = o.job.frame
        seq, lane.seq = lane.seq, lane.seq + 1  # taken even if the hand-over fails: a gap
        try:
            payload = result_payload(self._link.topics.node_id, o.job.camera, seq, frame,
                                     o.model.name, o.model.labels, o.top or [], o.inference_s,
                                     now)
            self._link.publish(result_message(self._link.topics, payload, self._qos,
                                              self._retain, getattr(o.model, "sha256", None),
                                              self._expiry_s))
        except Exception as exc:  # noqa: BLE001 - counted and logged; publishing goes on
            self._metrics.results_lost.labels("error").inc()
            self._lost_log.failure("publisher: result %s seq %d lost: %s", o.job.subject, seq,
                                   exc)
            return
        self._lost_log.recovered("publisher: results handed over again")
        self._events.emit(ResultPublished(o.job.camera, frame, payload, frame.region_name))
        self._metrics.latency_seconds.labels(o.job.camera).observe(now - frame.mono)
