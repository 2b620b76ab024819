"""Every check that depends on a tensor's shape, on the allocated view (the file's may be empty
or a placeholder): input layout, batch, size, per-channel axis; classes against labels; the CPU
twin's agreement; and when the file alone must be complete (no CPU interpreter)."""

from __future__ import annotations

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.errors import ModelError
from edged.model.allocate import Allocated
from edged.model.info import ModelInfo, TensorInfo
from edged.model.labels import fit_labels
from edged.model.loaded import _check_twin, _input_spec, _size, served_shapes


def _t(shape: list[int], signature: list[int] | None = None, dtype: str = "uint8",
       scales: list[float] | None = None, name: str = "t", axis: int = 0) -> TensorInfo:
    scales = [0.5] if scales is None else scales
    return TensorInfo(0, name, dtype, shape, shape if signature is None else signature,
                      scales, [0] * len(scales), axis)


def _model(inputs: list[TensorInfo], outputs: list[TensorInfo]) -> ModelInfo:
    return ModelInfo(inputs=inputs, outputs=outputs, op_count=1, custom_ops=[])


# --- the file's view against the allocated one -------------------------------------------------

@pytest.mark.parametrize("shape, signature, static", [
    ([1, 1001], [1, 1001], True),
    ([1, 2], [-1, 2], True),          # a dynamic batch is fine: edged runs batch 1
    ([], [], False),                  # stored empty
    ([], [-1, 2], False),
    ([1, 1], [-1, 10], False),        # a placeholder beside the real signature
    ([1, 1], [-1, -1], False),
    ([1, 0], [1, 0], False),
])
def test_static_means_the_file_alone_gives_the_shape(shape, signature, static):
    assert _t(shape, signature).static is static


def test_with_shapes_replaces_shapes_and_keeps_the_rest():
    file = _model([_t([1, 8, 8, 3], [-1, 8, 8, 3])], [_t([], [-1, 2], name="out")])
    served = file.with_shapes([[1, 8, 8, 3]], [[1, 2]])
    assert served.outputs[0].shape == [1, 2] and served.outputs[0].shape_signature == [-1, 2]
    assert served.outputs[0].name == "out" and served.outputs[0].scales == [0.5]
    assert file.outputs[0].shape == []  # the file's view is unchanged
    with pytest.raises(ModelError, match="2 outputs; the file 1 and 1"):
        file.with_shapes([[1, 8, 8, 3]], [[1, 2], [1, 3]])


def test_served_shapes_uses_the_interpreter_when_there_is_one():
    file = _model([_t([1, 8, 8, 3])], [_t([])])
    served, twin = served_shapes(file, None, Allocated([[1, 8, 8, 3]], [[1, 1001]]), "m")
    assert served.outputs[0].shape == [1, 1001] and twin is None
    assert _size(served.outputs[0]) == 1001


def test_served_shapes_without_an_interpreter_needs_a_complete_file():
    complete = _model([_t([1, 8, 8, 3])], [_t([1, 5])])
    assert served_shapes(complete, None, None, "m")[0] is complete
    for out in (_t([]), _t([1, 1], [-1, -1])):
        with pytest.raises(ModelError, match="no complete shape in the file.*give cpu_path"):
            served_shapes(_model([_t([1, 8, 8, 3])], [out]), None, None, "m.tflite")


def test_served_shapes_takes_what_the_accelerator_model_lacks_from_its_twin():
    tpu = _model([_t([1, 8, 8, 3])], [_t([], name="probs")])
    twin = _model([_t([1, 8, 8, 3], [-1, 8, 8, 3])], [_t([1, 1], [-1, 7], name="probs")])
    served, twin_served = served_shapes(tpu, twin, Allocated([[1, 8, 8, 3]], [[1, 7]]), "m")
    assert served.outputs[0].shape == [1, 7] and twin_served.outputs[0].shape == [1, 7]
    # A complete stored shape stays the accelerator model's own (and is then compared).
    tpu5 = _model([_t([1, 8, 8, 3])], [_t([1, 5], name="probs")])
    assert served_shapes(tpu5, twin, Allocated([[1, 8, 8, 3]], [[1, 7]]),
                         "m")[0].outputs[0].shape == [1, 5]


# --- classes and labels ------------------------------------------------------------------------

@pytest.mark.parametrize("shape, classes", [([1, 1001], 1001), ([1001], 1001),
                                            ([1, 1, 1, 10], 10), ([1, 2], 2)])
def test_classes_from_the_allocated_shape(shape, classes):
    assert _size(_t(shape)) == classes


def test_labels_are_checked_against_allocated_classes_not_the_stored_shape():
    labels = [f"c{i}" for i in range(1001)]
    stored, allocated = _t([]), _t([1, 1001])
    with pytest.raises(ModelError, match="1001 labels but the model has 1 output classes"):
        fit_labels(labels, _size(stored), "labels.txt")  # what reading the file gave
    assert fit_labels(labels, _size(allocated), "labels.txt") == labels
    assert fit_labels(labels[1:], _size(allocated), "l")[0] == "background"


# --- input layout ------------------------------------------------------------------------------

def test_input_spec_from_an_allocated_nhwc_shape():
    spec = _input_spec(_t([1, 96, 64, 3], [-1, 96, 64, 3]), "m")
    assert (spec.height, spec.width, spec.channels, spec.dtype) == (96, 64, 3, np.uint8)
    assert _input_spec(_t([1, 28, 28, 1]), "m").channels == 1


@pytest.mark.parametrize("shape, signature, match", [
    ([1, 3, 224, 224], None, "not an NHWC image"),       # NCHW
    ([1, 224, 224], None, "not an NHWC image"),
    ([1, 224, 224, 4], None, "not an NHWC image"),
    ([], None, "not an NHWC image"),
    ([4, 96, 96, 3], None, "batch size is fixed at 4"),
    ([1, 0, 96, 3], None, "no fixed height and width"),
])
def test_input_layout_errors(shape, signature, match):
    with pytest.raises(ModelError, match=match):
        _input_spec(_t(shape, signature), "m")


def test_dynamic_batch_stored_as_another_size_is_accepted():
    # The CPU backend resizes it to 1 before allocation; the stored 4 is only a placeholder.
    assert _input_spec(_t([4, 8, 8, 3], [-1, 8, 8, 3]), "m").height == 8


def test_per_channel_input_must_be_along_the_colour_channels():
    spec = _input_spec(_t([1, 8, 8, 3], scales=[0.1, 0.2, 0.3], axis=3), "m")
    assert spec.scale == (pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3))
    with pytest.raises(ModelError, match="along dimension 1"):
        _input_spec(_t([1, 8, 8, 3], scales=[0.1] * 8, axis=1), "m")


# --- the CPU twin ------------------------------------------------------------------------------

def test_twin_must_match_the_allocated_input_and_output():
    cfg = ModelConfig(path="tpu.tflite", delegate="edgetpu", cpu_path="cpu.tflite")
    spec = _input_spec(_t([1, 8, 8, 3]), "m")
    out = _t([1, 7], name="probs")
    _check_twin(cfg, _model([_t([1, 8, 8, 3], [-1, 8, 8, 3])], [_t([1, 7], name="probs")]),
                spec, out)
    for twin in (_model([_t([1, 8, 8, 3])], [_t([1, 6], name="probs")]),
                 _model([_t([1, 9, 8, 3])], [_t([1, 7], name="probs")]),
                 _model([_t([1, 8, 8, 3])], [_t([1, 7], name="a"), _t([1, 7], name="b")])):
        with pytest.raises(ModelError, match="must be the same model for the CPU"):
            _check_twin(cfg, twin, spec, out)
