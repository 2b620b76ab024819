"""A model made ready to serve: its file checked, tensors described, labels fitted."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from edged.inference.backends import Backend, get_backend
from edged.inference.backends.fallback import AcceleratorModelConfig
from edged.inference.backends.fallback import AcceleratorState, FallbackBackend
from edged.config import ModelConfig
from edged.errors import ModelError
from edged.model.labels import fit_labels, parse_labels, read_labels
from edged.model.flatbuffer import embedded_labels, read_model_bytes
from edged.model.allocate import Allocated, allocate
from edged.model.info import ModelInfo, TensorInfo, read_model_info
from edged.inference.postprocess import output_kind_from_quantization
from edged.inference.preprocess import DEFAULT_MEAN, DEFAULT_STD, InputSpec, build_lut
from edged.model.runtime import find_runtime

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
    resize: str = "stretch"
    output_kind: str = "auto"  # probabilities | logits | auto (decided per result)
    output_index: int = 0
    mean: list[float] = field(default_factory=lambda: [DEFAULT_MEAN])
    std: list[float] = field(default_factory=lambda: [DEFAULT_STD])
    normalization_from: str = "default"  # metadata | config | default
    info: ModelInfo | None = field(default=None, repr=False)  # shapes as allocated
    file_info: ModelInfo | None = field(default=None, repr=False)  # shapes as stored
    cfg: ModelConfig | None = field(default=None, repr=False)
    cpu_bytes: bytes | None = field(default=None, repr=False)  # the CPU fallback's model
    accel_state: AcceleratorState | None = field(default=None, repr=False)

    @property
    def classes(self) -> int:
        return len(self.labels)

    @property
    def accelerator(self) -> str | None:
        """The configured accelerator's name (edgetpu, gpu, npu, delegate), else None."""
        delegate = self.cfg.delegate if self.cfg is not None else None
        if delegate is None:
            return None
        return delegate if isinstance(delegate, str) else "delegate"

    def new_backend(self, metrics: object | None = None, threads: int | None = None) -> Backend:
        """A fresh, unstarted backend for one worker (with its CPU fallback when configured);
        `threads` overrides the configured interpreter threads (`edged bench` tries several)."""
        threads = self.threads if threads is None else threads
        if self.accelerator is None:
            return get_backend(self.backend_key)(self.model_bytes, threads=threads,
                                                 output_index=self.output_index, name=self.path)
        cfg = self.cfg
        assert isinstance(cfg, AcceleratorModelConfig) and self.accel_state is not None
        if metrics is not None:
            self.accel_state.bind(metrics)
        cpu_bytes = self.cpu_bytes

        def make_cpu() -> Backend:
            return get_backend("cpu")(cpu_bytes, threads=threads,
                                      output_index=self.output_index,
                                      name=cfg.cpu_path or self.path)

        return FallbackBackend(lambda: self._make_accelerator(threads),
                               make_cpu if cpu_bytes else None,
                               state=self.accel_state, policy=cfg.fallback, retry_s=cfg.retry_s,
                               invoke_timeout_s=cfg.invoke_timeout_s,
                               cpu_name=os.path.basename(cfg.cpu_path or self.path),
                               name=self.name)

    def _make_accelerator(self, threads: int) -> Backend:
        cfg = self.cfg
        assert cfg is not None and self.info is not None
        outs = self.info.outputs
        # The backend's own file knows its settings; it takes what it needs of these.
        return get_backend(cfg.backend).from_config(
            self.model_bytes, cfg, threads=threads, output_index=self.output_index,
            name=self.path, input_shape=(self.spec.height, self.spec.width, self.spec.channels),
            input_dtype=self.spec.dtype, output_sizes=[_size(t) for t in outs],
            output_dtypes=[np.dtype(t.dtype) for t in outs])


