"""V4L2 devices (/dev/videoN or an index), with pixel format, resolution and rate settable."""

from __future__ import annotations

import os

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edged.config.base import _Strict
from edged.config.camera import CameraConfig
from edged.capture.sources.capture import CaptureSource
from edged.capture.sources.failures import SourceFailure



class V4l2Config(_Strict):
    pixel_format: str | None = Field(
        None, min_length=4, max_length=4, description="FOURCC to ask for, e.g. MJPG or YUYV."
    )
    width: int | None = Field(None, gt=0, description="Width to ask the device for.")
    height: int | None = Field(None, gt=0, description="Height to ask the device for.")
    fps: float | None = Field(None, gt=0, description="Frame rate to ask the device for.")



class V4l2CameraConfig(CameraConfig):
    """A V4L2 device: /dev/videoN or its index."""

    type: Literal["v4l2"] = "v4l2"
    v4l2: V4l2Config = Field(
        default_factory=lambda: V4l2Config(), description="V4L2 device settings."
    )

    def known_size(self) -> tuple[int, int] | None:
        if self.v4l2.width is None or self.v4l2.height is None:
            return None
        return self.upright(self.v4l2.width, self.v4l2.height)


def device_path(source: str | int) -> str:
    return f"/dev/video{source}" if isinstance(source, int) else str(source)


def apply_settings(cap: cv2.VideoCapture, settings: V4l2Config, timeout_s: float) -> list[str]:
    """Ask the device for the configured format; the names of settings it refused.

    The pixel format goes first: a device lists its sizes and rates per format.
    """
    refused = []
    asks: list[tuple[str, int, float]] = []
    if settings.pixel_format:
        asks.append(("pixel_format", cv2.CAP_PROP_FOURCC,
                     cv2.VideoWriter_fourcc(*settings.pixel_format)))
    if settings.width:
        asks.append(("width", cv2.CAP_PROP_FRAME_WIDTH, settings.width))
    if settings.height:
        asks.append(("height", cv2.CAP_PROP_FRAME_HEIGHT, settings.height))
    if settings.fps:
        asks.append(("fps", cv2.CAP_PROP_FPS, settings.fps))
    for name, prop, value in asks:
        if not cap.set(prop, value):
            refused.append(name)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # honoured by V4L2; the capture loop drains anyway
    cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000))
    return refused


class V4l2Source(CaptureSource):
    key = "v4l2"
    config_model = V4l2CameraConfig
    priority = 30
    live = True

    cfg: V4l2CameraConfig

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self.refused: list[str] = []

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return isinstance(source, int) or str(source).startswith("/dev/")

    def describe(self) -> str:
        return device_path(self.cfg.source)

    def open(self) -> None:
        path = device_path(self.cfg.source)
        if not os.path.exists(path):
            raise SourceFailure(f"{path}: no such device", "not_found")
        if not os.access(path, os.R_OK | os.W_OK):
            raise SourceFailure(f"{path}: permission denied (is the user in the video group?)",
                                "auth")
        cap = cv2.VideoCapture(path, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceFailure(f"{path}: cannot open as a V4L2 capture device", "error")
        self.refused = apply_settings(cap, self.cfg.v4l2, self.cfg.timeout_s)
        self._cap = cap

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._cap is None:
            raise SourceFailure("not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            gone = not os.path.exists(device_path(self.cfg.source))
            raise SourceFailure(f"{self.describe()}: " + ("device unplugged" if gone else
                                "no frame in time"), "not_found" if gone else "timeout")
        return image, None
