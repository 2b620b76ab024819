"""A video file, decoded with OpenCV."""

from __future__ import annotations

import os

import cv2
import numpy as np

from edged.config import is_path_source
from edged.errors import SourceError
from edged.capture.sources.capture import CaptureSource


class VideoFileSource(CaptureSource):
    key = "video"

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return is_path_source(source)

    def open(self) -> None:
        path = str(self.cfg.source)
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such video file")
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{path}: cannot open as a video")
        self._cap = cap

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._cap is None:
            raise SourceError("not open")
        ok, image = self._cap.read()
        if ok:
            return image, None
        if self.cfg.loop and self._cap.get(cv2.CAP_PROP_POS_FRAMES) > 0:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if ok:
                return image, None
        return None
