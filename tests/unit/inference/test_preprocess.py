"""Frame -> input tensor: the LUT against the reference formula, prepare() against the reference
pipeline of ../shared/bench/reference.py (bitwise for quantized inputs)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edged.inference.backends import get_backend
from edged.inference.preprocess import InputSpec, build_lut, check_frame, prepare, resize
from tests.conftest import shared_or_skip

UINT8_IMAGENET = InputSpec(224, 224, 3, np.dtype(np.uint8), 0.0078125, 128)
# The model stores its scale as float32; the interpreter hands it back as that float32's value.
INT8_VWW = InputSpec(96, 96, 3, np.dtype(np.int8), float(np.float32(1 / 255)), -128)
INT8_CIFAR = InputSpec(32, 32, 3, np.dtype(np.int8), 1.0, -128)
FLOAT_VWW = InputSpec(96, 96, 3, np.dtype(np.float32), 0.0, 0)
FLOAT_CIFAR = InputSpec(32, 32, 3, np.dtype(np.float32), 0.0, 0)

CASES = {
    "uint8-imagenet": (UINT8_IMAGENET, 127.5, 127.5),
    "int8-vww": (INT8_VWW, 0.0, 255.0),
    "int8-cifar": (INT8_CIFAR, 0.0, 1.0),
    "float-vww": (FLOAT_VWW, 0.0, 255.0),
    "float-cifar": (FLOAT_CIFAR, 0.0, 1.0),
    "float-imagenet-style": (InputSpec(40, 30, 3, np.dtype(np.float32), 0.0, 0), 127.5, 127.5),
}


def quantize(x: np.ndarray, spec: InputSpec, mean, std) -> np.ndarray:
    """reference.py's arithmetic on float32 pixels in the model's channel order."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    if spec.dtype == np.float32:
        return (x - mean) / std
    info = np.iinfo(spec.dtype)
    q = np.round((x - mean) / std / spec.scale + spec.zero_point)
    return np.clip(q, info.min, info.max).astype(spec.dtype)


def reference(frame_bgr: np.ndarray, spec: InputSpec, mean, std) -> np.ndarray:
    """The reference pipeline, written as in ../shared/bench/reference.py."""
    x = cv2.resize(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB), (spec.width, spec.height),
                   interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return quantize(x, spec, mean, std)


def run_prepare(frame: np.ndarray, spec: InputSpec, mean, std) -> np.ndarray:
    out = np.empty((spec.height, spec.width, spec.channels), dtype=spec.dtype)
    out.fill(7)  # anything prepare() forgets to write shows up as a mismatch
    prepare(frame, spec, build_lut(spec, mean, std), out)
    return out


def assert_same(got: np.ndarray, want: np.ndarray, spec: InputSpec) -> None:
    assert got.shape == want.shape
    assert got.dtype == np.dtype(spec.dtype)
    if spec.dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)


# --- build_lut -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_lut_equals_reference_formula(case):
    spec, mean, std = CASES[case]
    lut = build_lut(spec, mean, std)
    assert lut.shape == (256, 3)
    assert lut.dtype == np.dtype(spec.dtype)
    px = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
    assert_same(lut, quantize(px, spec, mean, std), spec)


def test_lut_uint8_imagenet_known_values():
    lut = build_lut(UINT8_IMAGENET, 127.5, 127.5)[:, 0].astype(int)
    # (px - 127.5) / 127.5 / 0.0078125 + 128 is px + 0.5 up to float32 rounding.
    assert lut[0] == 0 and lut[255] == 255
    assert set(np.unique(lut - np.arange(256))) <= {0, 1}
    assert (np.diff(lut) >= 0).all()


def test_lut_int8_vww_known_values():
    lut = build_lut(INT8_VWW, 0.0, 255.0)[:, 0]
    np.testing.assert_array_equal(lut, (np.arange(256) - 128).astype(np.int8))


