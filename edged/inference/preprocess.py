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
    scale: float | tuple[float, ...]  # quantization scale (per channel: one each); 0 for float
    zero_point: int | tuple[int, ...]


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
    scale = np.asarray(spec.scale, dtype=np.float32)
    zero_point = np.asarray(spec.zero_point, dtype=np.float32)
    return np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(spec.dtype)


RESIZE_MODES = ("stretch", "center-crop", "letterbox")
LETTERBOX_FILL = 0  # black bars, as most letterboxing training pipelines pad


def center_crop_box(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the largest centred region of a width x height frame with the aspect
    ratio of out_w x out_h."""
    if width * out_h > height * out_w:  # frame is wider than the model: cut the sides
        w, h = max(1, round(height * out_w / out_h)), height
    else:
        w, h = width, max(1, round(width * out_h / out_w))
    return (width - w) // 2, (height - h) // 2, w, h


def letterbox_box(width: int, height: int, out_w: int, out_h: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) where the whole frame, scaled to keep its aspect, sits in out_w x out_h."""
    if width * out_h > height * out_w:
        w, h = out_w, max(1, round(height * out_w / width))
    else:
        w, h = max(1, round(width * out_h / height)), out_h
    return (out_w - w) // 2, (out_h - h) // 2, w, h


def fit(frame: np.ndarray, width: int, height: int, mode: str = "stretch") -> np.ndarray:
    """The frame at the model's size: `stretch` (whole frame, aspect not kept), `center-crop`
    (the centred region of the model's aspect, then resized) or `letterbox` (whole frame with
    its aspect kept, centred on black bars). Bilinear in every mode."""
    if mode == "stretch":
        return resize(frame, width, height)
    fh, fw = frame.shape[:2]
    if mode == "center-crop":
        x, y, w, h = center_crop_box(fw, fh, width, height)
        return resize(frame[y:y + h, x:x + w], width, height)
    if mode == "letterbox":
        x, y, w, h = letterbox_box(fw, fh, width, height)
        canvas = np.full((height, width, *frame.shape[2:]), LETTERBOX_FILL, dtype=frame.dtype)
        canvas[y:y + h, x:x + w] = resize(frame, w, h).reshape(h, w, *frame.shape[2:])
        return canvas
    raise ValueError(f"unknown resize mode {mode!r}; known: {', '.join(RESIZE_MODES)}")


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


class Scratch:
    """One worker's buffers, so the common path allocates nothing per frame."""

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}
        self._tables: dict[int, np.ndarray] = {}

    def buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = np.empty(shape, np.uint8)
        return buf

    def table(self, lut: np.ndarray) -> np.ndarray:
        """The LUT as cv2.LUT's 1 x 256 x C byte table (int8 as its bytes), made once."""
        table = self._tables.get(id(lut))
        if table is None:
            table = np.ascontiguousarray(
                lut.view(np.uint8).reshape(256, 1, lut.shape[1]).transpose(1, 0, 2))
            self._tables = {id(lut): table}  # one model per worker: keep just the latest
        return table


def prepare(frame: np.ndarray, spec: InputSpec, lut: np.ndarray, out: np.ndarray,
            mode: str = "stretch", scratch: Scratch | None = None) -> None:
    """The whole preprocessing of one BGR frame into `out` (H x W x C, the tensor's dtype).

    With `scratch`, the usual case (a BGR frame, stretch, an RGB model with a byte input) runs
    in three native passes into reused buffers; the result is the same to the bit."""
    frame = check_frame(frame)
    if (scratch is not None and mode == "stretch" and frame.ndim == 3 and frame.shape[2] == 3
            and spec.channels == 3 and lut.dtype.itemsize == 1):
        size = (spec.height, spec.width, 3)
        resized = frame
        if frame.shape != size:
            resized = scratch.buffer("resized", size)
            cv2.resize(frame, (spec.width, spec.height), dst=resized,
                       interpolation=cv2.INTER_LINEAR)
        rgb = scratch.buffer("rgb", size)
        cv2.cvtColor(resized, cv2.COLOR_BGR2RGB, dst=rgb)
        cv2.LUT(rgb, scratch.table(lut), dst=out.view(np.uint8))
        return
    resized = fit(frame, spec.width, spec.height, mode)
    apply_lut(to_model_pixels(resized, spec.channels), lut, out)
