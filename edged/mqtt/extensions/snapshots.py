"""JPEG snapshots over MQTT: on a state change to a configured label, the frame that changed it,
retained at {prefix}/{node_id}/{camera}/snapshot and capped in size.

An extension: it joins "state changed" (on the publisher thread: it only keeps a reference)
and "broker connected" (each camera's last snapshot again); encoding happens on its own
thread so publishing never waits for a JPEG encoder. Cameras and their snapshot settings are
read from the camera set at each change, so cameras added or changed by a reload are seen.
A region of a camera has its own snapshot (.../{camera}/{region}/snapshot, the whole frame
with the region outlined, or only the region with roi_only) and its own settings override.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edged.app.events import BrokerConnected, Events, StateChanged
from edged.config import CameraConfig, SnapshotConfig
from edged.errors import EdgedError
from edged.frame import Frame, split_subject
from edged.mqtt.contract import Message, Topics, snapshot_message
from edged.mqtt.extensions.smoothing import UNKNOWN
from edged.web.imaging import encode_capped, outlined

log = logging.getLogger(__name__)


class Link(Protocol):
    topics: Topics

    def publish_now(self, msg: Message) -> bool: ...


def check_snapshot_labels(camera: str, cfg: CameraConfig, labels: list[str]) -> None:
    """EdgedError naming the key when a snapshot label is not one the model can give."""
    known = set(labels) | {UNKNOWN}
    for label in cfg.snapshot.labels:
        if label not in known:
            raise EdgedError(f"cameras.{camera}.snapshot.labels: {label!r} is not a label of "
                             f"model {cfg.model!r} (labels: {', '.join(labels)})")


def check_region_snapshot_labels(camera: str, region: str, snapshot: SnapshotConfig,
                                 model: str, labels: list[str]) -> None:
    """The same for a region's snapshot settings, against the region's model."""
    known = set(labels) | {UNKNOWN}
    for label in snapshot.labels:
        if label not in known:
            raise EdgedError(f"cameras.{camera}.regions.{region}.snapshot.labels: {label!r} "
                             f"is not a label of model {model!r} (labels: {', '.join(labels)})")


@dataclass
class _Pending:
    frame: Frame
    state: str
    result: dict


class Snapshotter:
    """One named thread; keeps the newest pending change per camera (if changes come faster
    than JPEGs can be made, older ones are superseded: the topic is retained, the newest
    counts) and each camera's last snapshot, sent again after every broker connect."""

    def __init__(self, link: Link, events: Events,
                 snapshot_config: Callable[[str], SnapshotConfig | None]) -> None:
        self._link = link
        self._events = events
        # the camera set's current snapshot settings of a subject (camera or camera/region)
        self._snapshot_config = snapshot_config
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._last: dict[str, Message] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.superseded = 0  # changes replaced by a newer one before they were sent

    def _on_change(self, event: StateChanged) -> None:
        """Publisher thread: only hands over a reference."""
        key = event.subject
        cfg = self._snapshot_config(key)
        if cfg is None or not cfg.enabled or event.frame is None:
            return
        if cfg.labels and event.state not in cfg.labels:
            return
        with self._cond:
            if key in self._pending:
                self.superseded += 1
            self._pending[key] = _Pending(event.frame, event.state, event.result)
            self._cond.notify()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()
        self._events.subscribe(StateChanged, self._on_change)
        self._events.subscribe(BrokerConnected, self._republish)

    def stop(self, timeout: float = 3.0) -> None:
        """Send what is pending, then end the thread."""
        self._events.unsubscribe(StateChanged, self._on_change)
        self._events.unsubscribe(BrokerConnected, self._republish)
        if self._thread is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshots: thread did not stop within %.1fs", timeout)
        self._thread = None

    def _republish(self, _: BrokerConnected) -> None:
        """Each camera's last snapshot again (missed while offline)."""
        for msg in list(self._last.values()):
            self._link.publish_now(msg)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._cond.wait(1.0)
                if not self._pending:
                    return  # stopping, nothing left
                camera, item = self._pending.popitem()
            try:
                self._send(camera, item)
            except Exception:  # noqa: BLE001 - one bad frame must not end snapshots
                log.exception("snapshots: camera %s: snapshot failed", camera)

    def _send(self, camera: str, item: _Pending) -> None:
        cfg = self._snapshot_config(camera)
        if cfg is None:
            return  # removed by a reload meanwhile
        name, region = split_subject(camera)
        # The frame's own box: the very pixels the model classified.
        if cfg.roi_only:
            image = item.frame.region()
        elif region is not None and item.frame.box is not None:
            image = outlined(item.frame.image, [(item.frame.box, region)])
        else:
            image = item.frame.image
        msg = snapshot_message(self._link.topics, name,
                               encode_capped(image, cfg.max_bytes), cfg.qos,
                               item.state, item.result, item.frame.index, region)
        self._last[camera] = msg
        self._link.publish_now(msg)
        log.debug("snapshots: camera %s: %s, %d bytes", camera, item.state, len(msg.payload))
