"""The part of a frame a camera classifies: rotate, flip, then crop to the ROI (pure functions).

Rotation and flip come first so that the ROI is given in the upright picture a person sees.
The ROI is a view (no copy); it is clipped to the frame, and one wholly outside is an error.
"""

from __future__ import annotations

import cv2
import numpy as np

_ROTATE = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
_FLIP = {"horizontal": 1, "vertical": 0, "both": -1}


def crop(image: np.ndarray, roi: list[int] | tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = roi
    height, width = image.shape[:2]
    x1, y1 = min(x + w, width), min(y + h, height)
    if x >= width or y >= height or x1 <= x or y1 <= y:
        raise ValueError(f"roi {list(roi)} lies outside the {width}x{height} frame")
    return image[y:y1, x:x1]


def view(image: np.ndarray, rotate: int = 0, flip: str = "none",
         roi: list[int] | None = None) -> np.ndarray:
    if rotate:
        image = cv2.rotate(image, _ROTATE[rotate])
    if flip != "none":
        image = cv2.flip(image, _FLIP[flip])
    if roi is not None:
        image = crop(image, roi)
    return image
