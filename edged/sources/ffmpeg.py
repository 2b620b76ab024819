"""Opening network streams with OpenCV's FFmpeg backend: timeouts and per-camera options.

OpenCV passes FFmpeg demuxer options only through the process-wide environment variable
OPENCV_FFMPEG_CAPTURE_OPTIONS, which it reads inside each VideoCapture open. So that two
cameras can use different options (e.g. RTSP over TCP for one and UDP for another), the
variable is set just before the open and restored after, under one lock: opens of FFmpeg
streams are serialized (reads are not). A user's own value of the variable is kept and the
camera's options are appended to it.
"""

from __future__ import annotations

import os
import threading

import cv2

_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPEN_LOCK = threading.Lock()


def capture_options(options: dict[str, str], base: str | None) -> str:
    """'key;value|key;value' as OpenCV expects; the camera's keys win over the user's."""
    pairs: dict[str, str] = {}
    for item in (base or "").split("|"):
        if ";" in item:
            key, value = item.split(";", 1)
            pairs[key] = value
    pairs.update(options)
    return "|".join(f"{k};{v}" for k, v in pairs.items())


def open_ffmpeg(url: str, timeout_s: float, options: dict[str, str]) -> cv2.VideoCapture:
    """A VideoCapture on `url` (maybe not opened: check isOpened()), with open and read
    timeouts so a dead peer makes open() or read() return instead of hanging."""
    ms = max(1, int(timeout_s * 1000))
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
    with _OPEN_LOCK:
        saved = os.environ.get(_ENV)
        os.environ[_ENV] = capture_options(options, saved)
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        finally:
            if saved is None:
                del os.environ[_ENV]
            else:
                os.environ[_ENV] = saved


def read_frame(cap: cv2.VideoCapture):  # noqa: ANN201
    """One decoded frame or None."""
    ok, image = cap.read()
    return image if ok and image is not None else None
