"""A reload goes through the same build as a start: after each kind of config change, every
consumer (live view, Home Assistant, snapshots, commands, state, metrics) sees the pipeline
as a fresh start would have made it. The daemon runs in-process on the demo video against a
real mosquitto; each test names the config-diff field it changes."""

from __future__ import annotations

import copy
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edged.app.daemon import Daemon
from edged.config import load_config
from edged.web.imaging import ROI_COLOR
from tests.conftest import DEMO, demo_config, wait_until, write_config
from tests.helpers.subscriber import Subscriber


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def _config(port: int) -> dict:
    cfg = demo_config(port, loop=True, realtime=True, smoothing={"method": "none"})
    cfg["web"] = {"enabled": True}
    cfg["mqtt"]["homeassistant"] = {"enabled": True}
    cfg["mqtt"]["commands"] = {"enabled": True}
    return cfg


class _Running:
    def __init__(self, tmp_path: Path, data: dict) -> None:
        self.path = tmp_path / "c.yaml"
        self.data = data
        self.daemon = Daemon(load_config(write_config(self.path, data)), CollectorRegistry())

    def __enter__(self) -> _Running:
        self.daemon.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()

    def reload(self, data: dict) -> None:
        self.data = data
        assert self.daemon.apply(load_config(write_config(self.path, data)))

    @property
    def port(self) -> int:
        assert self.daemon.metrics_server is not None
        return self.daemon.metrics_server.port

    def frame_of(self, camera: str) -> bool:
        return self.daemon.camera_set.last_frame(camera) is not None


def test_metrics_changed_keeps_the_live_view_on_the_new_listener(tmp_path, broker):
    """Bug: after a reload that moved metrics.listen, `/` answered with metrics text."""
    with _Running(tmp_path, _config(broker.port)) as run:
        old = run.port
        assert _get(old, "/")[1].startswith("text/html")
        moved = copy.deepcopy(run.data)
        moved["metrics"]["listen"] = "127.0.0.1:0"
        moved["web"]["stream_fps"] = 4.0  # a web change: new view, so a new listener too
        run.reload(moved)
        assert run.port != old
        status, ctype, body = _get(run.port, "/")
        assert status == 200 and ctype.startswith("text/html") and b"<html" in body.lower()
        assert wait_until(lambda: run.frame_of("conveyor"), 10)
        status, ctype, _ = _get(run.port, "/cameras/conveyor/snapshot.jpg")
        assert status == 200 and ctype == "image/jpeg"
        assert b"edged_frames_captured_total" in _get(run.port, "/metrics")[2]
        assert json.loads(_get(run.port, "/api/status")[2])["stream_fps"] == 4.0
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{old}/", timeout=2)


def test_cameras_added_are_seen_by_view_home_assistant_state_and_commands(tmp_path, broker):
    """Bug: a camera added by reload was unknown to the view (404), discovery and snapshots."""
    sub = Subscriber(broker.port, "#", "consumers").start()
    try:
        with _Running(tmp_path, _config(broker.port)) as run:
            assert sub.wait_for(lambda: sub.on("/conveyor/config"), 10)
            added = copy.deepcopy(run.data)
            added["cameras"]["second"] = {
                "source": str(DEMO / "conveyor.mp4"), "loop": True, "realtime": True,
                "smoothing": {"method": "none"},
                "snapshot": {"enabled": True, "labels": [], "max_bytes": 200000}}
            run.reload(added)
            # Live view: the new camera's page data and frames.
            assert wait_until(lambda: run.frame_of("second"), 10)
            assert _get(run.port, "/cameras/second/snapshot.jpg")[0] == 200
            names = [c["name"] for c in json.loads(_get(run.port, "/api/status")[2])["cameras"]]
            assert sorted(names) == ["conveyor", "second"]
            # Home Assistant: a sensor for it; state: its retained state; snapshots: one.
            assert sub.wait_for(lambda: sub.on("/second/config"), 10)
            assert sub.wait_for(lambda: sub.on("/second/state"), 10)
            assert sub.wait_for(lambda: sub.on("/second/snapshot"), 15)
            # Commands: classify on the new camera answers with a result.
            sub.client.publish("edged/test-node/second/cmd/classify", b"{}", qos=1)
            assert sub.wait_for(lambda: sub.on("/second/reply/classify"), 10)
            reply = sub.on("/second/reply/classify")[-1].json
            assert reply["ok"] is True and reply["result"]["label"]
            # Metrics: the camera's series exist from its start.
            text = _get(run.port, "/metrics")[2].decode()
            assert 'edged_frames_captured_total{camera="second"}' in text
    finally:
        sub.stop()


