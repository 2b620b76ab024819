"""What a .tflite file says about itself, read from the flatbuffer without any runtime.

Used by `edged inspect` (which must describe models no runtime here can load, such as Edge TPU
ones) and by model loading for the TFLite metadata: the normalization (`NormalizationOptions`
of the input tensor) and the name of the labels file associated with the output tensor. The
file must have passed `modelfile.check_model_bytes` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edged.errors import ModelError
from edged.model.flatbuffer import _Corrupt, _read, _Table

# TensorType enum of schema.fbs -> numpy dtype name.
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
                6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
                11: "complex128", 12: "uint64", 14: "uint32", 15: "uint16", 16: "int4"}
_CUSTOM = 32  # BuiltinOperator.CUSTOM
METADATA_NAME = "TFLITE_METADATA"
# metadata_schema.fbs
_MM_SUBGRAPHS, _MM_DESCRIPTION, _MM_NAME = 3, 1, 0
_SG_INPUTS, _SG_OUTPUTS = 2, 3
_TM_PROCESS_UNITS, _TM_ASSOCIATED_FILES = 4, 6
_PU_OPTIONS_TYPE, _PU_OPTIONS = 0, 1
_NORMALIZATION_OPTIONS = 1
_AF_NAME, _AF_TYPE = 0, 2
_TENSOR_AXIS_LABELS = 2
# Custom ops that say which delegate a model was compiled for.
DELEGATE_OPS = {"edgetpu-custom-op": "edgetpu"}


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: list[int]
    shape_signature: list[int]
    scales: list[float]
    zero_points: list[int]
    quantized_dimension: int

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def static(self) -> bool:
        """Whether the file alone gives the shape at batch 1: stored, every size positive, and
        no dimension but the batch left dynamic (-1) in the signature."""
        sig = self.shape_signature
        return bool(self.shape) and all(d >= 1 for d in self.shape) and (
            len(sig) == len(self.shape) and list(sig[1:]) == list(self.shape[1:]))

    def with_shape(self, shape: list[int]) -> TensorInfo:
        """This tensor as the interpreter allocated it (the file's signature is kept)."""
        return replace(self, shape=[int(d) for d in shape])

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "dtype": self.dtype,
                "shape": self.shape, "shape_signature": self.shape_signature,
                "quantization": {"scales": self.scales, "zero_points": self.zero_points,
                                 "per_channel": self.per_channel,
                                 "quantized_dimension": self.quantized_dimension}}


@dataclass(frozen=True)
class ModelInfo:
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    op_count: int
    custom_ops: list[str]
    mean: list[float] | None = None  # from the metadata's NormalizationOptions
    std: list[float] | None = None
    labels_file: str | None = None  # the metadata's TENSOR_AXIS_LABELS file of output 0
    metadata_name: str | None = None
    description: str | None = field(default=None, repr=False)

    @property
    def delegates_needed(self) -> list[str]:
        return sorted({DELEGATE_OPS[op] for op in self.custom_ops if op in DELEGATE_OPS})

    def with_shapes(self, inputs: list[list[int]], outputs: list[list[int]]) -> ModelInfo:
        """This model with its tensors' shapes replaced by allocated ones (same order)."""
        if len(inputs) != len(self.inputs) or len(outputs) != len(self.outputs):
            raise ModelError(f"the interpreter has {len(inputs)} inputs and {len(outputs)} "
                             f"outputs; the file {len(self.inputs)} and {len(self.outputs)}")
        return replace(self, inputs=[t.with_shape(s) for t, s in zip(self.inputs, inputs)],
                       outputs=[t.with_shape(s) for t, s in zip(self.outputs, outputs)])


def read_model_info(data: bytes, path: str) -> ModelInfo:
    """Describe a checked model file; ModelError when its structure is not what TFLite writes."""
    try:
        return _read_info(data)
    except (_Corrupt, IndexError, UnicodeDecodeError):
        raise ModelError(f"{path}: corrupt TFLite model (cannot read its structure)") from None


def _read_info(data: bytes) -> ModelInfo:
    model = _Table(data, _read(data, "<I", 0))
    opcodes = model.tables(1)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise _Corrupt
    sg = subgraphs[0]
    tensors = sg.tables(0)
    inputs = [_tensor(tensors[i], i) for i in sg.scalars(1, "<i")]
    outputs = [_tensor(tensors[i], i) for i in sg.scalars(2, "<i")]
    op_count = 0
    custom: set[str] = set()
    for subgraph in subgraphs:
        for op in subgraph.tables(3):
            op_count += 1
            code = opcodes[op.scalar(0, "<I")]
            builtin = max(code.scalar(0, "<b"), code.scalar(3, "<i"))
            if builtin == _CUSTOM:
                custom.add(code.string(1) or "?")
    info = dict(inputs=inputs, outputs=outputs, op_count=op_count, custom_ops=sorted(custom))
    meta = _metadata_buffer(model, data)
    if meta is not None:
        info.update(_read_metadata(meta))
    return ModelInfo(**info)


def _tensor(t: _Table, index: int) -> TensorInfo:
    quant = t.table(4)
    scales = quant.scalars(2, "<f") if quant else []
    zero_points = quant.scalars(3, "<q") if quant else []
    return TensorInfo(index=index, name=t.string(3) or "", dtype=TENSOR_TYPES.get(
        t.scalar(1, "<b"), f"type{t.scalar(1, '<b')}"), shape=t.scalars(0, "<i"),
        shape_signature=t.scalars(7, "<i") or t.scalars(0, "<i"), scales=scales,
        zero_points=zero_points, quantized_dimension=quant.scalar(6, "<i") if quant else 0)


def _metadata_buffer(model: _Table, data: bytes) -> bytes | None:
    buffers = model.tables(4)
    for entry in model.tables(6):
        if entry.string(0) == METADATA_NAME:
            buf = buffers[entry.scalar(1, "<I")]
            start, length = buf.vector(0)
            if length:
                return data[start:start + length]
            offset, size = buf.scalar(1, "<Q"), buf.scalar(2, "<Q")
            if offset > 1:
                return data[offset:offset + size]
    return None


def _read_metadata(meta: bytes) -> dict:
    """Normalization and labels file from a TFLite metadata flatbuffer ('M001')."""
    out: dict = {}
    try:
        root = _Table(meta, _read(meta, "<I", 0))
        out["metadata_name"] = root.string(_MM_NAME)
        out["description"] = root.string(_MM_DESCRIPTION)
        subgraphs = root.tables(_MM_SUBGRAPHS)
        if not subgraphs:
            return out
        ins, outs = subgraphs[0].tables(_SG_INPUTS), subgraphs[0].tables(_SG_OUTPUTS)
        for unit in ins[0].tables(_TM_PROCESS_UNITS) if ins else []:
            if unit.scalar(_PU_OPTIONS_TYPE, "<B") == _NORMALIZATION_OPTIONS:
                opts = unit.table(_PU_OPTIONS)
                if opts is not None:
                    out["mean"], out["std"] = opts.scalars(0, "<f"), opts.scalars(1, "<f")
        for af in outs[0].tables(_TM_ASSOCIATED_FILES) if outs else []:
            if af.scalar(_AF_TYPE, "<b") == _TENSOR_AXIS_LABELS:
                out["labels_file"] = af.string(_AF_NAME)
                break
    except (_Corrupt, IndexError):
        pass  # metadata is optional: a broken one is ignored, not fatal
    if not out.get("mean") or not out.get("std"):
        out.pop("mean", None), out.pop("std", None)
    return out
