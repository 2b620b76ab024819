"""The live view with a camera that has regions: each outlined with its label and score on
the frame, and listed in /api/status with its newest result and state."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edged.app.cameras import CameraSet
from edged.app.events import Events, ResultPublished
from edged.config import CameraConfig, StateTopicConfig, WebConfig
from edged.frame import Frame
from edged.mqtt.contract import Topics
from edged.mqtt.extensions.state import StateTracker
from edged.service.metrics import Metrics
from edged.web.imaging import ROI_COLOR
from edged.web.server import LiveView


class _Link:
    topics = Topics("edged", "n")

    def __init__(self) -> None:
        self.sent = []

    def publish_now(self, msg) -> bool:  # noqa: ANN001
        self.sent.append(msg)
        return True


def test_status_and_image_show_each_region_with_its_label_score_and_state():
    cfg = CameraConfig(source="a.mp4", regions={
        "left": {"box": [0, 0, 160, 240]}, "right": {"fraction": [0.5, 0, 0.5, 1]},
        "far": {"box": [300, 0, 100, 10]}}, smoothing={"method": "none"})
    image = np.zeros((240, 320, 3), np.uint8)
    cam = SimpleNamespace(name="qc", cfg=cfg, last_frame=Frame(image, 3, 0.0, 1.0))
    cameras = CameraSet()
    cameras.add(cam, None)  # type: ignore[arg-type]
    events, metrics = Events(), Metrics()
    state = StateTracker(_Link(), events, StateTopicConfig(), cameras, metrics)
    view = LiveView(WebConfig(enabled=True), "n", cameras, metrics.registry, events, state)
    state.start()
    view.start()
    try:
        result = {"label": "dented", "score": 0.875, "seq": 7, "ts": 1.0,
                  "top_k": [{"label": "dented", "score": 0.875}]}
        events.emit(ResultPublished("qc", Frame(image, 3, 0.0, 1.0, box=(0, 0, 160, 240),
                                                region_name="left"), result, "left"))
        for region in ("right", "left"):  # the same frame again: one frame for the fps
            events.emit(ResultPublished("qc", Frame(image, 3, 0.0, 1.0, region_name=region),
                                        result, region))
        assert len(view._result_times["qc"]) == 1
        entry = view.status()["cameras"][0]
        regions = {r["name"]: r for r in entry["regions"]}
        assert regions["left"] == {"name": "left", "box": [0, 0, 160, 240], "label": "dented",
                                   "score": 0.875, "seq": 7, "state": "dented",
                                   "state_score": 0.875}
        assert regions["right"]["box"] == [160, 0, 160, 240]
        assert regions["right"]["label"] == "dented"
        assert regions["far"]["box"] is None  # does not fit this frame: not drawn
        assert entry["size"] == [320, 240] and entry["fps"] == 0.0
        # The view image: both regions outlined; the labelled one carries its text.
        import cv2
        encoded = view._cache("qc").get(cam.last_frame, view._overlays("qc"))
        got = cv2.imdecode(np.frombuffer(encoded.jpeg, np.uint8), cv2.IMREAD_COLOR)
        amber = np.all(np.abs(got.astype(int) - ROI_COLOR) < 60, axis=2)
        assert amber[120, 0:3].any() and amber[120, 157:163].any()  # edges of left/right
        assert amber[0:12, 0:80].mean() > 0.3  # the label's background at left's corner
        assert np.array_equal(image, np.zeros_like(image))  # the frame itself is untouched
    finally:
        view.stop()
        state.stop()
