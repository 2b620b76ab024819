"""What a reload of regions changes (pure): only the regions -> no capture restart."""

from __future__ import annotations

import copy

from edged.app.reload import diff_configs, used_models
from edged.config import Config

BASE = {"node_id": "n", "models": {"m": {"path": "a.tflite"}, "k": {"path": "b.tflite"}},
        "cameras": {"a": {"source": "a.mp4", "model": "m",
                          "regions": {"r1": {"box": [0, 0, 5, 5]}}}}}


def _with(**regions) -> Config:
    data = copy.deepcopy(BASE)
    data["cameras"]["a"]["regions"] = regions
    return Config.model_validate(data)


def test_only_regions_changed_keeps_the_capture():
    old = Config.model_validate(BASE)
    d = diff_configs(old, _with(r1={"box": [0, 0, 5, 5]}, r2={"fraction": [0, 0, 1, 1]}))
    assert d.cameras_regions == ("a",) and not d.cameras_restarted and not d.models_added
    assert d.summary() == "cameras ~a(regions)"
    d = diff_configs(old, _with(r1={"box": [0, 0, 6, 5]}))
    assert d.cameras_regions == ("a",)
    # A region moved to a model not yet loaded: the model is added, the capture goes on.
    d = diff_configs(old, _with(r1={"box": [0, 0, 5, 5], "model": "k"}))
    assert d.cameras_regions == ("a",) and d.models_added == ("k",)
    assert used_models(_with(r1={"box": [0, 0, 5, 5], "model": "k"})) == {"m", "k"}
    # Another setting changed too: a restart, as before.
    data = copy.deepcopy(BASE)
    data["cameras"]["a"]["fps"] = 3
    data["cameras"]["a"]["regions"]["r2"] = {"box": [1, 1, 2, 2]}
    d = diff_configs(old, Config.model_validate(data))
    assert d.cameras_restarted == ("a",) and not d.cameras_regions
    assert diff_configs(old, Config.model_validate(copy.deepcopy(BASE))).empty


def test_a_model_change_rewires_a_camera_whose_region_uses_it():
    old = _with(r1={"box": [0, 0, 5, 5], "model": "k"})
    data = copy.deepcopy(BASE)
    data["cameras"]["a"]["regions"] = {"r1": {"box": [0, 0, 5, 5], "model": "k"}}
    data["models"]["k"]["top_k"] = 1
    d = diff_configs(old, Config.model_validate(data))
    assert d.models_changed == ("k",) and d.cameras_rewired == ("a",)
