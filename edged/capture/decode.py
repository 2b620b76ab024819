"""Images decoded at the scale the model needs.

A 12 MP JPEG takes about 60 ms to decode here, and the model then sees 224 x 224 of it.
libjpeg can decode at 1/2, 1/4 or 1/8 scale straight from the DCT coefficients (OpenCV's
IMREAD_REDUCED_COLOR_2/4/8), skipping most of the inverse DCT, upsampling and colour
conversion: about 17 ms for 1/8. The scale chosen is the largest that still leaves the image
at least HEADROOM (3) times the model input on both sides, and the bilinear resize that
follows does the rest. Why 3 and not 1: a DCT-scaled image is low-passed (each output pixel
averages a block), while the reference pipeline's bilinear resize of the full image samples
a few pixels (it aliases); when the decoded image is only 1-2x the model input, the model
sees the smooth picture and the shared models' top-1 then disagreed with the reference on
clear cases (vww on grace_hopper at 1.3x and 2.7x, cifar10 on parrot at 2x); from 3x on, the
final bilinear step samples much as the reference's does and every clear case agreed
(tests/integration/test_decode_scale.py; the score differences are in BENCHMARKS.md, C3).
Only JPEGs are decoded reduced (OpenCV would decode other formats in full and then resize,
which costs more). The image's size comes from its header (imagedecode.image_header), which
is read anyway to check it against max_pixels.
"""

from __future__ import annotations

import cv2

_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2))
HEADROOM = 3  # the decoded image stays at least this many times the model input


class DecodeTarget:
    """The input size (height, width) of the model a camera feeds, or None for full decodes.
    One per source; the camera sets it when it starts and when a reload changes its model."""

    def __init__(self) -> None:
        self.hw: tuple[int, int] | None = None
        # (height, width) of the last image decoded at reduced scale, as stored (the
        # stream's own size, for its stream info); None after a full decode.
        self.full_hw: tuple[int, int] | None = None

    def at(self, hw: tuple[int, int] | None) -> DecodeTarget:
        """This target as it was when `hw` was its size (for an image read ahead); the full
        size it records lands here too."""
        if hw == self.hw:
            return self
        other = DecodeTarget()
        other.hw = hw
        return other


def reduction(size: tuple[int, int] | None, target_hw: tuple[int, int] | None) -> int:
    """The DCT scale denominator (1, 2, 4 or 8) for an image of `size` and a model input."""
    if size is None or target_hw is None:
        return 1
    h, w = size
    th, tw = target_hw
    for factor, _ in _REDUCED:
        if h >= factor * HEADROOM * th and w >= factor * HEADROOM * tw:
            return factor
    return 1


def imread_flag(size_hw: tuple[int, int], target: DecodeTarget | tuple[int, int] | None,
                scale_mode: str = "auto", is_jpeg: bool = True) -> int:
    """The cv2.imdecode flag for an image of `size_hw` (height, width from its header) and a
    model input (`target`: (height, width), or a source's DecodeTarget, which also records
    the stored size when the decode is reduced): IMREAD_REDUCED_COLOR_2/4/8 for a large
    enough JPEG with `scale_mode` auto, else IMREAD_COLOR."""
    holder = target if isinstance(target, DecodeTarget) else None
    target_hw = holder.hw if holder is not None else target
    factor = 1
    if scale_mode == "auto" and is_jpeg and target_hw is not None:
        factor = reduction(size_hw, target_hw)
    if holder is not None:
        holder.full_hw = size_hw if factor > 1 else None
    return dict(_REDUCED).get(factor, cv2.IMREAD_COLOR)


def target_for(input_hw: tuple[int, int], rotate: int, roi: list[int] | None
               ) -> tuple[int, int] | None:
    """The size a stored image must keep for a model input, or None (decode in full): with a
    `roi` (in full-size pixels) always in full; a 90/270 rotation swaps the sides."""
    if roi is not None:
        return None
    return (input_hw[1], input_hw[0]) if rotate in (90, 270) else input_hw

