"""Decoding untrusted images within a budget, for every source that reads still images.

Three rules, each learnt from an input that broke the daemon:
- The pixel count is read from the file's own header (a few bytes, pure Python) and checked
  against `max_pixels` before any decoder sees the data: a 200-byte PNG can declare 30000 x 30000
  pixels and make the decoder allocate gigabytes. Formats whose header this module cannot read
  are refused, because OpenCV sniffs many more formats than the ones a camera sends.
- Files are read into memory by Python and decoded from the buffer (cv2.imdecode). A path is
  never handed to OpenCV: names that are not valid UTF-8 reach Python as surrogate escapes, and
  cv2.imread on such a str crashes the process (SIGSEGV).
- A JPEG must end with its EOI marker after its last scan; some decoders return a partly grey
  image for a truncated file instead of failing.

File names are shown in results and logs in `safe_name` form (see there).
"""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from pydantic import Field

from edged.capture.decode import DecodeTarget, imread_flag
from edged.config.base import _Strict
from edged.capture.sources.failures import SourceFailure


class JpegSettings(_Strict):
    """Settings of the kinds that decode still images: image folders, hot folders, HTTP."""

    max_pixels: int = Field(
        50_000_000, ge=1, description="Images (files, hot folders, HTTP snapshots and MJPEG "
        "parts) declaring more pixels than this in their header are dropped as too_large, "
        "never decoded.",
    )
    decode_scale: Literal["auto", "off"] = Field(
        "auto",
        description="JPEG images (folders, hot folders, HTTP snapshots, MJPEG): auto decodes "
        "at 1/2, 1/4 or 1/8 scale when the image is at least that many times the model input "
        "on both sides (libjpeg DCT scaling); off decodes at full size.",
    )

DEFAULT_MAX_PIXELS = 50_000_000
# A file larger than this many bytes per allowed pixel (plus room for metadata) is not read:
# even an uncompressed 8-bit RGB image needs only 3 bytes a pixel.
_FILE_BYTES_PER_PIXEL = 3
_FILE_SLACK = 16 * 1024 * 1024


class ImageRejected(SourceFailure):
    """An image that is dropped, not decoded: `reason` is the frames_dropped label
    (`decode`: empty, truncated, corrupt or an unsupported format; `too_large`: over
    max_pixels or max file size). A live source stays open after one."""

    def __init__(self, message: str, reason: str = "decode") -> None:
        super().__init__(message, "decode")
        self.reason = reason
        self.logged = False  # the source logged it already (a hot folder, per file)


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_header(data: bytes) -> ImageHeader | None:
    """Format and size from the first bytes of an image; None if not a format read here."""
    try:
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            if data[12:16] != b"IHDR":
                return None
            width, height = struct.unpack(">II", data[16:24])
            return ImageHeader("png", width, height)
        if data.startswith(b"BM"):
            return _bmp(data)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(data)
        if len(data) > 2 and data[0:1] == b"P" and data[1:2] in b"123456":
            return _pnm(data)
    except (struct.error, IndexError, ValueError):
        return None  # a header cut short
    return None


# SOFn markers that carry the frame size (not DHT C4, JPG C8, DAC CC).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> ImageHeader | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return ImageHeader("jpeg", width, height)
        if marker in (0xD9, 0xDA) or length < 2:  # image data before any frame header
            return None
        pos += 2 + length
    return None


def _bmp(data: bytes) -> ImageHeader:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return ImageHeader("bmp", abs(width), abs(height))  # negative height: top-down rows


def _webp(data: bytes) -> ImageHeader | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("webp", width, height)
    return None


