"""The Source seam: something that yields frames, opened and closed by its camera."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from edged.config import CameraConfig
from edged.errors import SourceError

SOURCES: dict[str, type[Source]] = {}


@dataclass
class Frame:
    image: np.ndarray  # BGR (or gray) uint8, as decoded
    index: int  # position in its source, from 0
    ts: float  # capture wall time, epoch seconds
    mono: float  # capture time on the monotonic clock (for ages and latency)
    name: str | None = None  # file name, for image folders


class Source(ABC):
    """A frame source. `open()` and `read()` raise SourceError; `close()` is idempotent."""

    key: ClassVar[str]
    live: ClassVar[bool] = False  # live sources are reopened on failure and drop stale frames

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if getattr(cls, "key", None):
            SOURCES[cls.key] = cls

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg

    @classmethod
    @abstractmethod
    def accepts(cls, source: str | int) -> bool:
        """Whether this kind handles the configured `source` value."""

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> tuple[np.ndarray, str | None] | None:
        """The next image and its file name (or None); None at the end of a finite source."""

    @abstractmethod
    def close(self) -> None: ...

    @property
    def fps(self) -> float:
        """The source's own frame rate, 0 when unknown."""
        return 0.0

    def describe(self) -> str:
        """The source for log lines (credentials removed)."""
        return str(self.cfg.source)


def make_source(cfg: CameraConfig) -> Source:
    # Importing the implementations registers them; kept out of package import.
    from edged.sources import images, stream, video  # noqa: F401

    for cls in (SOURCES["stream"], SOURCES["images"], SOURCES["video"]):
        if cls.accepts(cfg.source):
            return cls(cfg)
    raise SourceError(f"no source kind handles {cfg.source!r}")
