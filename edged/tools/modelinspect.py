"""`edged inspect MODEL`: what a model needs, read from the file (no runtime has to load it),
beside the shapes the CPU interpreter allocates when it can build the model."""

from __future__ import annotations

import hashlib
import json
import os

from edged.errors import EdgedError, ModelError
from edged.model.labels import parse_labels
from edged.model.flatbuffer import embedded_labels, read_model_bytes
from edged.model.info import ModelInfo, TensorInfo, read_model_info
from edged.model.allocate import Allocated


def describe(path: str) -> dict:
    if not os.path.isfile(path):
        raise EdgedError(f"{path}: file not found")
    data = read_model_bytes(path)
    info = read_model_info(data, path)
    labels = embedded_labels(data, info.labels_file)
    try:
        parsed = parse_labels(labels) if labels else None
    except ValueError:
        parsed = None
    allocated, why_not = _allocated(data, path)
    return {
        "path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": _tensors(info.inputs, allocated.inputs if allocated else None),
        "outputs": _tensors(info.outputs, allocated.outputs if allocated else None),
        "allocation_error": why_not,
        "op_count": info.op_count, "custom_ops": info.custom_ops,
        "delegates_needed": info.delegates_needed,
        "metadata": {"name": info.metadata_name, "labels_file": info.labels_file,
                     "normalization": ({"mean": info.mean, "std": info.std}
                                       if info.mean else None)},
        "embedded_labels": {"count": len(parsed), "first": parsed[:5]} if parsed else None,
        "runtime": _runtime(),
    }


def _allocated(data: bytes, path: str) -> tuple[Allocated | None, str | None]:
    """The CPU interpreter's shapes (batch 1), or None and why (no runtime, an Edge TPU
    model, a model the runtime cannot build)."""
    from edged.model.allocate import allocate
    from edged.model.nativelog import quiet_native_stderr

    try:
        with quiet_native_stderr(discard=True):
            return allocate(data, path), None
    except ModelError as exc:
        return None, str(exc)


def _tensors(tensors: list[TensorInfo], shapes: list[list[int]] | None) -> list[dict]:
    """The file's view of each tensor, with `allocated_shape` beside its stored shape."""
    rows = []
    for i, t in enumerate(tensors):
        row = t.as_dict()
        row["allocated_shape"] = shapes[i] if shapes is not None and i < len(shapes) else None
        rows.append(row)
    return rows


def _runtime() -> str | None:
    from edged.model.runtime import find_runtime

    try:
        return str(find_runtime())
    except ModelError:
        return None


def _tensor_line(t: dict) -> str:
    q = t["quantization"]
    if q["scales"]:
        quant = (f"per-channel ({len(q['scales'])} scales, axis {q['quantized_dimension']})"
                 if q["per_channel"] else f"scale {q['scales'][0]:.8g} zero point "
                 f"{q['zero_points'][0] if q['zero_points'] else 0}")
    else:
        quant = "not quantized"
    allocated = t["allocated_shape"]
    return (f"  {t['name'] or '(unnamed)'}: {t['dtype']} shape {t['shape']} signature "
            f"{t['shape_signature']} (file), allocated "
            f"{allocated if allocated is not None else '-'}, {quant}")


def run_inspect(path: str, as_json: bool) -> int:
    d = describe(path)
    if as_json:
        print(json.dumps(d))
        return 0
    norm = d["metadata"]["normalization"]
    labels = d["embedded_labels"]
    lines = [f"{path}: {d['bytes']} bytes, sha256 {d['sha256']}", "inputs:",
             *map(_tensor_line, d["inputs"]), "outputs:", *map(_tensor_line, d["outputs"]),
             f"ops: {d['op_count']}" + (f", custom: {', '.join(d['custom_ops'])}"
                                        if d["custom_ops"] else ""),
             "delegates needed: " + (", ".join(d["delegates_needed"]) or "none"),
             *([f"allocated shapes: none ({d['allocation_error']})"]
               if d["allocation_error"] else []),
             "normalization (metadata): " + (f"mean {norm['mean']} std {norm['std']}" if norm
                                             else "none (give mean/std in the config)"),
             "embedded labels: " + (f"{labels['count']} ({'; '.join(labels['first'][:3])}; ...)"
                                    if labels else "none"),
             f"runtime: {d['runtime'] or 'none installed'}"]
    print("\n".join(lines))
    return 0


__all__ = ["describe", "run_inspect", "ModelInfo", "TensorInfo"]
