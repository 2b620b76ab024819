"""`edged classify`: one-shot classification with exactly the daemon's preprocessing."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from pydantic import ValidationError

from edged.capture.imagedecode import ImageRejected, read_image_file, safe_name
from edged.mqtt.contract import classify_row
from edged.config import ModelConfig
from edged.errors import EdgedError
from edged.tools.evaluation import Evaluation, labelled_images
from edged.model.loaded import load_model
from edged.model.nativelog import quiet_native_stderr
from edged.inference.worker import classify


def model_config(model: str, labels: str | None, top_k: int, **options: Any) -> ModelConfig:
    """The command line's options as the daemon's model config (same validation)."""
    for name, path in (("--model", model), ("--labels", labels),
                       ("--cpu-path", options.get("cpu_path"))):
        if path is not None and not os.path.isfile(path):
            raise EdgedError(f"{name}: file not found: {path}")
    for key in ("mean", "std"):
        options[key] = _scalar_or_list(options.get(key))
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return ModelConfig(path=model, labels=labels, top_k=top_k, workers=1, **options)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]).replace("_", "-")
        owners = ModelConfig.variant_settings().get(str(err["loc"][0]))
        if err["type"] == "extra_forbidden" and owners:  # e.g. --device without its delegate
            delegate = options.get("delegate") or "none (the CPU)"
            raise EdgedError(f"--{key}: an option of the {' and '.join(sorted(owners))} "
                             f"backends, not of --delegate {delegate}") from None
        raise EdgedError(f"--{key}: {err['msg'].removeprefix('Value error, ')}") from None


def run_classify(model: str, labels: str | None, top_k: int, images: list[str], as_json: bool,
                 mean: list[float] | None = None, std: list[float] | None = None, *,
                 progress: bool | None = None, eval_dir: str | None = None,
                 timing: bool = False, **options: Any) -> int:
    """Print the top-k of every image (or, with eval_dir, an evaluation report); exit code 1
    when any image could not be read."""
    cfg = model_config(model, labels, top_k, mean=mean, std=std, **options)
    loaded = load_model("cli", cfg)
    if eval_dir is not None:
        work = labelled_images(eval_dir, loaded.labels)
    else:
        if not images:
            raise EdgedError("give IMAGE arguments or --eval FOLDER")
        work = [(path, None) for path in images]
    backend = loaded.new_backend()
    backend.start()
    status = 0
    evaluation = Evaluation(loaded.labels)
    bar = _progress(len(work), progress)
    try:
        for path, truth in work:
            t0 = time.perf_counter()
            with quiet_native_stderr(discard=True):  # libjpeg's own complaints
                # Read by Python, within the daemon's pixel budget: cv2.imread on a name that
                # is not UTF-8 crashes the process.
                try:
                    image = read_image_file(path)
                except (ImageRejected, OSError):
                    image = None
            bar.update(1)
            if image is None:
                bar.write(f"edged: {safe_name(path)}: cannot read image", file=sys.stderr)
                evaluation.unreadable += 1
                status = 1
                continue
            top, elapsed = classify(backend, loaded, image)
            total = time.perf_counter() - t0
            if truth is not None:
                evaluation.add(truth, top[0][0])
                continue
            _print_result(safe_name(path), top, (elapsed, total), loaded.labels, as_json, timing,
                          bar)
    finally:
        bar.close()
        backend.close()
    if eval_dir is not None:
        print(json.dumps(evaluation.as_dict()) if as_json else evaluation.report())
    return status


def _print_result(path: str, top: list[tuple[int, float]], times: tuple[float, float],
                  labels: list[str], as_json: bool, timing: bool, bar: Any) -> None:
    """times: (invoke seconds, read+preprocess+invoke+postprocess seconds)."""
    best, score = top[0]
    if as_json:
        row = classify_row(path, labels, top, times[0])  # the fields of a daemon result
        if timing:
            row["total_ms"] = round(times[1] * 1000, 3)
        bar.write(json.dumps(row))
        return
    lines = [f"{path}: {labels[best]} ({score:.4f})"]
    lines += [f"  {rank}. {labels[i]} ({s:.4f})" for rank, (i, s) in enumerate(top[1:], start=2)]
    if timing:
        lines.append(f"  time: inference {times[0] * 1000:.2f} ms, total {times[1] * 1000:.2f} ms")
    bar.write("\n".join(lines))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def write(self, text: str, file: Any = None) -> None:
        print(text, file=file or sys.stdout)

    def close(self) -> None:
        pass


def _progress(total: int, wanted: bool | None) -> Any:
    """A tqdm bar on stderr over many images: on by default only on a terminal."""
    if wanted is None:
        wanted = total > 1 and sys.stderr.isatty()
    if not wanted:
        return _NoBar()
    from tqdm import tqdm

    class _Bar(tqdm):  # results go to stdout, the bar stays on stderr
        def write(self, text: str, file: Any = None) -> None:  # type: ignore[override]
            tqdm.write(text, file=file or sys.stdout)

    return _Bar(total=total, unit="img", file=sys.stderr, dynamic_ncols=True)


def _scalar_or_list(values: list[float] | None) -> float | list[float] | None:
    if values is None:
        return None
    return values[0] if len(values) == 1 else values
