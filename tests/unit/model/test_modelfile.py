"""The .tflite checks done before any runtime sees a file, on the real shared models."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from edged.errors import ModelError
from edged.model.flatbuffer import check_model_bytes, embedded_labels, read_model_bytes
from tests.conftest import SHARED_MODELS, shared_or_skip

REAL_MODELS = [
    "imagenet/mobilenet_v2_1.0_224_quant.tflite",
    "vww/vww_96_int8.tflite",
    "vww/vww_96_float.tflite",
    "cifar10/resnet_int8.tflite",
    "cifar10/resnet_float.tflite",
    "invalid/mobilenet_v2_1.0_224_quant_edgetpu.tflite",  # a valid flatbuffer, unusable on CPU
    "invalid/model_invoking_error.tflite",
]
# The imagenet model ends in a zip archive (its embedded labels) after the flatbuffer, so only
# cuts that reach into the flatbuffer itself are detectable there.
FLATBUFFER_ONLY = [m for m in REAL_MODELS if not m.startswith("imagenet/")]


def model_bytes(rel: str) -> bytes:
    return (shared_or_skip() / rel).read_bytes()


def vww_bytes() -> bytes:
    return model_bytes("vww/vww_96_int8.tflite")


@pytest.mark.parametrize("rel", REAL_MODELS)
def test_accepts_real_models(rel):
    data = model_bytes(rel)
    check_model_bytes(data, rel)  # no exception
    assert read_model_bytes(str(SHARED_MODELS / rel)) == data


def _jpeg() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"TFL3",
        b"\x00\x00\x00\x00TFL",
        b"\x1c\x00\x00\x00TFL2" + bytes(100),
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        b"models:\n  default: {}\n",
        "jpeg",
        "zip",
    ],
    ids=["empty", "4-bytes", "7-bytes", "wrong-identifier", "random", "yaml", "jpeg", "zip"],
)
def test_rejects_non_tflite(data):
    if data == "jpeg":
        data = _jpeg()
    elif data == "zip":
        b = io.BytesIO()
        with zipfile.ZipFile(b, "w") as zf:
            zf.writestr("labels.txt", "a\nb\n")
        data = b.getvalue()
    with pytest.raises(ModelError) as info:
        check_model_bytes(data, "/x/model.tflite")
    assert str(info.value) == ("/x/model.tflite: not a TFLite model "
                               "(no 'TFL3' flatbuffer identifier)")


def test_real_jpeg_photo_is_not_a_model():
    photo = shared_or_skip() / "photos" / "parrot.jpg"
    with pytest.raises(ModelError, match="not a TFLite model"):
        read_model_bytes(str(photo))


def _cuts(n: int, with_tail: bool) -> list[int]:
    cuts = [8, 12, 64, n // 10, n // 4, n // 2, 3 * n // 4, 9 * n // 10]
    if with_tail:
        cuts.append(n - 100)
    return sorted({c for c in cuts if 8 <= c < n})


@pytest.mark.parametrize("rel", REAL_MODELS)
def test_truncated_copies_rejected(rel):
    data = model_bytes(rel)
    cuts = _cuts(len(data), with_tail=rel in FLATBUFFER_ONLY)
    assert len(cuts) >= 6
    for cut in cuts:
        with pytest.raises(ModelError) as info:
            check_model_bytes(data[:cut], "m.tflite")
        assert str(info.value).startswith("m.tflite: truncated or corrupt TFLite model"), cut


@pytest.mark.parametrize("rel", ["vww/vww_96_int8.tflite", "cifar10/resnet_int8.tflite"])
@pytest.mark.parametrize("cut", [1, 10])
def test_truncated_by_a_few_bytes_rejected(rel, cut):
    data = model_bytes(rel)
    with pytest.raises(ModelError, match="truncated or corrupt"):
        check_model_bytes(data[:-cut], "m.tflite")


def test_corrupt_root_offset_rejected():
    data = bytearray(vww_bytes())
    data[0:4] = (len(data) + 1000).to_bytes(4, "little")  # root table past the end
    with pytest.raises(ModelError, match="truncated or corrupt"):
        check_model_bytes(bytes(data), "m.tflite")


def test_read_model_bytes_missing_file(tmp_path):
    missing = tmp_path / "nope.tflite"
    with pytest.raises(ModelError) as info:
        read_model_bytes(str(missing))
    assert str(info.value) == f"{missing}: cannot read model: No such file or directory"


def test_read_model_bytes_directory(tmp_path):
    with pytest.raises(ModelError, match="cannot read model"):
        read_model_bytes(str(tmp_path))


def test_read_model_bytes_truncated_file(tmp_path):
    data = vww_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as info:
        read_model_bytes(str(p))
    assert str(info.value).startswith(f"{p}: truncated or corrupt")


def test_trailing_bytes_after_flatbuffer_are_accepted():
    check_model_bytes(vww_bytes() + b"\x00" * 123, "m.tflite")


# --- embedded labels -------------------------------------------------------------------------


def test_embedded_labels_imagenet():
    labels = embedded_labels(model_bytes("imagenet/mobilenet_v2_1.0_224_quant.tflite"))
    assert labels is not None
    assert len(labels) == 1001
    assert labels[0] == "background"
    assert labels[89] == "macaw"
    file_labels = (shared_or_skip() / "imagenet" / "imagenet_labels.txt").read_text().splitlines()
    assert labels == file_labels


@pytest.mark.parametrize("rel", [m for m in REAL_MODELS if not m.startswith("imagenet/")])
def test_no_embedded_labels(rel):
    assert embedded_labels(model_bytes(rel)) is None


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04broken"])
def test_embedded_labels_not_a_zip(data):
    assert embedded_labels(data) is None


def _with_zip(data: bytes, files: dict[str, str]) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return data + b.getvalue()


def test_embedded_labels_prefers_a_labels_file():
    data = _with_zip(vww_bytes(), {"readme.txt": "hello\n", "my_labels.txt": "no\nyes\n"})
    check_model_bytes(data, "m.tflite")
    assert embedded_labels(data) == ["no", "yes"]


def test_embedded_labels_any_txt_when_none_named_label():
    data = _with_zip(vww_bytes(), {"classes.TXT": "no\nyes\n", "meta.json": "{}"})
    assert embedded_labels(data) == ["no", "yes"]


def test_embedded_labels_zip_without_txt():
    assert embedded_labels(_with_zip(vww_bytes(), {"meta.json": "{}"})) is None


def test_truncated_imagenet_zip_tail_loses_labels_only():
    data = model_bytes("imagenet/mobilenet_v2_1.0_224_quant.tflite")
    cut = data[:-100]  # inside the zip's central directory, past the flatbuffer
    check_model_bytes(cut, "m.tflite")
    assert embedded_labels(cut) is None

