"""config.example.yaml says it shows every key with its default: hold it to that."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from edged.config import Config
from edged.config import CameraConfig, ModelConfig

EXAMPLE = Path(__file__).resolve().parents[3] / "config.example.yaml"
# Set in the example so that it runs the demo as it is; the comment beside each gives the default.
DEMO_VALUES = {"models.default.labels"}


def _model_of(annotation: Any) -> type[BaseModel] | None:  # noqa: ANN401
    """The pydantic model inside `X`, `X | None` or `Annotated[X, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _dict_values_model(annotation: Any) -> type[BaseModel] | None:  # noqa: ANN401
    if typing.get_origin(annotation) is dict:
        return _model_of(typing.get_args(annotation)[1])
    return None


def _kind_model(model: type[BaseModel], entry: dict) -> type[BaseModel]:
    """A camera's source kind's model (a model's backend's); the example's camera also lists
    the settings of the other kinds (edged ignores them at their defaults), so those are
    looked up there."""
    if model not in (CameraConfig, ModelConfig):
        return model
    kinds = model.variants()
    own = kinds[model.variant_of(entry, str(EXAMPLE.parent))]
    # `type: null` (inferred from source) and `delegate: null` (the CPU) are the root's.
    root = {k: model.model_fields[k] for k in ("type", "delegate") if k in model.model_fields}

    class _AllKinds:
        model_fields = {**{k: f for m in kinds.values() for k, f in m.model_fields.items()},
                        **own.model_fields, **root}

    return _AllKinds  # type: ignore[return-value]


def _walk(model: type[BaseModel], data: dict, path: str, out: list[str]) -> int:
    checked = 0
    for key, value in data.items():
        field = model.model_fields.get(key)
        assert field is not None, f"{path}{key}: not a config key"
        sub = _model_of(field.annotation)
        entries = _dict_values_model(field.annotation)
        if isinstance(value, dict) and entries is not None:
            for name, entry in value.items():
                checked += _walk(_kind_model(entries, entry), entry, f"{path}{key}.{name}.", out)
            continue
        if isinstance(value, dict) and sub is not None:
            checked += _walk(sub, value, f"{path}{key}.", out)
            continue
        if field.default is PydanticUndefined:
            continue  # required (models.*.path, cameras.*.source) or made at run time
        checked += 1
        if value != field.default and f"{path}{key}" not in DEMO_VALUES:
            out.append(f"{path}{key}: example {value!r}, code {field.default!r}")
    return checked


def test_every_default_in_the_example_equals_the_codes():
    data = yaml.safe_load(EXAMPLE.read_text())
    wrong: list[str] = []
    checked = _walk(Config, data, "", wrong)
    assert checked > 60  # the walk really covers the file
    assert wrong == []


def test_the_walk_catches_a_wrong_default():
    wrong: list[str] = []
    _walk(Config, {"mqtt": {"drain_timeout_s": 3.0, "reconnect": {"max_s": 30.0}}}, "", wrong)
    assert wrong == ["mqtt.drain_timeout_s: example 3.0, code 10.0"]


def test_the_walk_checks_the_settings_of_every_source_kind():
    wrong: list[str] = []
    _walk(Config, {"cameras": {"c": {"source": "a.mp4", "transport": "udp",
                                     "max_pixels": 5}}}, "", wrong)
    assert sorted(wrong) == ["cameras.c.max_pixels: example 5, code 50000000",
                     "cameras.c.transport: example 'udp', code 'tcp'"]