def _tiff(data: bytes) -> ImageHeader | None:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    size: dict[int, int] = {}
    for i in range(min(count, 4096)):
        entry = data[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            fmt = order + ("H" if kind == 3 else "I")
            (size[tag],) = struct.unpack(fmt, entry[8:8 + struct.calcsize(fmt)])
    if 256 not in size or 257 not in size:
        return None
    return ImageHeader("tiff", size[256], size[257])


def _pnm(data: bytes) -> ImageHeader | None:
    fields: list[int] = []
    pos = 2
    while len(fields) < 2 and pos < min(len(data), 4096):
        ch = data[pos:pos + 1]
        if ch == b"#":  # a comment to the end of the line
            end = data.find(b"\n", pos)
            pos = len(data) if end < 0 else end + 1
        elif ch.isspace():
            pos += 1
        elif ch.isdigit():
            end = pos
            while end < len(data) and data[end:end + 1].isdigit() and end - pos < 10:
                end += 1
            fields.append(int(data[pos:end]))
            pos = end
        else:
            return None
    if len(fields) < 2:
        return None
    return ImageHeader("pnm", fields[0], fields[1])


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG's last scan is followed by its EOI marker (bytes after EOI are allowed:
    inside entropy-coded data 0xFF is always stuffed, so FFD9 cannot appear there). Only the
    bytes after the last FFD9 are searched for a scan start: fast for a complete file."""
    eoi = data.rfind(b"\xff\xd9")
    return eoi >= 0 and data.find(b"\xff\xda", eoi) < 0


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 what: str = "image", target: DecodeTarget | None = None,
                 scale_mode: str = "off") -> np.ndarray:
    """A BGR image from encoded bytes, or ImageRejected; `what` names it in messages.
    With a `target` (the model input) and scale_mode auto, a large JPEG is decoded at
    reduced scale (edged/capture/decode.py)."""
    if not data:
        raise ImageRejected(f"{what}: empty")
    header = image_header(data)
    if header is None:
        raise ImageRejected(f"{what}: not a JPEG, PNG, BMP, WebP, TIFF or PNM image")
    if header.width <= 0 or header.height <= 0:
        raise ImageRejected(f"{what}: the {header.format} header gives no size")
    if header.pixels > max_pixels:
        raise ImageRejected(f"{what}: {header.width}x{header.height} is over max_pixels "
                            f"({max_pixels}); not decoded", "too_large")
    if header.format == "jpeg" and not jpeg_complete(data):
        raise ImageRejected(f"{what}: truncated JPEG (no end marker after its image data)")
    flag = imread_flag((header.height, header.width), target, scale_mode,
                       header.format == "jpeg")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ImageRejected(f"{what}: corrupt or truncated {header.format}")
    return image


def max_file_bytes(max_pixels: int) -> int:
    return _FILE_BYTES_PER_PIXEL * max_pixels + _FILE_SLACK


def read_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                    what: str | None = None, target: DecodeTarget | None = None,
                    scale_mode: str = "off") -> np.ndarray:
    """Decode an image file read by Python (never by a C library given the path).
    Raises ImageRejected for bad images and OSError if the file cannot be read; messages
    name the file as `what` (default: the path in safe_name form)."""
    what = safe_name(path) if what is None else what
    limit = max_file_bytes(max_pixels)
    # O_NONBLOCK: a FIFO swapped in under an image's name must not block the open.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageRejected(f"{what}: not a regular file")
        size = st.st_size
        if size > limit:
            raise ImageRejected(f"{what}: {size} bytes is over the {limit} bytes that "
                                f"max_pixels ({max_pixels}) allows; not read", "too_large")
        data = f.read(limit + 1)  # bounded even if the file grows meanwhile
    if len(data) > limit:
        raise ImageRejected(f"{what}: grew over {limit} bytes while read", "too_large")
    return decode_image(data, max_pixels, what, target, scale_mode)


# Bidirectional-text controls: they reorder what a log line or dashboard shows.
_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def safe_name(name: str) -> str:
    """A file name (as os.listdir gives it) in a form safe for JSON, logs and terminals.

    Printable characters stay as they are. A backslash becomes two backslashes; a byte that
    is not valid UTF-8 (Python's surrogate escape) becomes \\xNN; a control character, line or
    paragraph separator or bidirectional control becomes \\xNN, \\uNNNN. The form is
    one-to-one, so two different names never show the same.
    """
    out = []
    for ch in name:
        code = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 0xDC80 <= code <= 0xDCFF:  # a raw byte of a non-UTF-8 name
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code in _BIDI or unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)
