"""Accelerators without the hardware: the Edge TPU path up to load_delegate runs for real (and
fails here: no libedgetpu.so.1), external delegates the same; mid-run failures (invoke raises,
invoke hangs) use a Backend subclass around the real CPU interpreter, since no accelerator can
fail on cue here."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edged.inference.backends.base import AcceleratorError
from edged.inference.backends.cpu import CpuBackend
from edged.inference.backends.edgetpu import EdgeTpuBackend
from edged.inference.backends.fallback import AcceleratorState, FallbackBackend
from edged.config import ModelConfig, load_config
from edged.app.daemon import Daemon
from edged.errors import ModelError
from edged.service.metrics import Metrics
from edged.model.loaded import load_model
from edged.inference.worker import classify
from tests.conftest import edged, shared_or_skip, write_config

EDGETPU = "invalid/mobilenet_v2_1.0_224_quant_edgetpu.tflite"
CPU_TWIN = "imagenet/mobilenet_v2_1.0_224_quant.tflite"


def _paths():
    models = shared_or_skip()
    return str(models / EDGETPU), str(models / CPU_TWIN), str(models / "photos" / "cat.bmp")


def _stderr_lines(proc) -> list[str]:  # noqa: ANN001
    assert "Traceback" not in proc.stderr, proc.stderr
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_edgetpu_fallback_cpu_classifies_and_logs_once():
    tpu, twin, cat = _paths()
    proc = edged("classify", "--model", tpu, "--delegate", "edgetpu", "--fallback", "cpu",
                 "--cpu-path", twin, "--json", cat, cat)
    assert proc.returncode == 0, proc.stderr
    lines = _stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert "libedgetpu.so.1" in lines[0] and "running on the CPU" in lines[0]
    assert "mobilenet_v2_1.0_224_quant.tflite" in lines[0]
    rows = [__import__("json").loads(line) for line in proc.stdout.splitlines()]
    assert [(r["index"], r["label"]) for r in rows] == [(286, "Egyptian cat")] * 2  # twin's labels


def test_edgetpu_fallback_fail_is_one_clear_error():
    tpu, twin, cat = _paths()
    proc = edged("classify", "--model", tpu, "--delegate", "edgetpu", "--fallback", "fail",
                 "--cpu-path", twin, cat)
    lines = _stderr_lines(proc)
    assert proc.returncode == 1
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edged: ") and "Edge TPU delegate" in lines[0]
    assert "libedgetpu.so.1" in lines[0]


def test_edgetpu_model_without_delegate_says_so():
    tpu, _, cat = _paths()
    proc = edged("classify", "--model", tpu, cat)
    lines = _stderr_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1 and "Edge TPU" in lines[0]


def test_edgetpu_without_cpu_twin_cannot_fall_back():
    tpu, _, cat = _paths()
    labels = str(shared_or_skip() / "imagenet" / "imagenet_labels.txt")
    proc = edged("classify", "--model", tpu, "--labels", labels, "--delegate", "edgetpu", cat)
    lines = _stderr_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1
    assert "no CPU model to fall back to" in lines[0]


def test_cpu_twin_must_match(tmp_path):
    tpu, _, cat = _paths()
    other = str(shared_or_skip() / "vww" / "vww_96_int8.tflite")
    proc = edged("classify", "--model", tpu, "--delegate", "edgetpu", "--cpu-path", other, cat)
    lines = _stderr_lines(proc)
    assert proc.returncode == 1 and len(lines) == 1 and "differs" in lines[0]


@pytest.mark.parametrize("device", [None, "usb", "usb:1", "pci:0"])
def test_edgetpu_backend_reaches_load_delegate(device):
    tpu, _, _ = _paths()
    backend = EdgeTpuBackend(open(tpu, "rb").read(), device=device, name=tpu)
    with pytest.raises(AcceleratorError) as err:
        backend.start()
    assert "libedgetpu.so.1" in str(err.value) and "cannot open shared object" in str(err.value)
    if device:
        assert device in str(err.value)
    backend.close()
    backend.close()


def test_bad_edgetpu_device_is_a_config_error(tmp_path):
    with pytest.raises(ValueError):
        ModelConfig(path="m.tflite", delegate="edgetpu", device="usb0")


def test_external_delegate_missing_library(tmp_path):
    models = shared_or_skip()
    model = str(models / "vww" / "vww_96_int8.tflite")
    cat = str(models / "photos" / "squat.bmp")
    lib = str(tmp_path / "libnothere.so")
    ok = edged("classify", "--model", model, "--delegate", lib, "--mean", "0", "--std", "255",
               "--labels", str(models / "vww" / "vww_labels.txt"), cat)
    assert ok.returncode == 0 and "person" in ok.stdout
    assert len(_stderr_lines(ok)) == 1 and lib in ok.stderr
    bad = edged("classify", "--model", model, "--delegate", lib, "--fallback", "fail",
                "--labels", str(models / "vww" / "vww_labels.txt"), cat)
    lines = _stderr_lines(bad)
    assert bad.returncode == 1 and len(lines) == 1 and "cannot load the delegate" in lines[0]


def test_litert_npu_accelerator_or_clear_error():
    """LiteRT's hardware accelerators with CPU for what they do not support: NPU|CPU runs here
    (no NPU: all on the CPU); GPU has no device here and falls back with a clear line."""
    models = shared_or_skip()
    model = str(models / "vww" / "vww_96_int8.tflite")
    squat = str(models / "photos" / "squat.bmp")
    for delegate in ("npu", "gpu"):
        proc = edged("classify", "--model", model, "--delegate", delegate, "--mean", "0",
                     "--std", "255", "--labels", str(models / "vww" / "vww_labels.txt"),
                     "--json", squat)
        assert proc.returncode == 0, proc.stderr
        assert '"label": "person"' in proc.stdout
        lines = [ln for ln in _stderr_lines(proc) if not ln.startswith("INFO: [")]
        assert len(lines) <= 1, proc.stderr


def test_daemon_edgetpu_fallback_metric_and_log(tmp_path, broker, caplog):
    tpu, twin, _ = _paths()
    photos = shared_or_skip() / "photos"
    cfg = load_config(write_config(tmp_path / "c.yaml", {
        "node_id": "n", "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "metrics": {"listen": "127.0.0.1:0"},
        "models": {"tpu": {"path": tpu, "delegate": "edgetpu", "fallback": "cpu",
                           "cpu_path": twin, "workers": 2}},
        "cameras": {"c": {"source": str(photos), "model": "tpu"}}}))
    registry = CollectorRegistry()
    stop = threading.Event()
    daemon = Daemon(cfg, registry)
    with caplog.at_level(logging.INFO):
        daemon.run(stop)  # the folder ends: the daemon finishes by itself
    get = registry.get_sample_value
    assert get("edged_accelerator_fallbacks_total", {"model": "tpu", "reason": "load_failed"}) == 2
    assert get("edged_frames_processed_total", {"camera": "c"}) == 5
    warnings = [r.getMessage() for r in caplog.records if "running on the CPU" in r.getMessage()]
    assert len(warnings) == 1 and "libedgetpu.so.1" in warnings[0]


# --- mid-run failures: a Backend subclass around the real CPU interpreter ---------------------

class FlakyAccelerator(CpuBackend):
    """The real CPU interpreter standing in for an accelerator that fails on cue."""

    key = ""  # not registered
    fail_after: int | None = None
    hang_s: float = 0.0

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.calls = 0

    @property
    def label(self) -> str:
        return "flaky accelerator"

    def invoke(self) -> None:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            if self.hang_s:
                time.sleep(self.hang_s)
            else:
                raise RuntimeError("device fell off the bus")
        super().invoke()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _setup(fail_after: int | None, hang_s: float = 0.0, timeout: float = 5.0):
    models = shared_or_skip()
    cfg = ModelConfig(path=str(models / CPU_TWIN))
    loaded = load_model("m", cfg)
    data = loaded.model_bytes
    made: list[FlakyAccelerator] = []

    def make_accel() -> FlakyAccelerator:
        b = FlakyAccelerator(data, name="flaky")
        b.fail_after, b.hang_s = fail_after, hang_s
        made.append(b)
        return b

    metrics = Metrics(CollectorRegistry())
    state = AcceleratorState("m", "flaky")
    state.bind(metrics)
    clock = Clock()
    fb = FallbackBackend(make_accel, lambda: CpuBackend(data, name="cpu"), state=state,
                         policy="cpu", retry_s=30, invoke_timeout_s=timeout, clock=clock,
                         name="m")
    image = __import__("cv2").imread(str(models / "photos" / "cat.bmp"))
    return loaded, fb, made, metrics, clock, image


def _gauge(metrics: Metrics, backend: str) -> float:
    return metrics.registry.get_sample_value("edged_accelerator_workers",
                                             {"model": "m", "backend": backend})


def test_invoke_raises_mid_run_switches_to_cpu_and_retries(caplog):
    loaded, fb, made, metrics, clock, image = _setup(fail_after=2)
    fb.start()
    try:
        assert fb.on_accelerator and _gauge(metrics, "flaky") == 1
        expected = classify(fb, loaded, image)[0]
        classify(fb, loaded, image)
        with caplog.at_level(logging.INFO):
            top, _ = classify(fb, loaded, image)  # the accelerator raises: rerun on the CPU
            assert top == expected  # the frame in hand is not lost
            assert not fb.on_accelerator
            assert _gauge(metrics, "flaky") == 0 and _gauge(metrics, "cpu") == 1
            for _ in range(3):
                assert classify(fb, loaded, image)[0] == expected
            assert len(made) == 1  # no retry before retry_s
            clock.now = 31  # retry_s later: a fresh accelerator is tried, and works
            assert classify(fb, loaded, image)[0] == expected
        assert len(made) == 2 and fb.on_accelerator
        assert _gauge(metrics, "flaky") == 1 and _gauge(metrics, "cpu") == 0
        get = metrics.registry.get_sample_value
        assert get("edged_accelerator_fallbacks_total",
                   {"model": "m", "reason": "invoke_failed"}) == 1
        msgs = [r.getMessage() for r in caplog.records]
        assert sum("running on the CPU" in m for m in msgs) == 1
        assert any("device fell off the bus" in m for m in msgs)
        assert any("running on the flaky accelerator again" in m for m in msgs)
    finally:
        fb.close()
        fb.close()
    assert _gauge(metrics, "flaky") == 0 and _gauge(metrics, "cpu") == 0


def test_invoke_timeout_mid_run_switches_to_cpu():
    loaded, fb, made, metrics, clock, image = _setup(fail_after=1, hang_s=3.0, timeout=0.3)
    fb.start()
    try:
        expected = classify(fb, loaded, image)[0]
        t0 = time.monotonic()
        top, _ = classify(fb, loaded, image)
        assert time.monotonic() - t0 < 2.5  # did not wait for the hung invoke
        assert top == expected and not fb.on_accelerator
        assert metrics.registry.get_sample_value(
            "edged_accelerator_fallbacks_total", {"model": "m", "reason": "invoke_timeout"}) == 1
    finally:
        fb.close()


def test_fallback_fail_policy_raises():
    loaded, _, _, _, _, image = _setup(fail_after=0)
    data = loaded.model_bytes

    def make() -> FlakyAccelerator:
        b = FlakyAccelerator(data, name="flaky")
        b.fail_after = 0
        return b

    fb = FallbackBackend(make, None, state=AcceleratorState("m", "flaky"), policy="fail",
                         invoke_timeout_s=0)
    fb.start()
    with pytest.raises(ModelError, match="device fell off the bus"):
        classify(fb, loaded, image)
    fb.close()


def test_accelerator_that_cannot_start_and_fail_policy():
    class Broken(CpuBackend):
        key = ""

        def start(self) -> None:
            raise AcceleratorError("no such device")

    fb = FallbackBackend(lambda: Broken(b""), None, state=AcceleratorState("m", "x"),
                         policy="fail")
    with pytest.raises(ModelError, match="no such device"):
        fb.start()
    assert isinstance(np.zeros(1), np.ndarray)


def test_daemon_edgetpu_fallback_fail_exits_with_one_line(tmp_path, broker):
    tpu, twin, _ = _paths()
    cfg = write_config(tmp_path / "c.yaml", {
        "node_id": "n", "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "metrics": {"enabled": False},
        "models": {"tpu": {"path": tpu, "delegate": "edgetpu", "device": "usb",
                           "fallback": "fail", "cpu_path": twin}},
        "cameras": {"c": {"source": str(shared_or_skip() / "photos"), "model": "tpu"}}})
    proc = edged("run", "-c", str(cfg))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if " INFO " not in ln and ln.strip()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("edged: ") and "libedgetpu.so.1" in errors[0]
    assert "usb" in errors[0]
