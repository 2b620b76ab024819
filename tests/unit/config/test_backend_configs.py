"""Each backend carries its own config model in its own file; a model's config is the union
of them, chosen by `delegate` and built from the Backend registry."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from pydantic import ValidationError

from edged.config import ModelConfig, load_config
from edged.errors import ConfigError
from edged.inference.backends.base import BACKENDS, Backend, get_backend
from edged.inference.backends.cpu import CpuBackend, CpuModelConfig
from edged.inference.backends.delegate import ExternalDelegateModelConfig
from edged.inference.backends.edgetpu import EdgeTpuBackend, EdgeTpuModelConfig
from edged.inference.backends.fallback import AcceleratorModelConfig
from edged.inference.backends.litert import LiteRtModelConfig
from tests.conftest import write_config


@pytest.mark.parametrize(("delegate", "model", "backend"), [
    (None, CpuModelConfig, "cpu"),
    ("edgetpu", EdgeTpuModelConfig, "edgetpu"),
    ("gpu", LiteRtModelConfig, "litert"),
    ("npu", LiteRtModelConfig, "litert"),
    ({"library": "libvx_delegate.so", "options": {"cores": 2}}, ExternalDelegateModelConfig,
     "delegate"),
])
def test_delegate_chooses_the_backends_model(delegate, model, backend):
    cfg = ModelConfig.model_validate({"path": "m.tflite", "delegate": delegate})
    assert type(cfg) is model and cfg.backend == backend
    assert type(ModelConfig(path="m.tflite", delegate=delegate)) is model


def test_accelerator_settings_belong_to_accelerators():
    tpu = ModelConfig(path="m.tflite", delegate="edgetpu", device="usb:1", fallback="fail",
                      cpu_path="cpu.tflite")
    assert isinstance(tpu, AcceleratorModelConfig) and tpu.device == "usb:1"
    with pytest.raises(ValidationError, match="device"):
        ModelConfig.model_validate({"path": "m.tflite", "device": "usb"})
    with pytest.raises(ValidationError, match="device"):
        ModelConfig.model_validate({"path": "m.tflite", "delegate": "gpu", "device": "usb"})
    with pytest.raises(ValidationError, match="usb, usb:N"):
        ModelConfig.model_validate({"path": "m.tflite", "delegate": "edgetpu", "device": "x"})


def test_an_unknown_delegate_is_one_error_at_its_key():
    with pytest.raises(ValidationError) as err:
        ModelConfig.model_validate({"path": "m.tflite", "delegate": "tpu"})
    (e,) = err.value.errors()
    assert e["loc"] == ("delegate",) and "edgetpu, gpu, npu" in e["msg"]


def _load(tmp_path, model: dict):
    (tmp_path / "m.tflite").write_bytes(b"x")
    return load_config(write_config(tmp_path / "c.yaml", {
        "models": {"default": {"path": "m.tflite", **model}},
        "cameras": {"c": {"source": "rtsp://cam/x"}}}))


def test_accelerator_settings_on_a_cpu_model_are_ignored_with_a_note(tmp_path):
    quiet = _load(tmp_path, {"fallback": "cpu", "retry_s": 60.0, "device": None})
    assert quiet.notes == [] and type(quiet.models["default"]) is CpuModelConfig
    cfg = _load(tmp_path, {"device": "usb", "fallback": "fail"})
    assert sorted(n.split(": ", 1)[1] for n in cfg.notes) == [
        "models.default.device: ignored: a setting of edgetpu backends, and this model runs "
        "on cpu",
        "models.default.fallback: ignored: a setting of delegate and edgetpu and litert "
        "backends, and this model runs on cpu"]


def test_an_accelerators_bad_setting_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {"delegate": "edgetpu", "retry_s": 0})
    assert "models.default.retry_s" in err.value.lines[0]


class _CountingConfig(ModelConfig):
    delegate: Literal["counter"] = "counter"
    start_at: int = 0


class _CountingBackend(Backend):
    """A backend defined in one place: its config model and its implementation."""

    key: ClassVar[str] = "counter"
    config_model = _CountingConfig

    def __init__(self, start_at: int) -> None:
        self.n = start_at
        self._in = np.zeros((2, 2, 3), np.uint8)

    @classmethod
    def handles(cls, delegate: Any) -> bool:  # noqa: ANN401
        return delegate == "counter"

    @classmethod
    def from_config(cls, model_bytes: bytes, cfg: ModelConfig, **common: Any) -> Backend:  # noqa: ANN401
        assert isinstance(cfg, _CountingConfig)
        return cls(cfg.start_at)

    def start(self) -> None: ...

    def input_buffer(self) -> np.ndarray:
        return self._in

    def invoke(self) -> None:
        self.n += 1

    def output(self) -> np.ndarray:
        return np.array([self.n], np.float32)

    def close(self) -> None: ...


@pytest.fixture
def counter_backend():
    yield
    BACKENDS.pop("counter", None)


def test_a_new_backend_is_one_class_with_its_own_config(counter_backend):
    cfg = ModelConfig.model_validate({"path": "m.tflite", "delegate": "counter",
                                      "start_at": 41})
    assert type(cfg) is _CountingConfig and cfg.backend == "counter"
    backend = get_backend(cfg.backend).from_config(b"", cfg, threads=1, output_index=0,
                                                   name="m")
    backend.invoke()
    assert backend.output().tolist() == [42.0]


def test_the_shipped_backends_build_from_their_config():
    common = {"threads": 2, "output_index": 0, "name": "m"}
    cpu = get_backend("cpu").from_config(b"", ModelConfig(path="m"), **common)
    assert type(cpu) is CpuBackend
    tpu = get_backend("edgetpu").from_config(
        b"", ModelConfig(path="m", delegate="edgetpu", device="pci:0"), **common)
    assert type(tpu) is EdgeTpuBackend and "pci:0" in tpu.label


def test_classify_says_which_delegate_an_option_needs(tmp_path):
    from edged.errors import EdgedError
    from edged.tools.classify import model_config

    (tmp_path / "m.tflite").write_bytes(b"x")
    with pytest.raises(EdgedError, match="--device: an option of the edgetpu backends, not "
                                         "of --delegate none"):
        model_config(str(tmp_path / "m.tflite"), None, 3, device="usb")
    assert model_config(str(tmp_path / "m.tflite"), None, 3, delegate="edgetpu",
                        device="usb").device == "usb"