def test_cameras_restarted_feed_the_view_from_the_new_capture(tmp_path, broker):
    """Bug: a camera restarted by reload left the view on the old camera's frozen frame."""
    with _Running(tmp_path, _config(broker.port)) as run:
        assert wait_until(lambda: run.frame_of("conveyor"), 10)
        old_camera = run.daemon.camera_set.get("conveyor")
        changed = copy.deepcopy(run.data)
        changed["cameras"]["conveyor"]["fps"] = 10  # own setting: the camera restarts
        run.reload(changed)
        new_camera = run.daemon.camera_set.get("conveyor")
        assert new_camera is not old_camera and old_camera not in run.daemon.cameras
        first = old_camera.last_frame
        assert wait_until(lambda: new_camera.last_frame is not None, 10)
        assert run.daemon.camera_set.last_frame("conveyor") is not first
        # The view serves the new camera's frames: its index restarts from the new capture.
        status = json.loads(_get(run.port, "/api/status")[2])["cameras"][0]
        assert status["name"] == "conveyor" and status["frame_age_s"] < 5
        index = status["frame"]
        assert wait_until(lambda: json.loads(_get(run.port, "/api/status")[2])["cameras"][0][
            "frame"] > index, 5)  # moving, not frozen


def test_cameras_rewired_keep_max_age_ms(tmp_path, broker):
    """Bug: a reload that changed only a camera's model dropped its max_age_ms."""
    data = _config(broker.port)
    data["cameras"]["conveyor"]["max_age_ms"] = 750
    with _Running(tmp_path, data) as run:
        assert run.daemon.pools["default"].scheduler.lane("conveyor")[1] == 0.75
        swapped = copy.deepcopy(run.data)
        swapped["models"]["default"]["top_k"] = 2  # the model changes, the camera does not
        run.reload(swapped)
        lane = run.daemon.pools["default"].scheduler.lane("conveyor")
        assert lane is not None and lane[1] == 0.75
        assert run.daemon.camera_set.model_of("conveyor").top_k == 2


def test_roi_is_applied_once_for_snapshots_and_the_view(tmp_path, broker):
    """Bug: roi_only snapshots and the view cropped the ROI twice (240x180 came out 200x150)
    and the view drew its outline inside the crop. Checked on pixels."""
    roi = [40, 30, 240, 180]
    sub = Subscriber(broker.port, "edged/+/+/snapshot", "snaps").start()
    data = _config(broker.port)
    data["cameras"]["conveyor"].update(
        roi=roi, snapshot={"enabled": True, "labels": [], "roi_only": True,
                           "max_bytes": 500000})
    try:
        with _Running(tmp_path, data) as run:
            assert sub.wait_for(lambda: sub.on("/conveyor/snapshot"), 15)
            snap = cv2.imdecode(np.frombuffer(sub.on("/conveyor/snapshot")[0].payload,
                                              np.uint8), cv2.IMREAD_COLOR)
            assert snap.shape[:2] == (180, 240)  # exactly the ROI
            frame = run.daemon.camera_set.last_frame("conveyor")
            assert frame.box == tuple(roi) and frame.image.shape[:2] == (240, 320)
            # The snapshot shows the ROI's pixels, not a crop of the crop.
            x, y, w, h = roi
            expected = frame.image[y:y + h, x:x + w]
            assert snap.shape == expected.shape
            _, _, jpeg = _get(run.port, "/cameras/conveyor/snapshot.jpg")
            view = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            assert view.shape[:2] == (240, 320)  # the whole upright frame
            amber = np.all(np.abs(view.astype(int) - ROI_COLOR) < 60, axis=2)
            assert amber[y - 3:y + 4, x:x + w].any(0).mean() > 0.8  # top edge at the ROI
            assert amber[y + h - 4:y + h + 3, x:x + w].any(0).mean() > 0.8  # bottom edge
            assert amber[:y - 5].sum() == 0  # nothing drawn above it
    finally:
        sub.stop()


