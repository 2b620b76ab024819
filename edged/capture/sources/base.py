"""The Source seam: something that yields frames, opened and closed by its camera."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from edged.capture.decode import DecodeTarget
from edged.config.camera import CameraConfig
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
    # The kind's own settings (a CameraConfig subclass in the kind's file), and where it comes
    # in when `type` is inferred from `source` (the first kind that accepts it, lowest first).
    config_model: ClassVar[type[CameraConfig]] = CameraConfig
    priority: ClassVar[int] = 100
    selectable: ClassVar[bool] = True  # a `type` of its own (the hot folder is `images`)
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

    def owned_by(self, camera: str) -> None:
        """The camera this source reads for (names the source's own threads, if any)."""

    @property
    def paced(self) -> bool:
        """Read at the source's own frame rate although it is a file (`realtime: true`)."""
        return False

    def read_picture(self):  # noqa: ANN201 - Picture | None (end of a file) | IDLE
        raise NotImplementedError(f"{self.key} is not a timed source")

    @property
    def fps(self) -> float:
        """The source's own frame rate, 0 when unknown."""
        return 0.0

    def describe(self) -> str:
        """The source for log lines (credentials removed)."""
        return redact(str(self.cfg.source))


def make_source(cfg: CameraConfig) -> Source:
    from edged.capture.sources.registry import source_class

    return source_class(cfg)(cfg)