def test_lut_int8_clips():
    # cifar int8 with the imagenet mean/std: real in [-1, 1] / scale 1 -> a narrow range;
    # with mean 0 std 0.5 and scale 1, 2*px - 128 overflows int8 and must clip to 127.
    lut = build_lut(INT8_CIFAR, 0.0, 0.5)[:, 0]
    assert lut[0] == -128 and lut[127] == 126 and lut[128] == 127 and lut[255] == 127
    assert lut.dtype == np.int8


def test_lut_float_identity():
    lut = build_lut(FLOAT_CIFAR, 0.0, 1.0)
    np.testing.assert_array_equal(lut, np.arange(256, dtype=np.float32)[:, None].repeat(3, 1))


@pytest.mark.parametrize("spec", [FLOAT_VWW, UINT8_IMAGENET], ids=["float", "uint8"])
def test_lut_per_channel(spec):
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    lut = build_lut(spec, mean, std)
    px = np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1)
    assert_same(lut, quantize(px, spec, mean, std), spec)
    # The columns really differ per channel (column c is model channel c).
    assert not np.array_equal(lut[:, 0], lut[:, 2])


def test_lut_per_channel_with_scalar_mixed():
    lut = build_lut(FLOAT_VWW, 10.0, [1.0, 2.0, 4.0])
    assert lut[10].tolist() == [0.0, 0.0, 0.0]
    assert lut[18].tolist() == [8.0, 4.0, 2.0]


@pytest.mark.parametrize(
    ("spec", "mean", "std", "name"),
    [
        (FLOAT_VWW, [1.0, 2.0], 1.0, "mean"),
        (FLOAT_VWW, 0.0, [1.0, 2.0, 3.0, 4.0], "std"),
        (UINT8_IMAGENET, [127.5] * 4, 127.5, "mean"),
        (InputSpec(8, 8, 1, np.dtype(np.uint8), 0.0078125, 128), 127.5, [1.0, 2.0, 3.0], "std"),
    ],
)
def test_lut_per_channel_wrong_length(spec, mean, std, name):
    with pytest.raises(ValueError, match=rf"^{name} has \d values for a {spec.channels}-channel"):
        build_lut(spec, mean, std)


# --- prepare() against the reference pipeline ------------------------------------------------

SIZES = [(1, 1), (3, 5), (7, 1000), (101, 77), (480, 640), (333, 221)]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize(("h", "w"), SIZES + [(None, None)],
                         ids=[f"{h}x{w}" for h, w in SIZES] + ["same"])
def test_prepare_equals_reference(case, h, w):
    spec, mean, std = CASES[case]
    if h is None:
        h, w = spec.height, spec.width
    rng = np.random.default_rng(h * 1000 + w)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    assert_same(run_prepare(frame, spec, mean, std), reference(frame, spec, mean, std), spec)


@pytest.mark.parametrize("case", ["uint8-imagenet", "int8-vww", "float-vww"])
def test_prepare_one_pixel_off_size(case):
    spec, mean, std = CASES[case]
    rng = np.random.default_rng(1)
    for h, w in ((spec.height + 1, spec.width), (spec.height, spec.width - 1)):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert_same(run_prepare(frame, spec, mean, std), reference(frame, spec, mean, std), spec)


def test_prepare_non_contiguous_frame():
    spec, mean, std = CASES["int8-vww"]
    big = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    frame = big[10:250:2, 5:390:3]  # a strided view, as a cropped camera frame could be
    assert not frame.flags.c_contiguous
    want = reference(np.ascontiguousarray(frame), spec, mean, std)
    assert_same(run_prepare(frame, spec, mean, std), want, spec)


@pytest.mark.parametrize("spec", [FLOAT_VWW, UINT8_IMAGENET], ids=["float", "uint8"])
def test_prepare_per_channel_keeps_rgb_order(spec):
    mean, std = [10.0, 100.0, 200.0], [1.0, 2.0, 4.0]
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert_same(run_prepare(frame, spec, mean, std), reference(frame, spec, mean, std), spec)


