"""Inputs, outputs, metadata and resize modes: pure functions against hand-computed answers,
and model loading against the real shared models (metadata, dynamic batch, output choice)."""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edged.inference.backends.cpu import CpuBackend
from edged.config import ModelConfig
from edged.errors import ModelError
from edged.model.loaded import _output_index, load_model
from edged.model.info import ModelInfo, TensorInfo, read_model_info
from edged.inference.postprocess import (
    looks_like_probabilities,
    output_kind_from_quantization,
    softmax,
    to_scores,
)
from edged.inference.preprocess import InputSpec, build_lut, center_crop_box, fit, letterbox_box, prepare
from edged.inference.worker import classify
from tests.conftest import edged, shared_or_skip

IMAGENET = "imagenet/mobilenet_v2_1.0_224_quant.tflite"
VWW_INT8 = "vww/vww_96_int8.tflite"
VWW_FLOAT = "vww/vww_96_float.tflite"


# --- resize modes -----------------------------------------------------------------------------

def test_center_crop_box_wide_and_tall():
    assert center_crop_box(640, 480, 224, 224) == (80, 0, 480, 480)
    assert center_crop_box(480, 640, 224, 224) == (0, 80, 480, 480)
    assert center_crop_box(400, 100, 200, 100) == (100, 0, 200, 100)
    assert center_crop_box(224, 224, 224, 224) == (0, 0, 224, 224)


def test_letterbox_box_wide_and_tall():
    assert letterbox_box(640, 480, 224, 224) == (0, 28, 224, 168)
    assert letterbox_box(480, 640, 224, 224) == (28, 0, 168, 224)
    assert letterbox_box(100, 100, 96, 96) == (0, 0, 96, 96)


def _frame_with_bands() -> np.ndarray:
    """640x480: left quarter red, middle half green, right quarter blue (BGR)."""
    f = np.zeros((480, 640, 3), np.uint8)
    f[:, :160] = (0, 0, 255)
    f[:, 160:480] = (0, 255, 0)
    f[:, 480:] = (255, 0, 0)
    return f


def test_fit_stretch_keeps_all_bands():
    out = fit(_frame_with_bands(), 64, 64, "stretch")
    assert out.shape == (64, 64, 3)
    assert tuple(out[32, 2]) == (0, 0, 255) and tuple(out[32, 61]) == (255, 0, 0)


def test_fit_center_crop_cuts_the_sides():
    out = fit(_frame_with_bands(), 64, 64, "center-crop")
    # The centred 480x480 square spans x 80..560: red 80..160, green, blue 480..560.
    assert tuple(out[32, 2]) == (0, 0, 255) and tuple(out[32, 32]) == (0, 255, 0)
    crop = _frame_with_bands()[:, 80:560]
    np.testing.assert_array_equal(out, cv2.resize(crop, (64, 64),
                                                  interpolation=cv2.INTER_LINEAR))


def test_fit_letterbox_pads_black_and_keeps_aspect():
    out = fit(_frame_with_bands(), 64, 64, "letterbox")
    x, y, w, h = letterbox_box(640, 480, 64, 64)
    assert (x, y, w, h) == (0, 8, 64, 48)
    assert not out[:y].any() and not out[y + h:].any()  # black bars top and bottom
    np.testing.assert_array_equal(out[y:y + h], cv2.resize(_frame_with_bands(), (64, 48),
                                                           interpolation=cv2.INTER_LINEAR))


def test_fit_gray_frames_in_every_mode():
    gray = np.full((30, 60), 200, np.uint8)
    for mode in ("stretch", "center-crop", "letterbox"):
        out = fit(gray, 20, 20, mode)
        assert out.shape[:2] == (20, 20)
    assert fit(gray[:, :, None], 20, 20, "letterbox").shape == (20, 20, 1)


def test_fit_unknown_mode():
    with pytest.raises(ValueError, match="unknown resize mode"):
        fit(np.zeros((4, 4, 3), np.uint8), 2, 2, "zoom")


@pytest.mark.parametrize("mode", ["stretch", "center-crop", "letterbox"])
def test_prepare_in_each_mode_writes_the_fitted_frame(mode):
    spec = InputSpec(32, 32, 3, np.dtype(np.uint8), 1.0, 0)
    lut = build_lut(spec, 0, 1)
    out = np.zeros((32, 32, 3), np.uint8)
    prepare(_frame_with_bands(), spec, lut, out, mode)
    np.testing.assert_array_equal(out, fit(_frame_with_bands(), 32, 32, mode)[:, :, ::-1])