def load_model(name: str, cfg: ModelConfig) -> LoadedModel:
    """Check and describe a model; ModelError with one clear line when it cannot serve.

    Shapes come from the interpreter after the batch-of-1 resize and allocation, not from the
    file (which may store an output's shape empty or dynamic); the file's view stays in
    `file_info`."""
    data = read_model_bytes(cfg.path)
    file_info = read_model_info(data, cfg.path)
    # The runtime's own verdict first: it says most about a bad model.
    allocated = allocate(data, cfg.path) if cfg.delegate is None else None
    if not file_info.inputs or not file_info.outputs:
        raise ModelError(f"{cfg.path}: the model has no inputs or no outputs")
    if len(file_info.inputs) != 1:
        raise ModelError(f"{cfg.path}: {len(file_info.inputs)} inputs; an image classifier "
                         "has one")
    cpu_bytes, twin = _cpu_model(cfg, file_info, data)
    if cpu_bytes is not None and cfg.delegate is not None:  # the fallback must run too
        allocated = allocate(cpu_bytes, cfg.cpu_path or cfg.path)
    elif cpu_bytes is None and cfg.delegate is None:
        raise ModelError(f"{cfg.path}: needs the {', '.join(file_info.delegates_needed)} "
                         "delegate")
    info, twin_info = served_shapes(file_info, twin, allocated, cfg.path)
    spec = _input_spec(info.inputs[0], cfg.path)
    out_index = _output_index(info, cfg)
    out = info.outputs[out_index]
    if out.per_channel:
        raise ModelError(f"{cfg.path}: output {out.name!r} is quantized per channel; a "
                         "classifier's scores need one scale")
    if out.dtype not in ("uint8", "int8", "float32"):
        raise ModelError(f"{cfg.path}: output type {out.dtype} is not uint8, int8 or float32")
    if twin_info is not None:
        _check_twin(cfg, twin_info, spec, out)
    classes = _size(out)
    out_scale = out.scales[0] if out.scales else 0.0
    out_zp = out.zero_points[0] if out.zero_points else 0
    stored = file_info.outputs[out_index]
    if stored.shape != out.shape:
        log.info("%s: output %r is stored with shape %s (signature %s); allocated: %s",
                 cfg.path, out.name, stored.shape, stored.shape_signature, out.shape)

    labels = _labels(cfg, data, classes, info)
    mean, std, source = _normalization(name, cfg, info)
    try:
        lut = build_lut(spec, mean, std)
    except ValueError as exc:
        raise ModelError(f"models.{name}: {exc}") from None
    kind = cfg.output
    if kind == "auto":
        kind = output_kind_from_quantization(np.dtype(out.dtype), out_scale, out_zp) or "auto"
    loaded = LoadedModel(
        name=name, path=cfg.path, model_bytes=data, sha256=hashlib.sha256(data).hexdigest(),
        spec=spec, lut=lut, out_scale=float(out_scale), out_zero_point=int(out_zp),
        labels=labels, top_k=cfg.top_k, threads=cfg.threads, resize=cfg.resize,
        output_kind=kind, output_index=out_index, mean=list(mean), std=list(std),
        normalization_from=source, info=info, file_info=file_info, cfg=cfg,
        cpu_bytes=cpu_bytes)
    if loaded.accelerator is not None:
        loaded.accel_state = AcceleratorState(name, loaded.accelerator)
    log.info("model %s: %s, input %dx%dx%d %s, %d classes, output %r (%s), normalization "
             "mean %s std %s (%s), resize %s, runtime %s%s", name,
             os.path.basename(cfg.path), spec.width, spec.height, spec.channels,
             np.dtype(spec.dtype).name, classes, out.name, kind, _fmt(mean), _fmt(std), source,
             cfg.resize, find_runtime(),
             f", accelerator {loaded.accelerator} (fallback {cfg.fallback})"
             if loaded.accelerator else "")
    return loaded