def test_prepare_solid_colour_channel_order():
    """A pure blue BGR frame is (0, 0, 255) in RGB: blue must land in the model's channel 2."""
    frame = np.zeros((10, 10, 3), dtype=np.uint8)
    frame[:, :, 0] = 255  # BGR: blue
    out = run_prepare(frame, FLOAT_CIFAR, 0.0, 1.0)
    assert (out[:, :, 0] == 0).all() and (out[:, :, 1] == 0).all() and (out[:, :, 2] == 255).all()


@pytest.mark.parametrize("case", ["uint8-imagenet", "int8-vww", "float-vww"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (57, 83), (96, 96), (480, 640)])
def test_prepare_gray_2d_frame(case, h, w):
    """A 2-D gray frame is what imread would give as BGR with three equal channels."""
    spec, mean, std = CASES[case]
    gray = np.random.default_rng(h + w).integers(0, 256, (h, w), dtype=np.uint8)
    want = reference(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), spec, mean, std)
    assert_same(run_prepare(gray, spec, mean, std), want, spec)
    assert_same(run_prepare(gray[:, :, None], spec, mean, std), want, spec)


@pytest.mark.parametrize("case", ["uint8-imagenet", "int8-vww", "float-vww"])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (57, 83), (96, 96), (480, 640)])
def test_prepare_bgra_frame_ignores_alpha(case, h, w):
    spec, mean, std = CASES[case]
    rng = np.random.default_rng(h * w)
    bgra = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    want = reference(np.ascontiguousarray(bgra[:, :, :3]), spec, mean, std)
    assert_same(run_prepare(bgra, spec, mean, std), want, spec)


GRAY_SPECS = {
    "uint8": (InputSpec(28, 28, 1, np.dtype(np.uint8), 0.0078125, 128), 127.5, 127.5),
    "int8": (InputSpec(28, 28, 1, np.dtype(np.int8), float(np.float32(1 / 255)), -128), 0.0,
             255.0),
    "float": (InputSpec(28, 28, 1, np.dtype(np.float32), 0.0, 0), 0.0, 255.0),
}


@pytest.mark.parametrize("kind", list(GRAY_SPECS))
@pytest.mark.parametrize(("h", "w"), [(1, 1), (28, 28), (45, 61)])
def test_prepare_grayscale_spec_from_gray_frame(kind, h, w):
    spec, mean, std = GRAY_SPECS[kind]
    gray = np.random.default_rng(h * 7 + w).integers(0, 256, (h, w), dtype=np.uint8)
    resized = cv2.resize(gray, (spec.width, spec.height), interpolation=cv2.INTER_LINEAR)
    want = quantize(resized.astype(np.float32), spec, mean, std)[:, :, None]
    assert_same(run_prepare(gray, spec, mean, std), want, spec)


@pytest.mark.parametrize("kind", list(GRAY_SPECS))
@pytest.mark.parametrize(("h", "w"), [(1, 1), (28, 28), (45, 61), (240, 320)])
def test_prepare_grayscale_spec_from_bgr_frame(kind, h, w):
    spec, mean, std = GRAY_SPECS[kind]
    frame = np.random.default_rng(h * 3 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    got = run_prepare(frame, spec, mean, std)
    assert got.shape == (28, 28, 1)
    # Converting to gray before or after the resize differs only by rounding: within one pixel
    # level (1 / std in real units) plus one quantum.
    gray_first = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (spec.width, spec.height),
                            interpolation=cv2.INTER_LINEAR).astype(np.float32)
    want = quantize(gray_first, spec, mean, std)[:, :, None]

    def real(q):
        if spec.dtype == np.float32:
            return q.astype(np.float64)
        return (q.astype(np.float64) - spec.zero_point) * spec.scale

    np.testing.assert_allclose(real(got), real(want), atol=1 / std + spec.scale + 1e-6)
    if (h, w) == (28, 28):  # no resize: exactly the gray conversion
        assert_same(got, want, spec)


