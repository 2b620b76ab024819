"""Opening network streams with OpenCV's FFmpeg backend: timeouts and per-camera options.

OpenCV passes FFmpeg demuxer options only through the process-wide environment variable
OPENCV_FFMPEG_CAPTURE_OPTIONS, which it reads inside each VideoCapture open. So that two
cameras can use different options (e.g. RTSP over TCP for one and UDP for another), the
variable is set just before the open and restored after the last concurrent open. Opens that
need the same options (the usual case: every camera on TCP) run concurrently, so a camera whose
open hangs until its timeout does not hold up the others; an open that needs different
options waits for the running ones (at most their open timeout). Reads are never held up. A
user's own value of the variable is kept and the camera's options are merged into it.
"""

from __future__ import annotations

import os
import threading

import cv2

_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class _SharedEnv:
    """Lets opens that want the same value of the variable overlap; others take turns."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._users = 0
        self._saved: str | None = None

    def acquire(self, options: dict[str, str]) -> None:
        with self._cond:
            while True:
                if self._users == 0:
                    self._saved = os.environ.get(_ENV)
                    self._value = capture_options(options, self._saved)
                    os.environ[_ENV] = self._value
                    break
                if self._value == capture_options(options, self._saved):
                    break
                self._cond.wait()
            self._users += 1

    def release(self) -> None:
        with self._cond:
            self._users -= 1
            if self._users == 0:
                if self._saved is None:
                    os.environ.pop(_ENV, None)
                else:
                    os.environ[_ENV] = self._saved
                self._cond.notify_all()


_OPEN_ENV = _SharedEnv()  # one per process, like the variable it guards


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
    _OPEN_ENV.acquire(options)
    try:
        return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
    finally:
        _OPEN_ENV.release()


def read_frame(cap: cv2.VideoCapture):  # noqa: ANN201
    """One decoded frame or None."""
    ok, image = cap.read()
    return image if ok and image is not None else None
