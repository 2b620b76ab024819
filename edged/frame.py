"""The pipeline's common currency: one captured frame, as every stage sees it.

It sits below every stage (capture makes it; inference, the MQTT side, snapshots and the web
view read it) so that no stage imports another to name it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # x, y, width, height in pixels of the upright image


@dataclass
class Frame:
    image: np.ndarray  # the upright picture (after rotate/flip), BGR or gray uint8
    index: int  # position in its source, from 0
    ts: float  # capture wall time, epoch seconds
    mono: float  # capture time on the monotonic clock (for ages and latency)
    name: str | None = None  # file name, for image folders
    on_done: Callable[[], None] | None = None  # called once its result is handed on
    box: Box | None = None  # the region the model classifies (clipped); None = all of it
    pts: float | None = None  # live sources: stream time since the first frame, seconds
    region_name: str | None = None  # the camera's named region it stands for, if any

    def region(self) -> np.ndarray:
        """The pixels the model classifies: a view into `image`, never a copy."""
        if self.box is None:
            return self.image
        x, y, w, h = self.box
        return self.image[y:y + h, x:x + w]


def subject(camera: str, region: str | None = None) -> str:
    """What has its own results, seq and state: a camera, or `camera/region`. Names cannot
    hold '/', so the key splits back unambiguously."""
    return camera if region is None else f"{camera}/{region}"


def split_subject(key: str) -> tuple[str, str | None]:
    camera, _, region = key.partition("/")
    return camera, region or None
