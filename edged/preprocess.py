"""Frame to input tensor: pure functions.

The reference pipeline is BGR->RGB, bilinear resize of the whole frame, real = (px - mean) / std,
then quantize (round, clip). Because pixels are uint8, everything after the resize is a function
of one byte per channel, so it is folded into a 256-entry lookup table per channel that is built
once per model and applied in one pass straight into the interpreter's input buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MEAN = 127.5
DEFAULT_STD = 127.5


@dataclass(frozen=True)
class InputSpec:
    height: int
    width: int
    channels: int  # 1 (grayscale) or 3 (RGB)
    dtype: np.dtype
    scale: float  # quantization scale; 0 for float inputs
    zero_point: int


def _per_channel(value: float | list[float], channels: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(f"{name} has {arr.size} values for a {channels}-channel input")
    return arr


def build_lut(spec: InputSpec, mean: float | list[float], std: float | list[float]) -> np.ndarray:
    """A (256, channels) table: pixel value -> input tensor value, in the tensor's dtype.

    The arithmetic is float32 like the reference's, and np.round (half to even) like it.
    """
    px = np.arange(256, dtype=np.float32)[:, None]
    real = (px - _per_channel(mean, spec.channels, "mean")) / _per_channel(
        std, spec.channels, "std")
    if spec.dtype == np.float32:
        return real.astype(np.float32)
    info = np.iinfo(spec.dtype)
    return np.clip(np.round(real / spec.scale + spec.zero_point), info.min, info.max).astype(
        spec.dtype)


def resize(frame: np.ndarray, width: int, height: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of the whole frame (aspect is not kept), like the reference."""
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    return cv2.resize(frame, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def to_model_pixels(resized_bgr: np.ndarray, channels: int) -> np.ndarray:
    """BGR (or gray) uint8 -> the model's channel order: RGB, or one gray channel."""
    if resized_bgr.ndim == 2:
        resized_bgr = resized_bgr[:, :, None]
    if channels == 1:
        if resized_bgr.shape[2] == 1:
            return resized_bgr
        return cv2.cvtColor(resized_bgr, cv2.COLOR_BGR2GRAY)[:, :, None]
    if resized_bgr.shape[2] == 1:
        return cv2.cvtColor(resized_bgr, cv2.COLOR_GRAY2RGB)
    if resized_bgr.shape[2] == 4:
        return cv2.cvtColor(resized_bgr, cv2.COLOR_BGRA2RGB)
    return resized_bgr[:, :, ::-1]


def apply_lut(pixels: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """out[y, x, c] = lut[pixels[y, x, c], c], written in place into `out`."""
    if lut.dtype.itemsize == 1 and out.shape[2] in (1, 3):
        # cv2.LUT does a per-channel byte table in one native pass; int8 is a byte view.
        table = lut.view(np.uint8).reshape(256, 1, lut.shape[1]).transpose(1, 0, 2)
        dst = out.view(np.uint8)
        src = np.ascontiguousarray(pixels)
        if out.shape[2] == 1:
            dst[:, :, 0] = cv2.LUT(src[:, :, 0], table[:, :, 0].copy())
        else:
            cv2.LUT(src, np.ascontiguousarray(table), dst=dst)
        return
    for c in range(out.shape[2]):
        np.take(lut[:, c], pixels[:, :, c], out=out[:, :, c])


def check_frame(frame: object) -> np.ndarray:
    """A decodable image array (HxW, HxWx1, HxWx3 or HxWx4 uint8), else ValueError."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        raise ValueError("frame is not a uint8 image")
    if frame.ndim not in (2, 3) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"frame has unusable shape {frame.shape}")
    if frame.ndim == 3 and frame.shape[2] not in (1, 3, 4):
        raise ValueError(f"frame has {frame.shape[2]} channels")
    return frame


def prepare(frame: np.ndarray, spec: InputSpec, lut: np.ndarray, out: np.ndarray) -> None:
    """The whole preprocessing of one BGR frame into `out` (H x W x C, the tensor's dtype)."""
    resized = resize(check_frame(frame), spec.width, spec.height)
    apply_lut(to_model_pixels(resized, spec.channels), lut, out)
