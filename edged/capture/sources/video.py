"""A video file: decoded with OpenCV frame by frame, or, with `realtime: true`, read through
PyAV like a camera (paced at the file's own timestamps, decode policy, pts and lag)."""

from __future__ import annotations

import os

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edged.config.camera import CameraConfig, is_path_source
from edged.errors import SourceError
from edged.capture.sources.avstream import (
    AvStream,
    LiveVideoSettings,
    Picture,
    av_error_kind,
    stream_for,
)
from edged.capture.sources.capture import CaptureSource
from edged.capture.sources.failures import SourceFailure


class VideoCameraConfig(CameraConfig, LiveVideoSettings):
    type: Literal["video"] = "video"
    loop: bool = Field(False, description="Files: start over at the end.")
    realtime: bool = Field(False, description="Files: pace at the file's own frame rate.")


class VideoFileSource(CaptureSource):
    key = "video"
    config_model = VideoCameraConfig
    priority = 90  # any path that no other kind takes

    cfg: VideoCameraConfig

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._av: AvStream | None = None

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return is_path_source(source)

    @property
    def timed(self) -> bool:  # type: ignore[override]
        return self._av is not None

    @property
    def paced(self) -> bool:
        return self.cfg.realtime

    @property
    def stream(self) -> AvStream | None:  # type: ignore[override]
        return self._av

    def open(self) -> None:
        path = str(self.cfg.source)
        if not os.path.isfile(path):
            raise SourceError(f"{path}: no such video file")
        if self.cfg.realtime:
            av = stream_for(self.cfg, path, {}, paced=True)
            try:
                av.open()
            except SourceError:
                raise
            except Exception as exc:  # noqa: BLE001 - PyAV's errors, one line
                raise SourceFailure(f"{path}: cannot open as a video ({exc})",
                                    av_error_kind(exc)) from None
            self._av = av
            return
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{path}: cannot open as a video")
        self._cap = cap

    def read_picture(self) -> Picture | None:
        if self._av is None:
            raise SourceError("not open")
        try:
            return self._av.next()
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt packet: counted, not fatal
            raise SourceFailure(f"{self.cfg.source}: {exc}", av_error_kind(exc)) from None

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._av is not None:
            picture = self.read_picture()
            return None if picture is None else (picture.bgr(), None)
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

    @property
    def fps(self) -> float:
        if self._av is not None:
            return self._av.fps
        return super().fps

    def close(self) -> None:
        if self._av is not None:
            av, self._av = self._av, None
            av.close()
        super().close()
