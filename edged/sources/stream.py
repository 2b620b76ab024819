"""Live sources opened by OpenCV: V4L2 devices (/dev/videoN or an index), RTSP and HTTP URLs."""

from __future__ import annotations

import re

import cv2
import numpy as np

from edged.errors import SourceError
from edged.sources.base import Source

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact(url: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://***@host/x"""
    return _CREDENTIALS.sub("***@", url)


class StreamSource(Source):
    key = "stream"
    live = True

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._cap: cv2.VideoCapture | None = None

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        if isinstance(source, int):
            return True
        return source.startswith("/dev/") or "://" in source

    def open(self) -> None:
        src = self.cfg.source
        if isinstance(src, int):
            cap = cv2.VideoCapture(src, cv2.CAP_V4L2)
        elif src.startswith("/dev/"):
            cap = cv2.VideoCapture(src, cv2.CAP_V4L2)
        else:
            cap = cv2.VideoCapture(src, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.describe()}: cannot open stream")
        # Honoured by some backends only; the camera's capture loop drains frames anyway.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._cap is None:
            raise SourceError("not open")
        ok, image = self._cap.read()
        if not ok or image is None:
            raise SourceError(f"{self.describe()}: stream ended or read failed")
        return image, None

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0

    def describe(self) -> str:
        return redact(str(self.cfg.source))

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
