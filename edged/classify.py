"""`edged classify`: one-shot classification with exactly the daemon's preprocessing."""

from __future__ import annotations

import json
import os
import sys

import cv2
from pydantic import ValidationError

from edged.config import ModelConfig
from edged.errors import EdgedError
from edged.model import load_model
from edged.nativelog import quiet_native_stderr
from edged.worker import classify


def run_classify(model: str, labels: str | None, top_k: int, images: list[str], as_json: bool,
                 mean: list[float] | None = None, std: list[float] | None = None) -> int:
    """Print the top-k of every image; exit code 1 when any image could not be read."""
    for name, path in (("--model", model), ("--labels", labels)):
        if path is not None and not os.path.isfile(path):
            raise EdgedError(f"{name}: file not found: {path}")
    try:
        cfg = ModelConfig(path=model, labels=labels, top_k=top_k,
                          mean=_scalar_or_list(mean), std=_scalar_or_list(std))
    except ValidationError as exc:
        err = exc.errors()[0]
        raise EdgedError(f"--{err['loc'][0]}: {err['msg'].removeprefix('Value error, ')}") from None
    loaded = load_model("cli", cfg)
    backend = loaded.new_backend()
    backend.start()
    status = 0
    try:
        for path in images:
            with quiet_native_stderr(discard=True):  # libjpeg's own complaints
                image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                print(f"edged: {path}: cannot read image", file=sys.stderr)
                status = 1
                continue
            top, elapsed = classify(backend, loaded, image)
            best, score = top[0]
            if as_json:
                print(json.dumps({
                    "image": path, "label": loaded.labels[best], "index": best,
                    "score": round(score, 6), "inference_ms": round(elapsed * 1000, 3),
                    "top_k": [{"label": loaded.labels[i], "index": i, "score": round(s, 6)}
                              for i, s in top]}))
            else:
                print(f"{path}: {loaded.labels[best]} ({score:.4f})")
                for rank, (i, s) in enumerate(top[1:], start=2):
                    print(f"  {rank}. {loaded.labels[i]} ({s:.4f})")
    finally:
        backend.close()
    return status


def _scalar_or_list(values: list[float] | None) -> float | list[float] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else values
