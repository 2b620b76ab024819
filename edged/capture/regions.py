"""A camera's regions on a frame (pure geometry): named rectangles of the upright picture,
in pixels or in fractions of its width and height, each becoming a crop box.

A region must lie wholly inside the frame: clipping it silently would classify other pixels
than the ones configured. Boxes are computed once per frame size, not per frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edged.config import RegionConfig
from edged.frame import Box


def region_box(region: RegionConfig, width: int, height: int) -> Box:
    """The region's box on a `width` x `height` frame; ValueError if it does not fit."""
    if region.fraction is not None:
        fx, fy, fw, fh = region.fraction
        x, y = int(round(fx * width)), int(round(fy * height))
        # Round the far edge, not the size, so regions that tile the frame tile it exactly.
        x1 = min(int(round((fx + fw) * width)), width)
        y1 = min(int(round((fy + fh) * height)), height)
        if x1 <= x or y1 <= y:
            raise ValueError(f"fraction {region.fraction} is less than a pixel of the "
                             f"{width}x{height} frame")
        return x, y, x1 - x, y1 - y
    assert region.box is not None  # the config model wants one of the two
    x, y, w, h = (int(v) for v in region.box)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise ValueError(f"box {list(region.box)} lies outside the {width}x{height} frame")
    return x, y, w, h


@dataclass(frozen=True)
class Placed:
    """The regions of one frame size: each region's box, or why it does not fit."""

    boxes: dict[str, Box]
    errors: dict[str, str]


def place(regions: Mapping[str, RegionConfig], width: int, height: int) -> Placed:
    boxes: dict[str, Box] = {}
    errors: dict[str, str] = {}
    for name, region in regions.items():
        try:
            boxes[name] = region_box(region, width, height)
        except ValueError as exc:
            errors[name] = str(exc)
    return Placed(boxes, errors)