@pytest.mark.parametrize("mode", ["stretch", "center-crop", "letterbox"])
def test_cli_resize_modes_on_a_real_model(mode):
    models = shared_or_skip()
    proc = edged("classify", "--model", str(models / IMAGENET), "--resize", mode, "--json",
                 str(models / "photos" / "parrot.jpg"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "macaw"  # the parrot fills the frame


# --- input dtypes and per-channel quantization -------------------------------------------------

@pytest.mark.parametrize(("dtype", "scale", "zp", "px", "want"), [
    (np.uint8, 0.0078125, 128, 0, 0), (np.uint8, 0.0078125, 128, 255, 255),
    (np.int8, 1 / 255, -128, 0, -128), (np.int8, 1 / 255, -128, 255, 127),
    (np.float32, 0.0, 0, 255, 1.0),
])
def test_lut_for_each_input_dtype(dtype, scale, zp, px, want):
    spec = InputSpec(1, 1, 3, np.dtype(dtype), scale, zp)
    mean, std = (127.5, 127.5) if dtype == np.uint8 else (0, 255)
    lut = build_lut(spec, mean, std)
    assert lut.dtype == dtype and lut[px, 0] == pytest.approx(want)


def test_lut_per_channel_quantization():
    spec = InputSpec(1, 1, 3, np.dtype(np.int8), (1.0, 0.5, 0.25), (-128, 0, 10))
    lut = build_lut(spec, 0, 1)
    assert lut[10].tolist() == [-118, 20, 50]
    assert lut[255].tolist() == [127, 127, 127]  # clipped


def test_quantize_rounds_half_to_even_and_clips():
    spec = InputSpec(1, 1, 1, np.dtype(np.uint8), 2.0, 0)
    lut = build_lut(spec, 0, 1)
    assert lut[1, 0] == 0 and lut[3, 0] == 2 and lut[5, 0] == 2  # 0.5->0, 1.5->2, 2.5->2
    spec = InputSpec(1, 1, 1, np.dtype(np.int8), 0.5, 0)
    assert build_lut(spec, 0, 1)[255, 0] == 127


# --- outputs ----------------------------------------------------------------------------------

def test_quantized_softmax_outputs_are_probabilities():
    assert output_kind_from_quantization(np.dtype(np.uint8), 1 / 256, 0) == "probabilities"
    assert output_kind_from_quantization(np.dtype(np.int8), 1 / 256, -128) == "probabilities"
    assert output_kind_from_quantization(np.dtype(np.int8), 0.1, 0) is None  # could be logits
    assert output_kind_from_quantization(np.dtype(np.float32), 0.0, 0) is None


def test_auto_decides_float_outputs_from_values():
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    logits = np.array([2.0, -1.0, 0.5], np.float32)
    assert looks_like_probabilities(probs) and not looks_like_probabilities(logits)
    np.testing.assert_allclose(to_scores(probs, 0, 0, "auto"), probs)
    np.testing.assert_allclose(to_scores(logits, 0, 0, "auto"), softmax(logits), rtol=1e-6)
    # values in [0, 1] that do not sum to 1 (sigmoid-like) are not a distribution
    sig = np.array([0.9, 0.8, 0.1], np.float32)
    assert to_scores(sig, 0, 0, "auto").sum() == pytest.approx(1.0)


def test_forced_kinds():
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    np.testing.assert_allclose(to_scores(probs, 0, 0, "logits"), softmax(probs), rtol=1e-6)
    logits = np.array([2.0, -1.0, 0.5], np.float32)
    np.testing.assert_allclose(to_scores(logits, 0, 0, "probabilities"), logits)


def test_int8_logits_output_dequantized_then_softmax():
    raw = np.array([-10, 20, 0], np.int8)  # scale 0.1: logits -1, 2, 0
    got = to_scores(raw, 0.1, 0, "auto")
    np.testing.assert_allclose(got, softmax(np.array([-1.0, 2.0, 0.0])), rtol=1e-5)


def test_cli_output_logits_applies_softmax():
    models = shared_or_skip()
    args = ["classify", "--model", str(models / VWW_FLOAT), "--mean", "0", "--std", "255",
            "--json", "--labels", str(models / "vww" / "vww_labels.txt"),
            str(models / "photos" / "squat.bmp")]
    plain = json.loads(edged(*args).stdout)
    forced = json.loads(edged(*args, "--output", "logits").stdout)
    p = {t["index"]: t["score"] for t in plain["top_k"]}
    f = {t["index"]: t["score"] for t in forced["top_k"]}
    want = softmax(np.array([p[0], p[1]]))
    assert f[0] == pytest.approx(want[0], abs=1e-5) and f[1] == pytest.approx(want[1], abs=1e-5)


def _info(*names: str) -> ModelInfo:
    outs = [TensorInfo(i, n, "float32", [1, 3], [1, 3], [], [], 0) for i, n in enumerate(names)]
    return ModelInfo(inputs=[], outputs=outs, op_count=1, custom_ops=[])


def test_output_selection_by_index_and_name(caplog):
    info = _info("boxes", "scores", "logits")
    assert _output_index(info, ModelConfig(path="m", output_tensor=2)) == 2
    assert _output_index(info, ModelConfig(path="m", output_tensor="scores")) == 1
    with caplog.at_level(logging.INFO):
        assert _output_index(info, ModelConfig(path="m")) == 0
    assert "3 outputs (boxes, scores, logits)" in caplog.text
    with pytest.raises(ModelError, match="no output named 'x'; outputs: boxes, scores, logits"):
        _output_index(info, ModelConfig(path="m", output_tensor="x"))
    with pytest.raises(ModelError, match="out of range"):
        _output_index(info, ModelConfig(path="m", output_tensor=3))


def test_cli_output_tensor_errors_are_one_line():
    models = shared_or_skip()
    for value, needle in (("5", "out of range"), ("nope", "no output named 'nope'")):
        proc = edged("classify", "--model", str(models / VWW_INT8), "--output-tensor", value,
                     str(models / "photos" / "cat.bmp"))
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and needle in lines[0], proc.stderr
    proc = edged("classify", "--model", str(models / VWW_INT8), "--output-tensor",
                 "Identity_int8", "--mean", "0", "--std", "255", "--json",
                 str(models / "photos" / "squat.bmp"))
    assert proc.returncode == 0 and json.loads(proc.stdout)["index"] == 1


# --- metadata, normalization, labels ----------------------------------------------------------

def test_imagenet_metadata_is_read():
    models = shared_or_skip()
    info = read_model_info((models / IMAGENET).read_bytes(), "m")
    assert info.mean == [127.5] and info.std == [127.5]
    assert info.labels_file == "imagenet_labels.txt"
    assert info.op_count == 66 and info.custom_ops == []


def test_normalization_sources(caplog):
    models = shared_or_skip()
    meta = load_model("a", ModelConfig(path=str(models / IMAGENET)))
    assert (meta.mean, meta.std, meta.normalization_from) == ([127.5], [127.5], "metadata")
    with caplog.at_level(logging.WARNING):
        over = load_model("b", ModelConfig(path=str(models / IMAGENET), mean=0, std=1))
    assert over.normalization_from == "metadata" and "not used" in caplog.text
    cfg = load_model("c", ModelConfig(path=str(models / VWW_INT8), mean=[0, 0, 0], std=255))
    assert (cfg.mean, cfg.std, cfg.normalization_from) == ([0, 0, 0], [255], "config")
    dflt = load_model("d", ModelConfig(path=str(models / VWW_INT8)))
    assert (dflt.mean, dflt.std, dflt.normalization_from) == ([127.5], [127.5], "default")


def test_metadata_labels_are_the_embedded_ones():
    models = shared_or_skip()
    loaded = load_model("a", ModelConfig(path=str(models / IMAGENET)))
    assert loaded.classes == 1001 and loaded.labels[0] == "background"
    assert loaded.labels[89] == "macaw"


def _patch_batch(data: bytes, batch: int) -> bytes:
    """The model with its input's stored batch size set to `batch` (shape_signature keeps -1)."""
    info = read_model_info(data, "m")
    assert info.inputs[0].shape_signature[0] == -1
    needle = struct.pack("<5i", 4, 1, *info.inputs[0].shape[1:])  # length-prefixed [1,H,W,C]
    at = data.index(needle)
    return data[:at + 4] + struct.pack("<i", batch) + data[at + 8:]


def test_dynamic_batch_stored_as_four_runs_with_one(tmp_path):
    models = shared_or_skip()
    path = tmp_path / "batch4.tflite"
    path.write_bytes(_patch_batch((models / VWW_INT8).read_bytes(), 4))
    assert read_model_info(path.read_bytes(), "m").inputs[0].shape[0] == 4
    loaded = load_model("b", ModelConfig(path=str(path), mean=0, std=255))
    backend = loaded.new_backend()
    backend.start()
    try:
        assert backend.input_buffer().shape == (96, 96, 3)
        top, _ = classify(backend, loaded, cv2.imread(str(models / "photos" / "squat.bmp")))
    finally:
        backend.close()
    assert top[0][0] == 1  # person, as with the unpatched model


def test_fixed_batch_other_than_one_is_a_clear_error(tmp_path):
    models = shared_or_skip()
    data = _patch_batch((models / VWW_INT8).read_bytes(), 4)
    sig = struct.pack("<5i", 4, -1, 96, 96, 3)
    at = data.index(sig)
    data = data[:at + 4] + struct.pack("<i", 4) + data[at + 8:]  # signature fixed at 4 too
    path = tmp_path / "fixed4.tflite"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="batch size is fixed at 4"):
        load_model("f", ModelConfig(path=str(path)))
    assert isinstance(CpuBackend, type)


# --- inspect ----------------------------------------------------------------------------------

def test_inspect_json_imagenet():
    models = shared_or_skip()
    proc = edged("inspect", "--json", str(models / IMAGENET))
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["shape"] == [1, 224, 224, 3]
    assert d["inputs"][0]["quantization"]["scales"] == [0.0078125]
    assert d["inputs"][0]["quantization"]["per_channel"] is False
    assert d["outputs"][0]["shape"] == [1, 1001]
    assert d["metadata"]["normalization"] == {"mean": [127.5], "std": [127.5]}
    assert d["embedded_labels"]["count"] == 1001
    assert d["op_count"] == 66 and d["delegates_needed"] == []
    assert d["runtime"].startswith("ai-edge-litert")


def test_inspect_text_edgetpu_and_dynamic_batch():
    models = shared_or_skip()
    proc = edged("inspect", str(models / "invalid" / "mobilenet_v2_1.0_224_quant_edgetpu.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert "custom: edgetpu-custom-op" in proc.stdout
    assert "delegates needed: edgetpu" in proc.stdout
    proc = edged("inspect", str(models / VWW_FLOAT))
    assert "signature [-1, 96, 96, 3]" in proc.stdout and "not quantized" in proc.stdout


def test_inspect_bad_files_one_line(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    for path in (bad, tmp_path / "missing.tflite"):
        proc = edged("inspect", str(path))
        lines = proc.stderr.splitlines()
        assert proc.returncode == 1 and len(lines) == 1 and str(path) in lines[0]
        assert "Traceback" not in proc.stderr


# --- evaluation mode --------------------------------------------------------------------------

def _eval_folder(tmp_path: Path) -> Path:
    photos = shared_or_skip() / "photos"
    root = tmp_path / "eval"
    # README top-1 for the CIFAR-10 int8 model: cat->cat, bird->bird, parrot->automobile,
    # grace_hopper->truck, squat->horse.
    layout = {"cat": ["cat.bmp"], "bird": ["bird.bmp", "parrot.jpg"], "truck": ["grace_hopper.bmp"],
              "dog": ["squat.bmp"]}
    for cls, files in layout.items():
        (root / cls).mkdir(parents=True)
        for f in files:
            (root / cls / f).symlink_to(photos / f)
    return root


def test_eval_mode_report(tmp_path):
    models = shared_or_skip()
    root = _eval_folder(tmp_path)
    args = ["classify", "--model", str(models / "cifar10" / "resnet_int8.tflite"),
            "--labels", str(models / "cifar10" / "cifar10_labels.txt"), "--mean", "0",
            "--std", "1", "--eval", str(root)]
    proc = edged(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["images"] == 5 and d["accuracy"] == pytest.approx(0.6)  # cat, bird, truck right
    assert d["per_class"]["bird"] == {"support": 2, "predicted": 1, "precision": 1.0,
                                      "recall": 0.5}
    assert d["per_class"]["dog"]["recall"] == 0.0 and d["per_class"]["dog"]["precision"] is None
    assert d["per_class"]["horse"]["precision"] == 0.0
    labels = d["confusion"]["labels"]
    matrix = d["confusion"]["rows_true_cols_predicted"]
    assert matrix[labels.index("bird")][labels.index("automobile")] == 1
    assert sum(map(sum, matrix)) == 5
    text = edged(*args)
    assert text.returncode == 0
    assert text.stdout.startswith("accuracy: 0.6000 (3/5 images)")
    assert "confusion (rows: true class, columns: predicted)" in text.stdout


def test_eval_folder_not_a_label(tmp_path):
    models = shared_or_skip()
    root = _eval_folder(tmp_path)
    (root / "zebra").mkdir()
    proc = edged("classify", "--model", str(models / "cifar10" / "resnet_int8.tflite"),
                 "--labels", str(models / "cifar10" / "cifar10_labels.txt"), "--eval", str(root))
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "'zebra'" in lines[0]


def test_progress_bar_on_request(tmp_path):
    models = shared_or_skip()
    photos = [str(models / "photos" / p) for p in ("cat.bmp", "bird.bmp", "parrot.jpg")]
    proc = edged("classify", "--model", str(models / IMAGENET), "--progress", "--timing",
                 *photos)
    assert proc.returncode == 0, proc.stderr
    assert "3/3" in proc.stderr and "img" in proc.stderr  # tqdm's bar, on stderr
    assert proc.stdout.count("time: inference ") == 3
    assert "Traceback" not in proc.stderr


def test_json_timing_fields():
    models = shared_or_skip()
    args = ["classify", "--model", str(models / IMAGENET), "--json",
            str(models / "photos" / "cat.bmp")]
    plain = json.loads(edged(*args).stdout)
    timed = json.loads(edged(*args, "--timing").stdout)
    assert "total_ms" not in plain and plain["inference_ms"] > 0
    assert timed["total_ms"] >= timed["inference_ms"] > 0
