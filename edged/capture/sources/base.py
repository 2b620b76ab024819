"""The Source seam: something that yields frames, opened and closed by its camera."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from edged.capture.decode import DecodeTarget
from edged.config import CameraConfig
from edged.errors import SourceError

from edged.capture.sources.url import redact

SOURCES: dict[str, type[Source]] = {}


class _Idle:
    """What read() returns when a source that waits (a hot folder) has nothing yet."""

    def __repr__(self) -> str:
        return "IDLE"


IDLE = _Idle()


class Source(ABC):
    """A frame source. `open()` and `read()` raise SourceError; `close()` is idempotent."""

    key: ClassVar[str]
    live: ClassVar[bool] = False  # live sources are reopened on failure and drop stale frames
    # Timed sources (video through PyAV) have read_picture(): a Picture with its pts and lag,
    # converted to an array only if the camera takes it, and `stream` (lag_now()).
    timed: bool = False
    stream = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "key", None):
            SOURCES[cls.key] = cls

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.decode_target = DecodeTarget()  # the model input size, for reduced JPEG decodes

    @classmethod
    @abstractmethod
    def accepts(cls, source: str | int) -> bool:
        """Whether this kind handles the configured `source` value."""

    def check(self) -> None:
        """Raise SourceError if this kind can never work here (checked once, at start)."""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> tuple[np.ndarray, str | None] | None:
        """The next image and its file name (or None); None at the end of a finite source."""

    @abstractmethod
    def close(self) -> None: ...

    def read_picture(self):  # noqa: ANN201 - Picture | None (end of a file) | IDLE
        raise NotImplementedError(f"{self.key} is not a timed source")

    @property
    def fps(self) -> float:
        """The source's own frame rate, 0 when unknown."""
        return 0.0

    def describe(self) -> str:
        """The source for log lines (credentials removed)."""
        return redact(str(self.cfg.source))


# Which kind handles a `source` when no `type` is given: the first that accepts it.
_ORDER = ("rtsp", "http", "v4l2", "gstreamer", "images", "video")


def make_source(cfg: CameraConfig) -> Source:
    # Importing the implementations registers them; kept out of package import.
    from edged.capture.sources import (  # noqa: F401
        gstreamer,
        hotfolder,
        images,
        mjpeg,
        rtsp,
        v4l2,
        video,
    )

    if cfg.type is not None:
        key = cfg.type
    else:
        key = next((k for k in _ORDER if SOURCES[k].accepts(cfg.source)), "")
        if not key:
            raise SourceError(f"no source kind handles {cfg.source!r}")
    if cfg.watch:
        if key != "images" or not isinstance(cfg.source, str):
            raise SourceError("watch: true needs an image folder as source")
        key = "hotfolder"
    return SOURCES[key](cfg)
