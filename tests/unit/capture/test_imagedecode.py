"""The image budget: header sizes against real encoders, refusals before any decode, safe
names. Real images made by OpenCV's own encoders; the hostile ones built byte by byte."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from edged.capture.imagedecode import (
    ImageRejected,
    decode_image,
    image_header,
    jpeg_complete,
    read_image_file,
    safe_name,
)


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header for any size, with a tiny (short) image stream."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


IMAGE = (np.random.default_rng(1).random((37, 53, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("ext,params,fmt", [
    (".jpg", [], "jpeg"), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "jpeg"),
    (".png", [], "png"), (".bmp", [], "bmp"), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], "webp"),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "webp"), (".tiff", [], "tiff"),
    (".ppm", [], "pnm"), (".pgm", [], "pnm"),
])
def test_header_size_matches_what_the_encoder_wrote(ext, params, fmt):
    image = IMAGE if ext != ".pgm" else IMAGE[:, :, 0]
    data = cv2.imencode(ext, image, params)[1].tobytes()
    header = image_header(data)
    assert header is not None and (header.format, header.width, header.height) == (fmt, 53, 37)
    assert decode_image(data).shape[:2] == (37, 53)


def test_jpeg_header_is_found_after_exif_like_segments():
    data = cv2.imencode(".jpg", IMAGE)[1].tobytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 1000) + b"Exif\x00\x00" + b"\xff\xd9" * 497
    with_app = data[:2] + app1 + data[2:]
    assert image_header(with_app).width == 53
    assert decode_image(with_app).shape == (37, 53, 3)


def test_an_image_over_max_pixels_is_refused_before_decoding():
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 200 and image_header(bomb).pixels == 900_000_000
    with pytest.raises(ImageRejected) as info:
        decode_image(bomb)
    assert info.value.reason == "too_large" and "30000x30000" in str(info.value)
    data = cv2.imencode(".png", IMAGE)[1].tobytes()
    with pytest.raises(ImageRejected) as info:
        decode_image(data, max_pixels=37 * 53 - 1)  # per-camera budget
    assert info.value.reason == "too_large"
    assert decode_image(data, max_pixels=37 * 53).shape == (37, 53, 3)


@pytest.mark.parametrize("cut", [0.3, 0.9, -2])
def test_truncated_jpegs_are_a_decode_drop(cut):
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]):
        data = cv2.imencode(".jpg", IMAGE, params)[1].tobytes()
        part = data[:cut] if isinstance(cut, int) else data[:int(len(data) * cut)]
        assert jpeg_complete(data) and not jpeg_complete(part)
        with pytest.raises(ImageRejected) as info:
            decode_image(part)
        assert info.value.reason == "decode" and info.value.kind == "decode"
    # Bytes after the end marker (some cameras pad frames) are not truncation.
    assert decode_image(data + b"\r\n\x00\x00").shape == (37, 53, 3)


@pytest.mark.parametrize("data,why", [
    (b"", "empty"), (b"GIF89a\x10\x00\x10\x00", "not a JPEG"), (b"\xff\xd8\xff", "not a JPEG"),
    (png_declaring(0, 5), "gives no size"),
    (cv2.imencode(".png", IMAGE)[1].tobytes()[:300], "corrupt or truncated png"),
    (b"\x00" * 1000, "not a JPEG"),
])
def test_empty_unknown_and_corrupt_images_are_decode_drops(data, why):
    with pytest.raises(ImageRejected, match=why) as info:
        decode_image(data)
    assert info.value.reason == "decode"


def test_header_parsers_survive_every_truncation_of_real_headers():
    for ext in (".jpg", ".png", ".bmp", ".webp", ".tiff", ".ppm"):
        data = cv2.imencode(ext, IMAGE)[1].tobytes()
        for n in range(64):
            image_header(data[:n])  # never raises


def test_files_are_read_by_python_whatever_their_name(tmp_path):
    good = cv2.imencode(".jpg", IMAGE)[1].tobytes()
    raw = bytes(tmp_path) + b"/\xff\xfe\x1b[31m.jpg"  # not UTF-8, with an escape sequence
    with open(raw, "wb") as f:
        f.write(good)
    import os
    (name,) = os.listdir(tmp_path)
    assert read_image_file(str(tmp_path / name)).shape == (37, 53, 3)
    huge = tmp_path / "huge.bmp"
    huge.write_bytes(cv2.imencode(".bmp", IMAGE)[1].tobytes())
    with pytest.raises(ImageRejected) as info:
        read_image_file(str(huge), max_pixels=1)  # 3 B/px + 16 MiB: fine, but 1 px is not
    assert info.value.reason == "too_large"


@pytest.mark.parametrize("name,shown", [
    ("plain-name.jpg", "plain-name.jpg"), ("ünïcode 画像.png", "ünïcode 画像.png"),
    ("\udcff\udcfe.jpg", "\\xff\\xfe.jpg"), ("a\nb\r\x1b[31m.jpg", "a\\x0ab\\x0d\\x1b[31m.jpg"),
    ("back\\slash.jpg", "back\\\\slash.jpg"), ("\u202egpj.exe", "\\u202egpj.exe"),
    ("line\u2028sep\x7f\x85.jpg", "line\\u2028sep\\x7f\\x85.jpg"),
])
def test_safe_names_are_printable_json_safe_and_one_to_one(name, shown):
    assert safe_name(name) == shown
    json.dumps(shown, ensure_ascii=False).encode()  # no surrogates left to fail encoding
    assert shown.isprintable() or " " in shown
    assert safe_name("\\xff.jpg") != safe_name("\udcff.jpg")


def test_a_fifo_under_an_image_name_is_refused_without_blocking(tmp_path):
    import os
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ImageRejected, match="not a regular file"):
        read_image_file(str(fifo))
