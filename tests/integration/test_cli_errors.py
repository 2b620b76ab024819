"""The CLI as a user runs it: one clear stderr line per problem, and `edged classify` answers on
the real shared models and photos (held against ../shared/bench/reference.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edged import __version__
from tests.conftest import SHARED, edged, shared_or_skip

IMAGENET = "imagenet/mobilenet_v2_1.0_224_quant.tflite"
VWW_INT8 = "vww/vww_96_int8.tflite"
VWW_FLOAT = "vww/vww_96_float.tflite"
CIFAR_INT8 = "cifar10/resnet_int8.tflite"
CIFAR_FLOAT = "cifar10/resnet_float.tflite"
PHOTOS = ["parrot.jpg", "grace_hopper.bmp", "cat.bmp", "bird.bmp", "squat.bmp"]

# Top-1 from ../shared/models/README.md.
IMAGENET_TOP1 = {
    "parrot.jpg": (89, "macaw"),
    "grace_hopper.bmp": (653, "military uniform"),
    "cat.bmp": (286, "Egyptian cat"),
    "bird.bmp": (20, "chickadee"),
    "squat.bmp": (544, "dumbbell"),
}
CIFAR_TOP1 = {
    "parrot.jpg": "automobile",
    "grace_hopper.bmp": "truck",
    "cat.bmp": "cat",
    "bird.bmp": "bird",
    "squat.bmp": "horse",
}


def shared(rel: str) -> str:
    return str(shared_or_skip() / rel)


def photos(*names: str) -> list[str]:
    return [shared(f"photos/{n}") for n in (names or PHOTOS)]


def no_traceback(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_error_line(proc: subprocess.CompletedProcess, *must_contain: str) -> str:
    """Non-zero exit, no traceback, exactly one stderr line holding every `must_contain`."""
    no_traceback(proc)
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    for text in must_contain:
        assert text in lines[0], lines[0]
    return lines[0]


def classify(*args: str) -> subprocess.CompletedProcess:
    return no_traceback(edged("classify", *args))


def json_lines(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    out = {}
    for line in proc.stdout.splitlines():
        obj = json.loads(line)
        out[Path(obj["image"]).name] = obj
    return out


# --- model and labels problems ---------------------------------------------------------------


def test_missing_model(tmp_path):
    missing = tmp_path / "nope.tflite"
    line = one_error_line(edged("classify", "--model", str(missing), str(tmp_path / "x.jpg")))
    assert line == f"edged: --model: file not found: {missing}"


def test_missing_labels(tmp_path):
    missing = tmp_path / "nope.txt"
    proc = edged("classify", "--model", shared(VWW_INT8), "--labels", str(missing),
                 *photos("cat.bmp"))
    assert one_error_line(proc) == f"edged: --labels: file not found: {missing}"


def test_model_is_a_photo():
    model = shared("photos/parrot.jpg")
    one_error_line(edged("classify", "--model", model, *photos("cat.bmp")), model,
                   "not a TFLite model")


def test_model_is_a_text_file(tmp_path):
    model = tmp_path / "model.tflite"
    model.write_text("this is not a model\n")
    one_error_line(edged("classify", "--model", str(model), *photos("cat.bmp")), str(model),
                   "not a TFLite model")


def test_model_is_empty(tmp_path):
    model = tmp_path / "empty.tflite"
    model.write_bytes(b"")
    one_error_line(edged("classify", "--model", str(model), *photos("cat.bmp")), str(model),
                   "not a TFLite model")


@pytest.mark.parametrize("rel", [VWW_INT8, CIFAR_FLOAT, IMAGENET])
def test_truncated_model(tmp_path, rel):
    data = Path(shared(rel)).read_bytes()
    model = tmp_path / "truncated.tflite"
    model.write_bytes(data[: len(data) // 2])
    one_error_line(edged("classify", "--model", str(model), *photos("cat.bmp")), str(model),
                   "truncated or corrupt")


def test_model_truncated_by_a_few_bytes(tmp_path):
    """Whatever catches it (edged's check or the runtime's verifier): one line, no crash."""
    data = Path(shared(VWW_INT8)).read_bytes()
    model = tmp_path / "cut.tflite"
    model.write_bytes(data[:-10])
    proc = edged("classify", "--model", str(model), *photos("cat.bmp"))
    one_error_line(proc, str(model))
    assert proc.returncode == 1  # a clean EdgedError exit, not a signal


def test_edgetpu_model():
    model = shared("invalid/mobilenet_v2_1.0_224_quant_edgetpu.tflite")
    one_error_line(edged("classify", "--model", model, *photos("cat.bmp")), model, "Edge TPU")


def test_model_with_unresolved_custom_op():
    model = shared("invalid/model_invoking_error.tflite")
    line = one_error_line(edged("classify", "--model", model, *photos("cat.bmp")), model)
    assert "cannot load the model" in line and "custom op" in line


def test_labels_count_does_not_fit(tmp_path):
    labels = tmp_path / "five.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    proc = edged("classify", "--model", shared(VWW_INT8), "--labels", str(labels),
                 *photos("cat.bmp"))
    line = one_error_line(proc, str(labels))
    assert "5 labels" in line and "2 output classes" in line


def test_labels_of_another_model():
    labels = shared("cifar10/cifar10_labels.txt")
    one_error_line(edged("classify", "--model", shared(VWW_INT8), "--labels", labels,
                         *photos("cat.bmp")), labels, "10 labels", "2 output classes")


def test_labels_not_utf8(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("nicht\nPerson \u00e4\n".encode("latin-1"))
    one_error_line(edged("classify", "--model", shared(VWW_INT8), "--labels", str(labels),
                         *photos("cat.bmp")), str(labels), "not UTF-8")


def test_labels_duplicate_index(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("0 notperson\n0 person\n")
    one_error_line(edged("classify", "--model", shared(VWW_INT8), "--labels", str(labels),
                         *photos("cat.bmp")), str(labels), "twice")


def _with_embedded_labels(tmp_path: Path, text: str) -> Path:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as zf:
        zf.writestr("labels.txt", text)
    model = tmp_path / "with_labels.tflite"
    model.write_bytes(Path(shared(VWW_INT8)).read_bytes() + b.getvalue())
    return model


def test_embedded_labels_used(tmp_path):
    model = _with_embedded_labels(tmp_path, "nobody\nsomebody\n")
    proc = classify("--model", str(model), *photos("squat.bmp"), "--mean", "0", "--std", "255")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith("squat.bmp: somebody (0.9570)")


def test_embedded_labels_wrong_count(tmp_path):
    model = _with_embedded_labels(tmp_path, "a\nb\nc\nd\n")
    one_error_line(edged("classify", "--model", str(model), *photos("cat.bmp")), str(model),
                   "embedded labels", "4 labels", "2 output classes")


def test_embedded_labels_duplicate_index(tmp_path):
    model = _with_embedded_labels(tmp_path, "0 a\n0 b\n")
    one_error_line(edged("classify", "--model", str(model), *photos("cat.bmp")), str(model))


# --- bad options -----------------------------------------------------------------------------


def test_top_k_zero():
    proc = edged("classify", "--model", shared(VWW_INT8), "--top-k", "0", *photos("cat.bmp"))
    assert one_error_line(proc) == "edged: --top-k must be at least 1"


def test_mean_with_wrong_channel_count():
    proc = edged("classify", "--model", shared(VWW_INT8), "--labels",
                 shared("vww/vww_labels.txt"), *photos("cat.bmp"), "--mean", "1,2")
    one_error_line(proc, "mean has 2 values for a 3-channel input")


def test_std_zero():
    proc = edged("classify", "--model", shared(VWW_INT8), *photos("cat.bmp"), "--std", "0")
    one_error_line(proc, "std")


def test_mean_std_before_images_as_documented():
    proc = edged("classify", "--model", shared(VWW_INT8), "--labels",
                 shared("vww/vww_labels.txt"), "--mean", "0", "--std", "255",
                 *photos("squat.bmp"))
    assert proc.returncode == 0, proc.stderr
    assert "person" in proc.stdout


# --- images ----------------------------------------------------------------------------------


def test_unreadable_image_among_good_ones(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image\n")
    good1, good2 = photos("parrot.jpg", "cat.bmp")
    proc = classify("--model", shared(IMAGENET), good1, str(bad), good2)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"edged: {bad}: cannot read image"]
    firsts = [ln for ln in proc.stdout.splitlines() if not ln.startswith("  ")]
    assert firsts == [f"{good1}: macaw (0.9961)", f"{good2}: Egyptian cat (0.8359)"]


def test_missing_image_among_good_ones(tmp_path):
    missing = tmp_path / "gone.png"
    proc = classify("--model", shared(IMAGENET), "--json", str(missing), *photos("bird.bmp"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"edged: {missing}: cannot read image"]
    assert [r["label"] for r in json_lines(proc).values()] == ["chickadee"]


@pytest.mark.parametrize(("name", "keep"), [("parrot.jpg", 20000), ("cat.bmp", 100)])
def test_truncated_image_one_line(tmp_path, name, keep):
    cut = tmp_path / name
    cut.write_bytes(Path(shared(f"photos/{name}")).read_bytes()[:keep])
    proc = classify("--model", shared(IMAGENET), str(cut), *photos("bird.bmp"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"edged: {cut}: cannot read image"]


# --- answers on the real models --------------------------------------------------------------


def test_imagenet_top1_text():
    proc = classify("--model", shared(IMAGENET), *photos())
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no runtime chatter
    firsts = [ln for ln in proc.stdout.splitlines() if not ln.startswith("  ")]
    assert len(firsts) == len(PHOTOS)
    for line, name in zip(firsts, PHOTOS):
        path, _, rest = line.partition(": ")
        assert Path(path).name == name
        assert rest.rsplit(" (", 1)[0] == IMAGENET_TOP1[name][1]
    # Default top-k is 3: two runner-up lines per image.
    assert len(proc.stdout.splitlines()) == 3 * len(PHOTOS)


def test_imagenet_json():
    proc = classify("--model", shared(IMAGENET), "--json", "--top-k", "5", *photos())
    assert proc.returncode == 0, proc.stderr
    results = json_lines(proc)
    assert list(results) == PHOTOS
    for name, r in results.items():
        assert set(r) >= {"image", "label", "index", "score", "top_k", "inference_ms"}
        assert (r["index"], r["label"]) == IMAGENET_TOP1[name]
        assert 0.0 <= r["score"] <= 1.0
        assert r["inference_ms"] > 0
        assert len(r["top_k"]) == 5
        assert r["top_k"][0] == {"label": r["label"], "index": r["index"], "score": r["score"]}
        scores = [t["score"] for t in r["top_k"]]
        assert scores == sorted(scores, reverse=True)
        assert all(set(t) == {"label", "index", "score"} for t in r["top_k"])


def test_imagenet_with_labels_file_same_as_embedded():
    embedded = json_lines(classify("--model", shared(IMAGENET), "--json", *photos()))
    with_file = json_lines(classify("--model", shared(IMAGENET), "--labels",
                                    shared("imagenet/imagenet_labels.txt"), "--json", *photos()))
    strip = ("inference_ms",)
    assert ({k: {f: v for f, v in r.items() if f not in strip} for k, r in embedded.items()}
            == {k: {f: v for f, v in r.items() if f not in strip} for k, r in with_file.items()})


@pytest.mark.parametrize("rel", [VWW_INT8, VWW_FLOAT])
def test_vww_person(rel):
    proc = classify("--model", shared(rel), "--labels", shared("vww/vww_labels.txt"), "--json",
                    *photos(), "--mean", "0", "--std", "255")
    assert proc.returncode == 0, proc.stderr
    results = json_lines(proc)
    assert results["squat.bmp"]["label"] == "person"
    for name in ("parrot.jpg", "grace_hopper.bmp", "cat.bmp"):
        assert results[name]["label"] == "notperson", name
    # bird.bmp is a near tie (README): not asserted.


@pytest.mark.parametrize("rel", [CIFAR_INT8, CIFAR_FLOAT])
def test_cifar10(rel):
    proc = classify("--model", shared(rel), "--labels", shared("cifar10/cifar10_labels.txt"),
                    "--json", *photos(), "--mean", "0", "--std", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    got = {name: r["label"] for name, r in json_lines(proc).items()}
    assert got == CIFAR_TOP1


def _reference(model: str, labels: str, *extra: str) -> dict[str, dict]:
    script = SHARED / "bench" / "reference.py"
    if not script.exists():
        pytest.skip(f"reference pipeline absent: {script}")
    proc = subprocess.run([sys.executable, str(script), model, labels, *photos(), *extra],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {r["src"]: r for r in map(json.loads, proc.stdout.splitlines())}


@pytest.mark.parametrize(
    ("rel", "labels", "norm"),
    [
        (IMAGENET, "imagenet/imagenet_labels.txt", ()),
        (VWW_INT8, "vww/vww_labels.txt", ("--mean", "0", "--std", "255")),
        (VWW_FLOAT, "vww/vww_labels.txt", ("--mean", "0", "--std", "255")),
        (CIFAR_INT8, "cifar10/cifar10_labels.txt", ("--mean", "0", "--std", "1")),
        (CIFAR_FLOAT, "cifar10/cifar10_labels.txt", ("--mean", "0", "--std", "1")),
    ],
    ids=["imagenet", "vww-int8", "vww-float", "cifar-int8", "cifar-float"],
)
def test_scores_match_reference(rel, labels, norm):
    model, labels = shared(rel), shared(labels)
    ref = _reference(model, labels, *norm)
    proc = classify("--model", model, "--labels", labels, "--json", "--top-k", "1000",
                    *photos(), *norm)
    assert proc.returncode == 0, proc.stderr
    ours = json_lines(proc)
    assert set(ours) == set(ref) == set(PHOTOS)
    for name in PHOTOS:
        r, o = ref[name], ours[name]
        if rel == IMAGENET or r["margin"] > 0.02:  # near ties may flip between kernels
            assert o["index"] == r["index"], (name, o["label"], r["label"])
        scores = {t["index"]: t["score"] for t in o["top_k"]}
        assert abs(scores[r["index"]] - r["score"]) <= 0.02, name
        assert abs(o["score"] - r["score"]) <= 0.02, name


# --- other commands --------------------------------------------------------------------------


def test_version():
    proc = no_traceback(edged("--version"))
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"edged {__version__}"
    assert __version__ and __version__[0].isdigit()


def test_run_with_missing_config(tmp_path):
    missing = tmp_path / "missing.yaml"
    line = one_error_line(edged("run", "-c", str(missing), timeout=60))
    assert line.startswith(f"{missing}: cannot read config")


def test_run_with_invalid_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("camras: {}\n")
    proc = no_traceback(edged("run", "-c", str(cfg), timeout=60))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert f"{cfg}:1: camras: unknown key" in lines
    assert all(ln.startswith(f"{cfg}:") for ln in lines)


def test_no_command_is_usage_error():
    proc = no_traceback(edged())
    assert proc.returncode == 2
    assert "usage: edged" in proc.stderr


def test_check_config_warns_of_another_kinds_setting_in_one_line(tmp_path):
    """A setting of another source kind is not an error (older configs keep working) but
    check-config says, in one line with its file and line, that it is ignored."""
    from tests.conftest import demo_config, write_config

    data = demo_config(1883)
    data["cameras"]["conveyor"]["transport"] = "udp"  # RTSP's, on a video file
    path = write_config(tmp_path / "c.yaml", data)
    done = edged("check-config", "-c", str(path))
    assert done.returncode == 0, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("warning:")]
    assert line.startswith(f"warning: {path}:")
    assert line.endswith("cameras.conveyor.transport: ignored: a setting of rtsp sources, "
                         "and this camera is video, from its source")
    assert done.stdout.strip() == f"{path}: ok"
