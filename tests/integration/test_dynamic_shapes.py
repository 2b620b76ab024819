"""Shows: models whose output shape is stored empty (`[]`) or only as a dynamic signature
(`[-1, N]`, beside a placeholder shape) serve as their unpatched originals do: `edged classify`
and the daemon give the reference pipeline's top-1, with shapes taken from the interpreter after
allocation. The models are real ones with their output's stored shape rewritten in the
flatbuffer (tests/helpers/tflite_edit.py); the demo model covers the same paths without
../shared."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edged.config import ModelConfig
from edged.model.info import read_model_info
from edged.model.loaded import load_model
from tests.conftest import DEMO, SHARED, edged, shared_or_skip, write_config
from tests.helpers.tflite_edit import output_tensor, rewrite_shape
from tests.helpers.subscriber import Subscriber

PHOTOS = ["parrot.jpg", "grace_hopper.bmp", "cat.bmp", "bird.bmp", "squat.bmp"]

# (model, labels, mean, std, rewrite of output 0, photos whose top-1 is a near tie)
SHARED_CASES = {
    # The case: 1001 labels, and a file that says the output has no shape at all.
    "imagenet_empty": ("imagenet/mobilenet_v2_1.0_224_quant.tflite",
                       "imagenet/imagenet_labels.txt", None, None, {"shape": []}, set()),
    # Shape empty, the signature dynamic in its batch: [-1, 2].
    "vww_empty_dynamic": ("vww/vww_96_int8.tflite", "vww/vww_labels.txt", 0, 255,
                          {"shape": []}, {"bird.bmp"}),
    # A placeholder shape [1, 1] beside the signature [-1, 10].
    "cifar_placeholder": ("cifar10/resnet_float.tflite", "cifar10/cifar10_labels.txt", 0, 1,
                          {"shape": [1, 1]}, set()),
}
# The demo model sizes this output only when it runs: allocation alone leaves it [1, 1].
DEMO_REWRITE = {"shape": [1, 1], "signature": [-1, -1]}


def _patched(src: Path, dest: Path, rewrite: dict) -> Path:
    data = src.read_bytes()
    dest.write_bytes(rewrite_shape(data, output_tensor(data), **rewrite))
    return dest


def _norm(mean, std) -> list[str]:  # noqa: ANN001
    return [] if mean is None else ["--mean", str(mean), "--std", str(std)]


def _reference(model: Path, labels: Path, mean, std, images: list[Path]  # noqa: ANN001
               ) -> dict[str, int]:
    """Top-1 per image file name from ../shared/bench/reference.py."""
    script = SHARED / "bench" / "reference.py"
    if not script.exists():
        pytest.skip(f"reference pipeline absent: {script}")
    proc = subprocess.run([sys.executable, str(script), str(model), str(labels),
                           *map(str, images), *_norm(mean, std)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {r["src"]: r["index"] for r in map(json.loads, proc.stdout.splitlines())}


def _daemon_top1(tmp_path: Path, port: int, sub: Subscriber,
                 cases: dict[str, tuple[Path, Path, object, object, list[Path]]]
                 ) -> dict[str, dict[str, int]]:
    """Run one daemon with an image-folder camera per case (model, labels, mean, std,
    images); the top-1 of every result, per camera and file."""
    cfg: dict = {"node_id": "dyn", "mqtt": {"host": "127.0.0.1", "port": port},
                 "metrics": {"enabled": False}, "models": {}, "cameras": {}}
    for key, (model, labels, mean, std, images) in cases.items():
        folder = tmp_path / f"images-{key}"
        folder.mkdir()
        for image in images:
            (folder / image.name).symlink_to(image)
        entry = {"path": str(model), "labels": str(labels), "workers": 1}
        if mean is not None:
            entry.update(mean=mean, std=std)
        cfg["models"][key] = entry
        cfg["cameras"][key] = {"source": str(folder), "model": key}
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert sub.wait_for(lambda: all(len(sub.on(f"/{k}/result")) == len(c[4])
                                    for k, c in cases.items()), 20)
    return {k: {m.json["file"]: m.json["index"] for m in sub.on(f"/{k}/result")}
            for k in cases}


def _classify_top1(model: Path, labels: Path, images: list[Path], *norm: str) -> dict[str, int]:
    proc = edged("classify", "--model", str(model), "--labels", str(labels), "--json", *norm,
                 *map(str, images))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return {Path(r["image"]).name: r["index"] for r in map(json.loads, proc.stdout.splitlines())}


@pytest.fixture(scope="module")
def demo_frames(tmp_path_factory) -> list[Path]:
    """Every 60th frame of the demo video, as PNG files."""
    out = tmp_path_factory.mktemp("frames")
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    paths, i = [], 0
    try:
        while i < 600:
            ok, frame = cap.read()
            if not ok:
                break
            if i % 60 == 0:
                paths.append(out / f"f{i:03d}.png")
                cv2.imwrite(str(paths[-1]), frame)
            i += 1
    finally:
        cap.release()
    assert len(paths) == 10
    return paths


def test_demo_with_a_placeholder_output_shape_loads_from_the_interpreter(tmp_path):
    path = _patched(DEMO / "model.tflite", tmp_path / "m.tflite", DEMO_REWRITE)
    stored = read_model_info(path.read_bytes(), str(path)).outputs[0]
    assert (stored.shape, stored.shape_signature) == ([1, 1], [-1, -1])
    loaded = load_model("d", ModelConfig(path=str(path), labels=str(DEMO / "labels.txt")))
    assert loaded.classes == 5 and loaded.info.outputs[0].shape == [1, 5]
    assert loaded.file_info.outputs[0].shape == [1, 1]  # the file's view is kept


def test_classify_on_patched_demo_equals_the_original(tmp_path, demo_frames):
    path = _patched(DEMO / "model.tflite", tmp_path / "m.tflite", DEMO_REWRITE)
    labels = DEMO / "labels.txt"
    ours = _classify_top1(path, labels, demo_frames)
    assert ours == _classify_top1(DEMO / "model.tflite", labels, demo_frames)
    if (SHARED / "bench" / "reference.py").exists():
        assert ours == _reference(path, labels, None, None, demo_frames)


def test_daemon_on_patched_demo_equals_the_original(tmp_path, broker, subscriber, demo_frames):
    path = _patched(DEMO / "model.tflite", tmp_path / "m.tflite", DEMO_REWRITE)
    labels = DEMO / "labels.txt"
    got = _daemon_top1(tmp_path, broker.port, subscriber,
                       {"demo": (path, labels, None, None, demo_frames)})
    assert got["demo"] == _classify_top1(DEMO / "model.tflite", labels, demo_frames)


def test_inspect_shows_file_and_allocated_shapes(tmp_path):
    path = _patched(DEMO / "model.tflite", tmp_path / "m.tflite", DEMO_REWRITE)
    proc = edged("inspect", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["outputs"][0]
    assert (out["shape"], out["shape_signature"], out["allocated_shape"]) == (
        [1, 1], [-1, -1], [1, 5])
    text = edged("inspect", str(path)).stdout
    assert "shape [1, 1] signature [-1, -1] (file), allocated [1, 5]" in text


def test_inspect_of_an_edgetpu_model_says_why_there_is_no_allocated_view():
    models = shared_or_skip()
    proc = edged("inspect", "--json",
                 str(models / "invalid" / "mobilenet_v2_1.0_224_quant_edgetpu.tflite"))
    d = json.loads(proc.stdout)
    assert d["outputs"][0]["shape"] == [1, 1001] and d["outputs"][0]["allocated_shape"] is None
    assert "Edge TPU" in d["allocation_error"]


@pytest.mark.parametrize("key", list(SHARED_CASES))
def test_classify_gives_the_reference_top1(key, tmp_path):
    models = shared_or_skip()
    model, labels, mean, std, rewrite, ties = SHARED_CASES[key]
    path = _patched(models / model, tmp_path / "m.tflite", rewrite)
    stored = read_model_info(path.read_bytes(), str(path)).outputs[0]
    assert stored.shape == rewrite["shape"]
    photos = [models / "photos" / p for p in PHOTOS]
    ours = _classify_top1(path, models / labels, photos, *_norm(mean, std))
    ref = _reference(path, models / labels, mean, std, photos)
    assert ref == _reference(models / model, models / labels, mean, std, photos)  # same model
    for photo in PHOTOS:
        if photo not in ties:
            assert ours[photo] == ref[photo], (key, photo)


def test_daemon_gives_the_reference_top1(tmp_path, broker, subscriber):
    """One daemon, a camera per patched model, every result against reference.py."""
    models = shared_or_skip()
    photos = [models / "photos" / p for p in PHOTOS]
    cases = {key: (_patched(models / model, tmp_path / f"{key}.tflite", rewrite),
                   models / labels, mean, std, photos)
             for key, (model, labels, mean, std, rewrite, _) in SHARED_CASES.items()}
    got = _daemon_top1(tmp_path, broker.port, subscriber, cases)
    for key, (path, labels, mean, std, _) in cases.items():
        ref = _reference(path, labels, mean, std, photos)
        ties = SHARED_CASES[key][5]
        assert set(got[key]) == set(PHOTOS)
        for photo in PHOTOS:
            if photo not in ties:
                assert got[key][photo] == ref[photo], (key, photo)


# --- an accelerator-only model: the file must be complete, or its CPU twin fills the gap ------

EDGETPU = "invalid/mobilenet_v2_1.0_224_quant_edgetpu.tflite"


def test_edgetpu_model_with_an_empty_output_needs_its_cpu_twin(tmp_path):
    models = shared_or_skip()
    path = _patched(models / EDGETPU, tmp_path / "tpu.tflite", {"shape": []})
    photo = str(models / "photos" / "parrot.jpg")
    proc = edged("classify", "--model", str(path), "--delegate", "edgetpu", photo)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "no complete shape in the file" in lines[-1] and "give cpu_path" in lines[-1]
    # With the CPU version beside it, the shapes are the CPU interpreter's (nothing opens the
    # TPU at load: the backend starts later).
    loaded = load_model("tpu", ModelConfig(path=str(path), delegate="edgetpu",
                                           cpu_path=str(models / SHARED_CASES[
                                               "imagenet_empty"][0])))
    assert loaded.classes == 1001 and loaded.info.outputs[0].shape == [1, 1001]
    assert loaded.file_info.outputs[0].shape == []
