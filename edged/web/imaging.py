"""Pure image helpers for the live view and snapshots: the classified box outlined, scaling, JPEG."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edged.frame import Box

ROI_COLOR = (0, 200, 255)  # BGR amber: visible on most scenes


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


def _draw(out: np.ndarray, box: Box, scale: float, text: str | None) -> None:
    x, y, rw, rh = (int(round(v * scale)) for v in box)
    thickness = max(2, out.shape[1] // 200)  # survives JPEG chroma subsampling
    cv2.rectangle(out, (x, y), (x + rw - 1, y + rh - 1), ROI_COLOR, thickness)
    if text:
        font_scale = max(0.35, out.shape[1] / 1600)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(0, y)
        cv2.rectangle(out, (x, top), (x + tw + 4, top + th + base + 4), ROI_COLOR, -1)
        cv2.putText(out, text, (x + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (0, 0, 0), 1, cv2.LINE_AA)


def view_image(image: np.ndarray, box: Box | None, max_width: int,
               overlays: Sequence[tuple[Box, str | None]] = ()) -> np.ndarray:
    """What the live view shows: the upright frame scaled to `max_width` with the classified
    box (the frame's own, in its pixels) outlined, and each region of `overlays` outlined
    with its text (name, label, score). Never modifies `image`: it is the camera's frame,
    shared with inference."""
    out, scale = fit_width(as_bgr(image), max_width)
    if box is not None or overlays:
        if out is image:
            out = image.copy()
        if box is not None:
            _draw(out, box, scale, None)
        for region_box, text in overlays:
            _draw(out, region_box, scale, text)
    return out


def outlined(image: np.ndarray, overlays: Sequence[tuple[Box, str | None]]) -> np.ndarray:
    """A copy of `image` (full size) with each box outlined and labelled (snapshots)."""
    out = as_bgr(image)
    out = out.copy() if out is image else out
    for box, text in overlays:
        _draw(out, box, 1.0, text)
    return out


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
