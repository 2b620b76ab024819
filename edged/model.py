"""A model made ready to serve: its file checked, tensors described, labels fitted."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from edged.backends import Backend, get_backend
from edged.config import ModelConfig
from edged.errors import ModelError
from edged.labels import fit_labels, parse_labels, read_labels
from edged.modelfile import embedded_labels, read_model_bytes
from edged.preprocess import DEFAULT_MEAN, DEFAULT_STD, InputSpec, build_lut
from edged.runtime import find_runtime

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """What every worker of one model shares (read-only once loaded)."""

    name: str
    path: str
    model_bytes: bytes = field(repr=False)
    sha256: str
    spec: InputSpec
    lut: np.ndarray = field(repr=False)
    out_scale: float
    out_zero_point: int
    labels: list[str]
    top_k: int
    threads: int
    backend_key: str = "cpu"

    @property
    def classes(self) -> int:
        return len(self.labels)

    def new_backend(self) -> Backend:
        """A fresh, unstarted backend for one worker."""
        return get_backend(self.backend_key)(self.model_bytes, threads=self.threads,
                                             name=self.path)


def load_model(name: str, cfg: ModelConfig) -> LoadedModel:
    """Check and describe a model; ModelError with one clear line when it cannot serve."""
    data = read_model_bytes(cfg.path)
    probe = get_backend("cpu")(data, threads=1, name=cfg.path)
    probe.start()
    try:
        interp = probe.interpreter
        inputs, outputs = interp.get_input_details(), interp.get_output_details()
        spec = _input_spec(inputs[0], cfg.path)
        out = outputs[0]
        classes = int(np.prod(out["shape"][1:])) if len(out["shape"]) > 1 else int(out["shape"][0])
        out_scale, out_zp = out["quantization"]
    finally:
        probe.close()
    labels = _labels(cfg, data, classes)
    mean = DEFAULT_MEAN if cfg.mean is None else cfg.mean
    std = DEFAULT_STD if cfg.std is None else cfg.std
    try:
        lut = build_lut(spec, mean, std)
    except ValueError as exc:
        raise ModelError(f"models.{name}: {exc}") from None
    log.info("model %s: %s, input %dx%dx%d %s, %d classes, runtime %s", name,
             os.path.basename(cfg.path), spec.width, spec.height, spec.channels,
             np.dtype(spec.dtype).name, classes, find_runtime())
    return LoadedModel(name=name, path=cfg.path, model_bytes=data,
                       sha256=hashlib.sha256(data).hexdigest(), spec=spec, lut=lut,
                       out_scale=float(out_scale), out_zero_point=int(out_zp), labels=labels,
                       top_k=cfg.top_k, threads=cfg.threads)


def _input_spec(detail: dict, path: str) -> InputSpec:
    shape = [int(x) for x in detail["shape"]]
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelError(f"{path}: input shape {shape} is not an NHWC image with 1 or 3 channels")
    dtype = np.dtype(detail["dtype"])
    if dtype not in (np.uint8, np.int8, np.float32):
        raise ModelError(f"{path}: input type {dtype.name} is not uint8, int8 or float32")
    scale, zero_point = detail["quantization"]
    if dtype != np.float32 and not scale:
        raise ModelError(f"{path}: {dtype.name} input has no quantization scale")
    return InputSpec(height=shape[1], width=shape[2], channels=shape[3], dtype=dtype,
                     scale=float(scale), zero_point=int(zero_point))


def _labels(cfg: ModelConfig, data: bytes, classes: int) -> list[str]:
    if cfg.labels:
        return fit_labels(read_labels(cfg.labels), classes, cfg.labels)
    embedded = embedded_labels(data)
    if embedded:
        where = f"{cfg.path} (embedded labels)"
        try:
            return fit_labels(parse_labels(embedded), classes, where)
        except ValueError as exc:
            raise ModelError(f"{where}: {exc}") from None
    log.warning("%s: no labels file; classes are named by their index", cfg.path)
    return [str(i) for i in range(classes)]
