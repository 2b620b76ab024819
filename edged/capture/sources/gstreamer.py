"""A GStreamer pipeline string ending in appsink, where OpenCV was built with GStreamer.

The pip wheels of OpenCV (opencv-python-headless) are built without GStreamer; then this kind
fails at start with one clear line instead of at every reconnect.
"""

from __future__ import annotations

import re

from typing import Literal

import cv2
import numpy as np

from edged.config.camera import CameraConfig
from edged.errors import SourceError
from edged.capture.sources.capture import CaptureSource
from edged.capture.sources.failures import SourceFailure
from edged.capture.sources.url import redact


def opencv_has_gstreamer(build_information: str | None = None) -> bool:
    info = build_information if build_information is not None else cv2.getBuildInformation()
    return re.search(r"^\s*GStreamer:\s*YES", info, re.MULTILINE) is not None


class GStreamerCameraConfig(CameraConfig):
    """An OpenCV GStreamer pipeline ending in appsink."""

    type: Literal["gstreamer"] = "gstreamer"


class GStreamerSource(CaptureSource):
    key = "gstreamer"
    config_model = GStreamerCameraConfig
    priority = 40
    live = True

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return isinstance(source, str) and " ! " in source and "://" not in source.split(" ")[0]

    def check(self) -> None:
        if not opencv_has_gstreamer():
            raise SourceError(
                f"OpenCV {cv2.__version__} was built without GStreamer, so a GStreamer "
                "pipeline cannot be used (the pip opencv-python-headless wheel has none); "
                "use an rtsp://, http:// or /dev/video source, or an OpenCV built with "
                "GStreamer")

    def describe(self) -> str:
        return redact(str(self.cfg.source))

    def open(self) -> None:
        self.check()
        cap = cv2.VideoCapture(str(self.cfg.source), cv2.CAP_GSTREAMER)
        if not cap.isOpened():
            cap.release()
            raise SourceFailure(f"{self.describe()}: the pipeline does not start", "error")
        self._cap = cap

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._cap is None:
            raise SourceFailure("not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceFailure(f"{self.describe()}: the pipeline stopped", "ended")
        return image, None