def served_shapes(file_info: ModelInfo, twin: ModelInfo | None, allocated: Allocated | None,
                  path: str) -> tuple[ModelInfo, ModelInfo | None]:
    """(the model as it serves, its CPU twin as it serves or None).

    `allocated` is the CPU interpreter's view of the twin when there is one, else of the model
    itself; None when no CPU interpreter can build it (an accelerator-only model), and then
    the file's shapes must be complete."""
    if allocated is None:
        for t in (*file_info.inputs, *file_info.outputs):
            if not t.static:
                raise ModelError(
                    f"{path}: tensor {t.name!r} has no complete shape in the file (shape "
                    f"{t.shape}, signature {t.shape_signature}) and no CPU interpreter can "
                    "allocate it: give cpu_path, the model's CPU version")
        return file_info, None
    if twin is None:
        return _with_shapes(file_info, allocated, path), None
    twin_info = _with_shapes(twin, allocated, path)
    # An accelerator's model keeps a complete stored shape; what it lacks is its twin's.
    ins = [t.shape if t.static or i >= len(twin_info.inputs) else twin_info.inputs[i].shape
           for i, t in enumerate(file_info.inputs)]
    outs = []
    for i, t in enumerate(file_info.outputs):
        other = _twin_output(twin_info, t, i)
        outs.append(t.shape if t.static or other is None else other.shape)
    return file_info.with_shapes(ins, outs), twin_info


def _with_shapes(info: ModelInfo, allocated: Allocated, path: str) -> ModelInfo:
    try:
        return info.with_shapes(allocated.inputs, allocated.outputs)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _twin_output(twin: ModelInfo, out: TensorInfo, position: int) -> TensorInfo | None:
    """The twin's output that corresponds to `out`: same name, else same position."""
    same = next((t for t in twin.outputs if t.name == out.name), None)
    if same is not None:
        return same
    return twin.outputs[position] if position < len(twin.outputs) else None


def _size(t: TensorInfo) -> int:
    shape = t.shape
    return int(np.prod(shape[1:])) if len(shape) > 1 else int(shape[0]) if shape else 1


