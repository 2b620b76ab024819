"""The part of a frame a camera classifies: rotate, flip, then the ROI box (pure functions).

Rotation and flip come first so that the ROI is given in the upright picture a person sees.
The ROI becomes a box on the frame (clipped to it; one wholly outside is an error): the frame
keeps the whole upright picture and the box, so inference crops it once (a view, no copy) and
the live view and snapshots draw or crop the very same box.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edged.frame import Box

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIP = {"horizontal": 1, "vertical": 0, "both": -1}


def clip_box(roi: Sequence[int], width: int, height: int) -> Box:
    """The ROI `[x, y, w, h]` clipped to a `width` x `height` frame; ValueError if outside."""
    x, y, w, h = (int(v) for v in roi)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x >= width or y >= height or x1 <= x or y1 <= y:
        raise ValueError(f"roi {list(roi)} lies outside the {width}x{height} frame")
    return x, y, x1 - x, y1 - y


def upright(image: np.ndarray, rotate: int = 0, flip: str = "none") -> np.ndarray:
    """The picture as a person sees it: rotated (clockwise degrees), then flipped."""
    if rotate:
        image = cv2.rotate(image, _ROTATE[rotate])
    if flip != "none":
        image = cv2.flip(image, _FLIP[flip])
    return image


def crop(image: np.ndarray, roi: Sequence[int]) -> np.ndarray:
    """The ROI of `image` as a view (no copy)."""
    x, y, w, h = clip_box(roi, image.shape[1], image.shape[0])
    return image[y:y + h, x:x + w]


def view(image: np.ndarray, rotate: int = 0, flip: str = "none",
         roi: Sequence[int] | None = None) -> np.ndarray:
    """What the model sees of a raw frame: upright, then cropped to the ROI."""
    image = upright(image, rotate, flip)
    return crop(image, roi) if roi is not None else image
