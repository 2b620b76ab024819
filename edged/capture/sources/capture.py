"""The common part of sources read through one cv2.VideoCapture (files, V4L2, RTSP,
GStreamer): the capture handle, its frame rate, and an idempotent close."""

from __future__ import annotations

import cv2

from edged.capture.sources.base import Source


class CaptureSource(Source):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self._cap: cv2.VideoCapture | None = None

    @property
    def fps(self) -> float:
        return float(self._cap.get(cv2.CAP_PROP_FPS)) if self._cap is not None else 0.0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
