"""Pure image helpers for the live view and snapshots: region of interest, scaling, JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

ROI_COLOR = (0, 200, 255)  # BGR amber: visible on most scenes


def roi_rect(roi: Sequence[float] | None, width: int, height: int
             ) -> tuple[int, int, int, int] | None:
    """The ROI `[x, y, w, h]` as integer pixels clipped to the frame, or None when unset or
    empty after clipping. Values all in 0..1 with one below 1 are fractions of the frame."""
    if roi is None or len(roi) != 4:
        return None
    x, y, w, h = (float(v) for v in roi)
    if all(0 <= v <= 1 for v in (x, y, w, h)) and min(w, h) < 1:
        x, y, w, h = x * width, y * height, w * width, h * height
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Gray or BGRA frames as 3-channel BGR (JPEG viewers expect colour)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def fit_width(image: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """Scaled down (never up) to at most `max_width` pixels wide; returns (image, scale)."""
    h, w = image.shape[:2]
    if w <= max_width:
        return image, 1.0
    scale = max_width / w
    size = (max_width, max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def view_image(image: np.ndarray, roi: Sequence[float] | None, max_width: int) -> np.ndarray:
    """What the live view shows: the frame scaled to `max_width` with the ROI outlined.
    Never modifies `image` (it is the camera's frame, shared with inference)."""
    h, w = image.shape[:2]
    rect = roi_rect(roi, w, h)
    out, scale = fit_width(as_bgr(image), max_width)
    if rect is not None:
        if out is image:
            out = image.copy()
        x, y, rw, rh = (int(round(v * scale)) for v in rect)
        thickness = max(2, out.shape[1] // 200)  # survives JPEG chroma subsampling
        cv2.rectangle(out, (x, y), (x + rw - 1, y + rh - 1), ROI_COLOR, thickness)
    return out


def crop_roi(image: np.ndarray, roi: Sequence[float] | None) -> np.ndarray:
    """The ROI of the frame (the whole frame when no ROI is set)."""
    h, w = image.shape[:2]
    rect = roi_rect(roi, w, h)
    if rect is None:
        return image
    x, y, rw, rh = rect
    return image[y:y + rh, x:x + rw]


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def encode_capped(image: np.ndarray, max_bytes: int,
                  qualities: Sequence[int] = (90, 75, 60, 45, 30)) -> bytes:
    """A JPEG of at most `max_bytes`: lower quality first, then 3/4 the size, repeated.
    Raises ValueError if even a tiny image does not fit (max_bytes absurdly small)."""
    current = as_bgr(image)
    while True:
        for quality in qualities:
            data = encode_jpeg(current, quality)
            if len(data) <= max_bytes:
                return data
        h, w = current.shape[:2]
        if w <= 16 or h <= 16:
            raise ValueError(f"cannot fit a JPEG into {max_bytes} bytes")
        size = (max(1, w * 3 // 4), max(1, h * 3 // 4))
        current = cv2.resize(current, size, interpolation=cv2.INTER_AREA)
