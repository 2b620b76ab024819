"""The same bad models under tflite-runtime 2.14 (numpy<2), in the second venv that
scripts/setup.sh builds (.venv-tflite): one clear line and exit 1, never a crash. A truncated
model makes tflite-runtime itself segfault, which edged's file check must prevent."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, shared_or_skip

VENV = Path(os.environ.get("EDGED_TFLITE_VENV", ROOT / ".venv-tflite"))
PY = VENV / "bin" / "python"


def tflite(*args: str) -> subprocess.CompletedProcess:
    if not PY.exists():
        pytest.skip(f"{VENV} is absent: scripts/setup.sh could not build the tflite-runtime "
                    "venv here (tflite-runtime 2.14 has wheels for CPython 3.8-3.11 only)")
    return subprocess.run([str(PY), *args], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)


def one_line(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # not a signal (segfault: -11)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_runtime_is_tflite_runtime():
    proc = tflite("-c", "import numpy, edged.model.runtime as r; print(r.find_runtime(), "
                        "numpy.__version__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("tflite-runtime 2.14.0 1.")


def test_classifies_like_litert_on_imagenet():
    models = shared_or_skip()
    proc = tflite("-m", "edged", "classify", "--json", "--model",
                  str(models / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"),
                  str(models / "photos" / "parrot.jpg"), str(models / "photos" / "cat.bmp"))
    assert proc.returncode == 0, proc.stderr
    got = [(r["index"], r["label"]) for r in map(json.loads, proc.stdout.splitlines())]
    assert got == [(89, "macaw"), (286, "Egyptian cat")]


def test_inspect_names_the_runtime():
    models = shared_or_skip()
    proc = tflite("-m", "edged", "inspect", "--json", str(models / "vww" / "vww_96_int8.tflite"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runtime"] == "tflite-runtime 2.14.0"


def test_raw_tflite_runtime_crashes_on_truncated_model(tmp_path):
    """Why edged checks the file first: tflite-runtime itself dies on this file."""
    models = shared_or_skip()
    data = (models / "vww" / "vww_96_int8.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(data[: len(data) // 2])
    proc = tflite("-c", "import sys; from tflite_runtime.interpreter import Interpreter; "
                        "i = Interpreter(model_path=sys.argv[1]); i.allocate_tensors()", str(cut))
    assert proc.returncode != 0


@pytest.mark.parametrize("rel", ["vww/vww_96_int8.tflite", "cifar10/resnet_float.tflite",
                                 "imagenet/mobilenet_v2_1.0_224_quant.tflite"])
def test_truncated_model_is_one_line(tmp_path, rel):
    models = shared_or_skip()
    data = (models / rel).read_bytes()
    cuts = [("half", data[: len(data) // 2]), ("head", data[:64])]
    if not rel.startswith("imagenet"):  # that file ends in a zip of labels: its tail is not model
        cuts.append(("tail", data[:-10]))
    for name, cut in cuts:
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(cut)
        proc = tflite("-m", "edged", "classify", "--model", str(path),
                      str(models / "photos" / "cat.bmp"))
        one_line(proc, str(path))
        proc = tflite("-m", "edged", "inspect", str(path))
        one_line(proc, str(path))


def test_edgetpu_model_is_one_line():
    models = shared_or_skip()
    model = str(models / "invalid" / "mobilenet_v2_1.0_224_quant_edgetpu.tflite")
    one_line(tflite("-m", "edged", "classify", "--model", model,
                    str(models / "photos" / "cat.bmp")), model, "Edge TPU")


def test_unresolved_custom_op_is_one_line():
    models = shared_or_skip()
    model = str(models / "invalid" / "model_invoking_error.tflite")
    one_line(tflite("-m", "edged", "classify", "--model", model,
                    str(models / "photos" / "cat.bmp")), model, "fake-op-double")


def test_not_a_model_is_one_line(tmp_path):
    path = tmp_path / "x.tflite"
    path.write_text("hello\n")
    one_line(tflite("-m", "edged", "classify", "--model", str(path), str(path)),
             "not a TFLite model")


def test_edgetpu_fallback_under_tflite_runtime():
    models = shared_or_skip()
    proc = tflite("-m", "edged", "classify", "--json", "--model",
                  str(models / "invalid" / "mobilenet_v2_1.0_224_quant_edgetpu.tflite"),
                  "--delegate", "edgetpu", "--cpu-path",
                  str(models / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"),
                  str(models / "photos" / "cat.bmp"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] == "Egyptian cat"
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "running on the CPU" in lines[0], proc.stderr
