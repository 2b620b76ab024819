"""JPEG snapshots over MQTT: on a state change to a configured label, the frame that changed it,
retained at {prefix}/{node_id}/{camera}/snapshot and capped in size.

The state tracker calls `on_change` on the publisher thread; encoding happens on this
component's own thread so publishing never waits for a JPEG encoder.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.config import CameraConfig
from edged.errors import EdgedError
from edged.web.imaging import crop_roi, encode_capped
from edged.mqtt.extensions.smoothing import UNKNOWN
from edged.capture.sources.base import Frame
from edged.mqtt.topics import Topics

log = logging.getLogger(__name__)
CONTENT_TYPE = "image/jpeg"


def check_snapshot_labels(camera: str, cfg: CameraConfig, labels: list[str]) -> None:
    """EdgedError naming the key when a snapshot label is not one the model can give."""
    known = set(labels) | {UNKNOWN}
    for label in cfg.snapshot.labels:
        if label not in known:
            raise EdgedError(f"cameras.{camera}.snapshot.labels: {label!r} is not a label of "
                             f"model {cfg.model!r} (labels: {', '.join(labels)})")


@dataclass
class _Pending:
    frame: Frame
    state: str
    result: dict


class Snapshotter:
    """One named thread; keeps the newest pending change per camera (if changes come faster
    than JPEGs can be made, older ones are superseded: the topic is retained, the newest
    counts) and each camera's last snapshot, sent again after every broker connect."""

    def __init__(self, sink, topics: Topics, cameras: Mapping[str, CameraConfig],  # noqa: ANN001
                 frames: Mapping[str, Frame]) -> None:
        self._sink = sink  # MqttSink: publish_now, v5
        self._topics = topics
        self._cameras = {name: cfg for name, cfg in cameras.items() if cfg.snapshot.enabled}
        self._frames = frames  # the publisher's frame of each camera's newest result
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._last: dict[str, tuple[bytes, Properties | None]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.superseded = 0  # changes replaced by a newer one before they were sent

    def use_sink(self, sink, topics: Topics) -> None:  # noqa: ANN001 - MqttSink
        """Publish through another sink from now on (an MQTT reload)."""
        self._sink, self._topics = sink, topics

    def on_change(self, camera: str, state: str, result: dict) -> None:
        """StateTracker change listener (publisher thread): only hands over a reference."""
        cfg = self._cameras.get(camera)
        if cfg is None or (cfg.snapshot.labels and state not in cfg.snapshot.labels):
            return
        frame = self._frames.get(camera)
        if frame is None:
            return
        with self._cond:
            if camera in self._pending:
                self.superseded += 1
            self._pending[camera] = _Pending(frame, state, result)
            self._cond.notify()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Send what is pending, then end the thread."""
        if self._thread is None:
            return
        self._stop.set()
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("snapshots: thread did not stop within %.1fs", timeout)
        self._thread = None

    def republish(self) -> None:
        """Broker connect hook: each camera's last snapshot again (missed while offline)."""
        for camera, (data, props) in list(self._last.items()):
            cfg = self._cameras[camera].snapshot
            self._sink.publish_now(self._topics.snapshot(camera), data, cfg.qos, True,
                                   "snapshot", props)

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
        cfg = self._cameras[camera]
        image = item.frame.image
        if cfg.snapshot.roi_only:
            image = crop_roi(image, getattr(cfg, "roi", None))
        data = encode_capped(image, cfg.snapshot.max_bytes)
        props = self._properties(item)
        self._last[camera] = (data, props)
        self._sink.publish_now(self._topics.snapshot(camera), data, cfg.snapshot.qos, True,
                               "snapshot", props)
        log.debug("snapshots: camera %s: %s, %d bytes", camera, item.state, len(data))

    def _properties(self, item: _Pending) -> Properties | None:
        """MQTT v5: the content type and what the picture shows, as user properties."""
        if not getattr(self._sink, "v5", False):
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = CONTENT_TYPE
        r = item.result
        props.UserProperty = [("state", item.state), ("label", str(r.get("label"))),
                              ("score", str(r.get("score"))), ("seq", str(r.get("seq"))),
                              ("frame", str(item.frame.index)), ("ts", str(r.get("ts")))]
        return props
