"""`edged inspect MODEL`: what a model needs, read from the file (no runtime has to load it)."""

from __future__ import annotations

import hashlib
import json
import os

from edged.errors import EdgedError, ModelError
from edged.model.labels import parse_labels
from edged.model.flatbuffer import embedded_labels, read_model_bytes
from edged.model.info import ModelInfo, TensorInfo, read_model_info


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
    return {
        "path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "inputs": [t.as_dict() for t in info.inputs],
        "outputs": [t.as_dict() for t in info.outputs],
        "op_count": info.op_count, "custom_ops": info.custom_ops,
        "delegates_needed": info.delegates_needed,
        "metadata": {"name": info.metadata_name, "labels_file": info.labels_file,
                     "normalization": ({"mean": info.mean, "std": info.std}
                                       if info.mean else None)},
        "embedded_labels": {"count": len(parsed), "first": parsed[:5]} if parsed else None,
        "runtime": _runtime(),
    }


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
    return (f"  {t['name'] or '(unnamed)'}: {t['dtype']} shape {t['shape']} signature "
            f"{t['shape_signature']}, {quant}")


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
             "normalization (metadata): " + (f"mean {norm['mean']} std {norm['std']}" if norm
                                             else "none (give mean/std in the config)"),
             "embedded labels: " + (f"{labels['count']} ({'; '.join(labels['first'][:3])}; ...)"
                                    if labels else "none"),
             f"runtime: {d['runtime'] or 'none installed'}"]
    print("\n".join(lines))
    return 0


__all__ = ["describe", "run_inspect", "ModelInfo", "TensorInfo"]
