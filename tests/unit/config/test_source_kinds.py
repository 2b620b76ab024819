"""Each source kind carries its own config model in its own file; the camera config is the
union of them, built from the Source registry, and older configs that list every kind's
settings on every camera (as the example does) keep loading."""

from __future__ import annotations

from typing import ClassVar, Literal

import pytest
from pydantic import ValidationError

from edged.capture.sources.base import SOURCES, Source
from edged.capture.sources.hotfolder import HotFolderSource
from edged.capture.sources.images import ImagesCameraConfig
from edged.capture.sources.mjpeg import HttpCameraConfig
from edged.capture.sources.registry import source_class
from edged.capture.sources.rtsp import RtspCameraConfig
from edged.capture.sources.v4l2 import V4l2CameraConfig
from edged.capture.sources.video import VideoCameraConfig
from edged.config import CameraConfig, Config, load_config
from edged.config.camera import source_kinds
from edged.errors import ConfigError
from tests.conftest import write_config


@pytest.mark.parametrize(("source", "model"), [
    ("rtsp://cam/stream", RtspCameraConfig),
    ("http://cam/mjpeg", HttpCameraConfig),
    ("/dev/video0", V4l2CameraConfig),
    (0, V4l2CameraConfig),
    ("/srv/qc/*.jpg", ImagesCameraConfig),
    ("belt.mp4", VideoCameraConfig),
])
def test_the_kind_is_inferred_from_the_source_and_its_model_validates(source, model):
    cam = CameraConfig.model_validate({"source": source})
    assert type(cam) is model and cam.type == model.model_fields["type"].default
    assert type(CameraConfig(source=source)) is model  # the constructor too


def test_a_kinds_settings_belong_to_it_alone():
    assert RtspCameraConfig(source="rtsp://c/s", transport="udp").transport == "udp"
    with pytest.raises(ValidationError, match="transport"):
        CameraConfig.model_validate({"source": "belt.mp4", "transport": "udp"})
    with pytest.raises(ValidationError, match="v4l2"):
        CameraConfig.model_validate({"source": "rtsp://c/s", "v4l2": {"width": 640}})


def test_a_relative_folder_is_an_image_folder_from_the_configs_folder(tmp_path, monkeypatch):
    (tmp_path / "incoming").mkdir()
    monkeypatch.chdir("/")  # not from the working directory
    path = write_config(tmp_path / "c.yaml", {
        "models": {"default": {"path": str(tmp_path / "m.tflite")}},
        "cameras": {"qc": {"source": "incoming"}}})
    (tmp_path / "m.tflite").write_bytes(b"x")
    cam = load_config(path).cameras["qc"]
    assert type(cam) is ImagesCameraConfig and cam.source == str(tmp_path / "incoming")


def test_watch_makes_an_image_folder_even_before_the_folder_exists():
    cam = CameraConfig.model_validate({"source": "/srv/not-yet", "watch": True,
                                       "done_dir": "done"})
    assert type(cam) is ImagesCameraConfig
    assert source_class(cam) is HotFolderSource


def test_an_unknown_type_names_the_kinds():
    with pytest.raises(ValidationError) as err:
        CameraConfig.model_validate({"source": "x", "type": "ndi"})
    (e,) = err.value.errors()
    assert e["loc"] == ("type",) and "rtsp, http, v4l2, gstreamer, images, video" in e["msg"]


def _config(tmp_path, camera: dict) -> Config:
    (tmp_path / "m.tflite").write_bytes(b"x")
    return load_config(write_config(tmp_path / "c.yaml", {
        "models": {"default": {"path": "m.tflite"}}, "cameras": {"belt": camera}}))


def test_another_kinds_setting_at_its_default_is_accepted_silently(tmp_path):
    cfg = _config(tmp_path, {"source": "belt.mp4", "transport": "tcp", "watch": False,
                             "max_frame_bytes": 33554432, "v4l2": {"width": None},
                             "ffmpeg_options": {}})
    assert cfg.notes == []
    assert type(cfg.cameras["belt"]) is VideoCameraConfig


def test_another_kinds_setting_that_is_set_is_ignored_with_a_one_line_note(tmp_path):
    cfg = _config(tmp_path, {"source": "belt.mp4", "loop": True, "transport": "udp",
                             "v4l2": {"width": 640}})
    path = tmp_path / "c.yaml"
    assert cfg.cameras["belt"].loop is True  # a video setting: kept
    assert len(cfg.notes) == 2
    transport, v4l2 = sorted(cfg.notes)
    assert transport.startswith(f"{path}:")
    assert transport.endswith("cameras.belt.transport: ignored: a setting of rtsp sources, "
                              "and this camera is video, from its source")
    assert "cameras.belt.v4l2: ignored: a setting of v4l2 sources" in v4l2


def test_the_example_config_loads_without_notes():
    from tests.unit.config.test_example_defaults import EXAMPLE

    assert load_config(EXAMPLE).notes == []


def test_an_invalid_value_of_the_own_kind_is_still_an_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        _config(tmp_path, {"source": "rtsp://c/s", "transport": "sctp"})
    assert "cameras.belt.transport" in err.value.lines[0]


class _PatternConfig(CameraConfig):
    type: Literal["pattern"] = "pattern"
    pattern: Literal["bars", "checker"] = "bars"


class _PatternSource(Source):
    """A kind defined in one place: its config model and its implementation."""

    key: ClassVar[str] = "pattern"
    config_model = _PatternConfig
    priority = 5

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return source == "pattern:"

    def open(self) -> None: ...

    def read(self):  # noqa: ANN201
        return None

    def close(self) -> None: ...


@pytest.fixture
def pattern_kind():
    yield
    SOURCES.pop("pattern", None)


def test_a_new_source_kind_is_one_class_with_its_own_config(pattern_kind):
    assert SOURCES["pattern"] is _PatternSource
    assert "pattern" in source_kinds()
    cam = CameraConfig.model_validate({"source": "pattern:", "pattern": "checker"})
    assert type(cam) is _PatternConfig and cam.pattern == "checker"
    assert source_class(cam) is _PatternSource
    with pytest.raises(ValidationError, match="pattern"):
        CameraConfig.model_validate({"source": "belt.mp4", "pattern": "checker"})


def test_a_kinds_model_keeps_its_own_type():
    with pytest.raises(ValidationError, match="type"):
        RtspCameraConfig.model_validate({"source": "rtsp://c/s", "type": "video"})
    assert VideoCameraConfig(source="a.mp4", type=None).type == "video"


def test_a_source_no_kind_takes_is_an_error_not_a_bare_camera():
    for source in ("file:///srv/a.mp4", True):
        with pytest.raises(ValidationError, match="no source kind handles"):
            CameraConfig.model_validate({"source": source})


def test_a_config_dump_keeps_every_kinds_settings(tmp_path):
    cfg = _config(tmp_path, {"source": "rtsp://c/s", "transport": "udp"})
    cfg.models["default"] = type(cfg.models["default"]).model_validate(
        {"path": "m.tflite"})
    tpu = {"path": "m.tflite", "delegate": "edgetpu", "fallback": "fail", "device": "usb"}
    again = Config.model_validate({**cfg.model_dump(), "models": {"default": tpu}})
    dumped = again.model_dump()
    assert dumped["cameras"]["belt"]["transport"] == "udp"
    assert dumped["models"]["default"]["fallback"] == "fail"
    assert Config.model_validate(dumped) == again
