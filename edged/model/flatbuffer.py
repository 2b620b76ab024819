"""Checks on a .tflite file before any runtime sees it.

tflite-runtime segfaults on a truncated model, so the flatbuffer's tables and buffers are
bounds-checked here first; a file that fails gets a ModelError naming it.
"""

from __future__ import annotations

import struct
import zipfile
from io import BytesIO

from edged.errors import ModelError

_IDENTIFIER = b"TFL3"
# Field numbers in the TFLite schema (schema.fbs).
_MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS = 1, 2, 3, 4
_MODEL_METADATA_BUFFER, _MODEL_METADATA = 5, 6
_OPCODE_CUSTOM_CODE = 1
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 0, 1, 2, 3
_TENSOR_SHAPE, _TENSOR_NAME, _TENSOR_QUANT, _TENSOR_SIGNATURE = 0, 3, 4, 7
_QUANT_MIN, _QUANT_MAX, _QUANT_SCALE, _QUANT_ZERO_POINT = 0, 1, 2, 3
_OP_INPUTS, _OP_OUTPUTS, _OP_CUSTOM_OPTIONS = 1, 2, 5


class _Corrupt(Exception):
    pass


class _Table:
    """Just enough of a flatbuffer table reader to check that offsets stay inside the file."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos = buf, pos
        vtable = pos - _read(buf, "<i", pos)
        self.vt_size = _read(buf, "<H", vtable)
        _need(buf, vtable + self.vt_size)
        _need(buf, pos + _read(buf, "<H", vtable + 2))  # the table's inline fields
        self.vtable = vtable

    def _field(self, n: int) -> int:
        slot = 4 + 2 * n
        if slot >= self.vt_size:
            return 0
        off = _read(self.buf, "<H", self.vtable + slot)
        return self.pos + off if off else 0

    def vector(self, n: int) -> tuple[int, int]:
        """(start of elements, length) of a vector field; (0, 0) when absent."""
        at = self._field(n)
        if not at:
            return 0, 0
        start = at + _read(self.buf, "<I", at)
        length = _read(self.buf, "<I", start)
        return start + 4, length

    def check_vector(self, n: int, elem_size: int) -> None:
        start, length = self.vector(n)
        _need(self.buf, start + elem_size * length)

    def table(self, n: int) -> _Table | None:
        at = self._field(n)
        return _Table(self.buf, at + _read(self.buf, "<I", at)) if at else None

    def scalar(self, n: int, fmt: str) -> int:
        at = self._field(n)
        return _read(self.buf, fmt, at) if at else 0

    def string(self, n: int) -> str | None:
        start, length = self.vector(n)
        if not start:
            return None
        _need(self.buf, start + length)
        return self.buf[start:start + length].decode("utf-8", errors="replace")

    def scalars(self, n: int, fmt: str) -> list:
        """The elements of a vector of scalars (fmt like '<f', '<i', '<q')."""
        start, length = self.vector(n)
        size = struct.calcsize(fmt)
        _need(self.buf, start + size * length)
        return list(struct.unpack_from(f"<{length}{fmt[-1]}", self.buf, start)) if length else []

    def tables(self, n: int) -> list[_Table]:
        start, length = self.vector(n)
        _need(self.buf, start + 4 * length)
        return [_Table(self.buf, start + 4 * i + _read(self.buf, "<I", start + 4 * i))
                for i in range(length)]


def _need(buf: bytes, end: int) -> None:
    if end > len(buf) or end < 0:
        raise _Corrupt


def _read(buf: bytes, fmt: str, pos: int) -> int:
    size = struct.calcsize(fmt)
    _need(buf, pos + size)
    if pos < 0:
        raise _Corrupt
    return struct.unpack_from(fmt, buf, pos)[0]


def read_model_bytes(path: str) -> bytes:
    """The file's bytes once it is known to be a complete TFLite flatbuffer."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model: {exc.strerror or exc}") from None
    check_model_bytes(data, path)
    return data


def check_model_bytes(data: bytes, path: str) -> None:
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ModelError(f"{path}: not a TFLite model (no 'TFL3' flatbuffer identifier)")
    try:
        model = _Table(data, _read(data, "<I", 0))
        for opcode in model.tables(_MODEL_OPCODES):
            opcode.check_vector(_OPCODE_CUSTOM_CODE, 1)
        model.check_vector(_MODEL_DESCRIPTION, 1)
        model.check_vector(_MODEL_METADATA_BUFFER, 4)
        model.tables(_MODEL_METADATA)
        for subgraph in model.tables(_MODEL_SUBGRAPHS):
            _check_subgraph(subgraph)
        for buffer in model.tables(_MODEL_BUFFERS):
            start, length = buffer.vector(_BUFFER_DATA)
            _need(data, start + length)
            offset = buffer.scalar(_BUFFER_OFFSET, "<Q")
            if offset > 1:  # 0 and 1 mean "no external data" in the schema
                _need(data, offset + buffer.scalar(_BUFFER_SIZE, "<Q"))
    except _Corrupt:
        raise ModelError(
            f"{path}: truncated or corrupt TFLite model (data runs past the end of the file)"
        ) from None


def _check_subgraph(subgraph: _Table) -> None:
    subgraph.check_vector(_SUBGRAPH_INPUTS, 4)
    subgraph.check_vector(_SUBGRAPH_OUTPUTS, 4)
    for tensor in subgraph.tables(_SUBGRAPH_TENSORS):
        tensor.check_vector(_TENSOR_SHAPE, 4)
        tensor.check_vector(_TENSOR_SIGNATURE, 4)
        tensor.check_vector(_TENSOR_NAME, 1)
        quant = tensor.table(_TENSOR_QUANT)
        if quant is not None:
            for field, size in ((_QUANT_MIN, 4), (_QUANT_MAX, 4), (_QUANT_SCALE, 4),
                                (_QUANT_ZERO_POINT, 8)):
                quant.check_vector(field, size)
    for op in subgraph.tables(_SUBGRAPH_OPERATORS):
        op.check_vector(_OP_INPUTS, 4)
        op.check_vector(_OP_OUTPUTS, 4)
        op.check_vector(_OP_CUSTOM_OPTIONS, 1)


def embedded_labels(data: bytes, name: str | None = None) -> list[str] | None:
    """Labels from a .tflite that is also a zip archive holding a labels text file; `name` is
    the file the model's metadata associates with its output, when it names one."""
    try:
        with zipfile.ZipFile(BytesIO(data)) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".txt")]
            preferred = [n for n in names if "label" in n.lower()] or names
            if name and name in zf.namelist():
                preferred = [name]
            if not preferred:
                return None
            text = zf.read(preferred[0]).decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    return text.splitlines()