def test_prepare_into_real_interpreter_buffer():
    """prepare() writes straight into a real interpreter's input tensor; reading it back gives
    the reference input."""
    model = shared_or_skip() / "vww" / "vww_96_int8.tflite"
    backend = get_backend("cpu")(model.read_bytes(), threads=1, name=str(model))
    backend.start()
    try:
        detail = backend.interpreter.get_input_details()[0]
        scale, zp = detail["quantization"]
        spec = InputSpec(96, 96, 3, np.dtype(detail["dtype"]), float(scale), int(zp))
        assert spec == INT8_VWW
        frame = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        buf = backend.input_buffer()
        prepare(frame, spec, build_lut(spec, 0.0, 255.0), buf)
        del buf
        written = backend.interpreter.get_tensor(detail["index"])[0]
        np.testing.assert_array_equal(written, reference(frame, spec, 0.0, 255.0))
    finally:
        backend.close()


def test_resize_same_size_is_not_copied():
    frame = np.zeros((96, 96, 3), dtype=np.uint8)
    assert resize(frame, 96, 96) is frame
    assert resize(frame, 95, 96).shape == (96, 95, 3)


# --- check_frame -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        None,
        "image.jpg",
        [[1, 2], [3, 4]],
        np.zeros((4, 4, 3), dtype=np.float32),
        np.zeros((4, 4, 3), dtype=np.float64),
        np.zeros((4, 4, 3), dtype=np.uint16),
        np.zeros((4, 4, 3), dtype=np.int8),
        np.zeros((0, 4, 3), dtype=np.uint8),
        np.zeros((4, 0, 3), dtype=np.uint8),
        np.zeros((0, 0), dtype=np.uint8),
        np.zeros((4, 4, 2), dtype=np.uint8),
        np.zeros((4, 4, 5), dtype=np.uint8),
        np.zeros((4, 4, 0), dtype=np.uint8),
        np.zeros((16,), dtype=np.uint8),
        np.zeros((1, 4, 4, 3), dtype=np.uint8),
    ],
    ids=["None", "str", "list", "float32", "float64", "uint16", "int8", "0xN", "Nx0", "0x0",
         "2ch", "5ch", "0ch", "1d", "4d"],
)
def test_check_frame_rejects(frame):
    with pytest.raises(ValueError):
        check_frame(frame)


@pytest.mark.parametrize("shape", [(1, 1), (4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
def test_check_frame_accepts(shape):
    frame = np.zeros(shape, dtype=np.uint8)
    assert check_frame(frame) is frame


def test_prepare_rejects_bad_frame_without_writing():
    spec, mean, std = CASES["int8-vww"]
    out = np.full((96, 96, 3), 7, dtype=np.int8)
    with pytest.raises(ValueError):
        prepare(np.zeros((10, 10, 2), dtype=np.uint8), spec, build_lut(spec, mean, std), out)
    assert (out == 7).all()


@pytest.mark.parametrize("dtype,scale,zp,mean,std", [
    (np.uint8, 0.0078125, 128, 127.5, 127.5), (np.int8, 1 / 255, -128, 0.0, 255.0)])
@pytest.mark.parametrize("shape", [(480, 640, 3), (96, 96, 3), (37, 53, 3)])
def test_prepare_with_scratch_is_bitwise_the_same_and_reuses_its_buffers(dtype, scale, zp,
                                                                        mean, std, shape):
    from edged.inference.preprocess import Scratch

    spec = InputSpec(height=96, width=96, channels=3, dtype=np.dtype(dtype), scale=scale,
                     zero_point=zp)
    lut = build_lut(spec, mean, std)
    scratch = Scratch()
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(3):
        frame = rng.integers(0, 256, shape, dtype=np.uint8)
        plain = np.empty((96, 96, 3), dtype)
        fast = np.empty((96, 96, 3), dtype)
        prepare(frame, spec, lut, plain)
        prepare(frame, spec, lut, fast, scratch=scratch)
        assert np.array_equal(plain, fast)
        seen.add(id(scratch.buffer("rgb", (96, 96, 3))))
    assert len(seen) == 1  # the same buffer every frame: nothing allocated per frame