def _fmt(values: list[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _input_spec(t: TensorInfo, path: str) -> InputSpec:
    shape = t.shape
    if len(shape) != 4 or shape[3] not in (1, 3):
        raise ModelError(f"{path}: input shape {shape} is not an NHWC image with 1 or 3 channels")
    if shape[0] != 1 and not (t.shape_signature and t.shape_signature[0] == -1):
        raise ModelError(f"{path}: input batch size is fixed at {shape[0]}; edged feeds one "
                         "frame at a time (a batch of 1 or a dynamic batch is needed)")
    if shape[1] < 1 or shape[2] < 1:
        raise ModelError(f"{path}: input shape {shape} has no fixed height and width")
    if t.dtype not in ("uint8", "int8", "float32"):
        raise ModelError(f"{path}: input type {t.dtype} is not uint8, int8 or float32")
    dtype = np.dtype(t.dtype)
    scale: float | tuple[float, ...] = 0.0
    zero_point: int | tuple[int, ...] = 0
    if dtype != np.float32:
        if not t.scales or not any(t.scales):
            raise ModelError(f"{path}: {dtype.name} input has no quantization scale")
        if t.per_channel:
            if len(t.scales) != shape[3] or t.quantized_dimension != 3:
                raise ModelError(f"{path}: input is quantized per channel along dimension "
                                 f"{t.quantized_dimension}, not along its colour channels")
            scale = tuple(float(s) for s in t.scales)
            zps = t.zero_points or [0] * len(t.scales)
            zero_point = tuple(int(z) for z in (zps * len(t.scales))[:len(t.scales)])
        else:
            scale = float(t.scales[0])
            zero_point = int(t.zero_points[0]) if t.zero_points else 0
    return InputSpec(height=shape[1], width=shape[2], channels=shape[3], dtype=dtype,
                     scale=scale, zero_point=zero_point)


def _output_index(info: ModelInfo, cfg: ModelConfig) -> int:
    want = cfg.output_tensor
    names = [t.name for t in info.outputs]
    if want is None:
        if len(info.outputs) > 1:
            log.info("%s: %d outputs (%s); using the first (set output_tensor to choose)",
                     cfg.path, len(names), ", ".join(names))
        return 0
    if isinstance(want, int):
        if not 0 <= want < len(names):
            raise ModelError(f"{cfg.path}: output_tensor {want} is out of range: the model has "
                             f"{len(names)} output(s)")
        return want
    if want not in names:
        raise ModelError(f"{cfg.path}: no output named {want!r}; outputs: {', '.join(names)}")
    return names.index(want)


def _cpu_path(cfg: ModelConfig) -> str | None:
    """An accelerator's CPU twin (`cpu_path`); CPU models have none."""
    return cfg.cpu_path if isinstance(cfg, AcceleratorModelConfig) else None


def _cpu_model(cfg: ModelConfig, info: ModelInfo, data: bytes
               ) -> tuple[bytes | None, ModelInfo | None]:
    """(the model the CPU runs, the file view of cpu_path when one is given); (None, None)
    when there is none."""
    if _cpu_path(cfg) is None:
        if info.delegates_needed and cfg.delegate is not None:
            return None, None  # e.g. an Edge TPU model without its CPU twin: no fallback
        return data, None
    cpu = read_model_bytes(_cpu_path(cfg))
    twin = read_model_info(cpu, _cpu_path(cfg))
    if twin.delegates_needed:
        raise ModelError(f"{_cpu_path(cfg)}: cpu_path is itself compiled for the "
                         f"{', '.join(twin.delegates_needed)}; give the CPU version")
    return cpu, twin


def _check_twin(cfg: ModelConfig, twin: ModelInfo, spec: InputSpec, out: TensorInfo) -> None:
    """cpu_path must be the same model for the CPU: same input and output, as allocated."""
    try:
        same_in = len(twin.inputs) == 1 and _input_spec(twin.inputs[0],
                                                        str(_cpu_path(cfg))) == spec
    except ModelError:
        same_in = False
    twin_out = next((t for t in twin.outputs if t.name == out.name), None) or (
        twin.outputs[0] if len(twin.outputs) == 1 else None)
    same_out = twin_out is not None and (twin_out.dtype, _size(twin_out), twin_out.scales,
                                         twin_out.zero_points) == (
        out.dtype, _size(out), out.scales, out.zero_points)
    if not (same_in and same_out):
        raise ModelError(f"{_cpu_path(cfg)}: cpu_path's input or output differs from "
                         f"{os.path.basename(cfg.path)}'s; it must be the same model for the CPU")


def _normalization(name: str, cfg: ModelConfig, info: ModelInfo
                   ) -> tuple[list[float], list[float], str]:
    """The model's own metadata first, then the config, then the default 127.5 / 127.5."""
    given = cfg.mean is not None or cfg.std is not None
    as_list = (lambda v, d: [float(x) for x in (v if isinstance(v, list) else [d if v is None
                                                                              else v])])
    if info.mean and info.std:
        if given and (as_list(cfg.mean, DEFAULT_MEAN), as_list(cfg.std, DEFAULT_STD)) != (
                info.mean, info.std):
            log.warning("models.%s: the model's metadata gives mean %s std %s; the configured "
                        "mean/std are not used", name, _fmt(info.mean), _fmt(info.std))
        return list(info.mean), list(info.std), "metadata"
    if given:
        return as_list(cfg.mean, DEFAULT_MEAN), as_list(cfg.std, DEFAULT_STD), "config"
    return [DEFAULT_MEAN], [DEFAULT_STD], "default"


def _labels(cfg: ModelConfig, data: bytes, classes: int, info: ModelInfo) -> list[str]:
    if cfg.labels:
        return fit_labels(read_labels(cfg.labels), classes, cfg.labels)
    embedded = embedded_labels(data, info.labels_file)
    if not embedded and _cpu_path(cfg):  # an Edge TPU model's CPU twin often carries them
        cpu = read_model_bytes(_cpu_path(cfg))
        embedded = embedded_labels(cpu, read_model_info(cpu, _cpu_path(cfg)).labels_file)
    if embedded:
        where = f"{cfg.path} (embedded labels)"
        try:
            return fit_labels(parse_labels(embedded), classes, where)
        except ValueError as exc:
            raise ModelError(f"{where}: {exc}") from None
    log.warning("%s: no labels file; classes are named by their index", cfg.path)
    return [str(i) for i in range(classes)]
