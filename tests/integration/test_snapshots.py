"""Snapshots over MQTT: the daemon on the demo video (real mosquitto, real LiteRT); one
retained, size-capped JPEG per state change to a configured label, of the frame that made it."""

from __future__ import annotations

import time

import cv2
import numpy as np

from edged.config import CameraConfig, load_config
from edged.app.daemon import Daemon
from tests.conftest import demo_config, write_config
from tests.helpers.subscriber import Message, Subscriber

SNAP_LABELS = ["dented", "misaligned"]
MAX_BYTES = 6000  # a 320x240 frame at quality 90 is larger: the cap must re-encode
ROI = [40, 30, 240, 180] if "roi" in CameraConfig.model_fields else None


class PropsSubscriber(Subscriber):
    """Also keeps each message's MQTT v5 properties."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.props: list[tuple[str, dict]] = []

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        p = getattr(msg, "properties", None)
        props = {"content_type": getattr(p, "ContentType", None),
                 **dict(getattr(p, "UserProperty", []) or [])}
        with self._cond:
            self.props.append((msg.topic, props))
        super()._on_message(client, userdata, msg)


def _changes(states: list[dict]) -> list[dict]:
    """State messages that announce a change (not the republish on connect)."""
    seen, out = set(), []
    for s in states:
        key = (s["state"], s["seq"])
        if s["seq"] is not None and key not in seen:
            seen.add(key)
            out.append(s)
    return out


def test_one_capped_retained_jpeg_per_configured_state_change(tmp_path, broker):
    sub = PropsSubscriber(broker.port).start()
    snap = {"enabled": True, "labels": SNAP_LABELS, "max_bytes": MAX_BYTES, "roi_only": True}
    cfg = demo_config(broker.port, realtime=True)
    cfg["cameras"] = {"qc": {**cfg["cameras"]["conveyor"], "snapshot": snap,
                             "smoothing": {"method": "none"}},
                      "plain": {**cfg["cameras"]["conveyor"], "smoothing": {"method": "none"}}}
    if ROI is not None:
        cfg["cameras"]["qc"]["roi"] = ROI
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)))
    daemon.start()
    try:
        time.sleep(9)  # 15 fps: about 135 frames, the label changes every 20-60 frames
    finally:
        daemon.stop()
    try:
        changes = _changes([m.json for m in sub.on("/qc/state")])
        wanted = [c for c in changes if c["state"] in SNAP_LABELS]
        assert len(wanted) >= 2, changes  # the video shows dented, then misaligned, ...
        assert len(changes) > len(wanted)  # ... and ok in between, which sends nothing
        snaps: list[Message] = sub.on("/qc/snapshot")
        assert len(snaps) == len(wanted), ([c["state"] for c in changes], len(snaps))
        assert sub.on("/plain/snapshot") == []  # opt-in per camera
        props = [p for t, p in sub.props if t.endswith("/qc/snapshot")]
        for msg, prop, change in zip(snaps, props, wanted):
            assert msg.topic == "edged/test-node/qc/snapshot"
            assert len(msg.payload) <= MAX_BYTES
            image = cv2.imdecode(np.frombuffer(msg.payload, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None
            if ROI is not None:  # roi_only: just the region (maybe scaled to fit the cap)
                assert abs(image.shape[1] / image.shape[0] - ROI[2] / ROI[3]) < 0.05
            else:
                assert abs(image.shape[1] / image.shape[0] - 320 / 240) < 0.05
            assert prop["content_type"] == "image/jpeg"
            # The very result (and frame) that changed the state.
            assert prop["state"] == change["state"] == prop["label"]
            assert int(prop["seq"]) == change["seq"]
    finally:
        sub.stop()
    late = Subscriber(broker.port, "edged/+/+/snapshot", "late").start()
    try:
        assert late.wait_for(lambda: late.messages, 5)
        assert len(late.messages) == 1 and late.messages[0].retain
        assert late.messages[0].payload == snaps[-1].payload
    finally:
        late.stop()


def test_last_snapshot_is_retained_again_after_a_broker_restart(tmp_path, broker):
    """A broker without persistence forgets retained messages; edged sends the last snapshot
    again when it reconnects (like the retained state)."""
    snap = {"enabled": True, "labels": ["dented"]}  # frames 0-39, then not for ~100 frames
    cfg = demo_config(broker.port, realtime=True, snapshot=snap, smoothing={"method": "none"})
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)))
    first = Subscriber(broker.port, "edged/+/+/snapshot", "first").start()
    daemon.start()
    try:
        assert first.wait_for(lambda: first.messages, 5)
        sent = first.messages[0].payload
        first.stop()
        broker.stop()
        time.sleep(0.5)
        broker.start()
        late = Subscriber(broker.port, "edged/+/+/snapshot", "late").start()
        try:
            assert late.wait_for(lambda: late.messages, 5), "snapshot not sent again"
            assert late.messages[0].payload == sent  # live or retained: edged may be quicker
        finally:
            late.stop()
        check = Subscriber(broker.port, "edged/+/+/snapshot", "check").start()
        try:
            assert check.wait_for(lambda: check.messages, 5)
            assert check.messages[0].retain and check.messages[0].payload == sent
        finally:
            check.stop()
    finally:
        daemon.stop()