def test_cameras_removed_leave_every_consumer(tmp_path, broker):
    data = _config(broker.port)
    data["cameras"]["second"] = dict(data["cameras"]["conveyor"])
    with _Running(tmp_path, data) as run:
        assert wait_until(lambda: run.frame_of("second"), 10)
        fewer = copy.deepcopy(run.data)
        del fewer["cameras"]["second"]
        run.reload(fewer)
        assert "second" not in run.daemon.camera_set and len(run.daemon.cameras) == 1
        assert _get(run.port, "/cameras/second/snapshot.jpg")[0] == 404
        names = [c["name"] for c in json.loads(_get(run.port, "/api/status")[2])["cameras"]]
        assert names == ["conveyor"]
        assert run.daemon.readiness()["cameras"] == ["conveyor"]
        assert not any(t.name == "camera-second" for t in threading.enumerate())


def test_models_added_and_removed_with_their_cameras(tmp_path, broker):
    sub = Subscriber(broker.port, "edged/+/+/result", "results").start()
    try:
        with _Running(tmp_path, _config(broker.port)) as run:
            more = copy.deepcopy(run.data)
            more["models"]["other"] = dict(more["models"]["default"], top_k=1)
            more["cameras"]["side"] = dict(more["cameras"]["conveyor"], model="other")
            run.reload(more)
            assert sorted(run.daemon.pools) == ["default", "other"]
            assert sub.wait_for(lambda: sub.on("/side/result"), 10)
            assert len(sub.on("/side/result")[-1].json["top_k"]) == 1
            assert run.daemon.camera_set.model_of("side").name == "other"
            fewer = copy.deepcopy(more)
            del fewer["cameras"]["side"]
            run.reload(fewer)
            assert sorted(run.daemon.pools) == ["default"]
            assert not any(t.name.startswith("worker-other")
                           for t in threading.enumerate())
            assert run.daemon.readiness()["models"] == ["default"]
    finally:
        sub.stop()


def test_mqtt_changed_moves_every_extension_to_the_new_broker(tmp_path, broker):
    from tests.helpers.broker import Mosquitto

    (tmp_path / "b2").mkdir()
    other = Mosquitto(tmp_path / "b2").start()
    sub = Subscriber(other.port, "#", "on-new").start()
    try:
        with _Running(tmp_path, _config(broker.port)) as run:
            moved = copy.deepcopy(run.data)
            moved["mqtt"]["port"] = other.port
            run.reload(moved)
            # Retained state and discovery re-sent on the new broker, results flow there,
            # and commands are answered there.
            assert sub.wait_for(lambda: sub.on("/conveyor/state"), 10)
            assert sub.wait_for(lambda: sub.on("/conveyor/config"), 10)
            assert sub.wait_for(lambda: sub.on("/conveyor/result"), 10)
            assert [m.json["state"] for m in sub.on("/status")][-1] == "online"
            sub.client.publish("edged/test-node/conveyor/cmd/state", b"", qos=1)
            assert sub.wait_for(lambda: sub.on("/conveyor/reply/state"), 10)
            assert run.daemon.readiness()["mqtt_connected"] is True
    finally:
        sub.stop()
        other.stop()


def test_extensions_changed_turns_commands_on_and_log_level_changed(tmp_path, broker):
    import logging

    data = _config(broker.port)
    data["mqtt"]["commands"] = {"enabled": False}
    sub = Subscriber(broker.port, "#", "cmds").start()
    try:
        with _Running(tmp_path, data) as run:
            sub.client.publish("edged/test-node/conveyor/cmd/state", b"", qos=1)
            assert not sub.wait_for(lambda: sub.on("/reply/state"), 1.5)
            on = copy.deepcopy(run.data)
            on["mqtt"]["commands"] = {"enabled": True}
            on["log_level"] = "warning"
            run.reload(on)
            assert logging.getLogger().level == logging.WARNING
            sub.client.publish("edged/test-node/conveyor/cmd/state", b"", qos=1)
            assert sub.wait_for(lambda: sub.on("/conveyor/reply/state"), 10)
            assert sub.on("/conveyor/reply/state")[-1].json["ok"] is True
            # The rebuilt state tracker keeps feeding the view and the state topic.
            n = len(sub.on("/conveyor/state"))
            assert sub.wait_for(lambda: len(sub.on("/conveyor/state")) > n, 15)
    finally:
        logging.getLogger().setLevel(logging.INFO)
        sub.stop()
