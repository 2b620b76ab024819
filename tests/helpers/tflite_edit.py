"""Rewrite a tensor's stored shape / shape_signature in a real .tflite's flatbuffer bytes.

Some published models store an output's shape empty (`[]`) or only as a dynamic signature
(`[-1, N]`); their real shape exists only once the interpreter has allocated its tensors. The
tests make such models from real ones: a shape vector is rewritten in place with the same or a
shorter length (a flatbuffer vector is length-prefixed, so the bytes left over are unused).
"""

from __future__ import annotations

import struct

from edged.model.flatbuffer import _read, _Table

_SHAPE, _SIGNATURE = 0, 7


def _vector_start(data: bytes, tensor: int, field: int) -> tuple[int, int]:
    model = _Table(data, _read(data, "<I", 0))
    tensors = model.tables(2)[0].tables(0)
    start, length = tensors[tensor].vector(field)
    if not start:
        raise ValueError(f"tensor {tensor} stores no field {field}")
    return start - 4, length  # (position of the length prefix, length)


def output_tensor(data: bytes, n: int = 0) -> int:
    """The tensor index of the model's output `n`."""
    model = _Table(data, _read(data, "<I", 0))
    return model.tables(2)[0].scalars(2, "<i")[n]


def rewrite_shape(data: bytes, tensor: int, shape: list[int] | None = None,
                  signature: list[int] | None = None) -> bytes:
    """`data` with the tensor's stored shape and/or shape_signature replaced (each no longer
    than the stored one)."""
    out = bytearray(data)
    for field, values in ((_SHAPE, shape), (_SIGNATURE, signature)):
        if values is None:
            continue
        at, length = _vector_start(data, tensor, field)
        if len(values) > length:
            raise ValueError(f"cannot grow a stored vector from {length} to {len(values)}")
        struct.pack_into(f"<I{len(values)}i", out, at, len(values), *values)
    return bytes(out)
