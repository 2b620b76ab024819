"""Score model.tflite on conveyor.mp4 against conveyor.truth.json, frame by frame.

Uses exactly the daemon's preprocessing contract (see README.md), so the number
printed here is what edged will see on this video.
Usage: python models/demo/evaluate.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
MEAN, STD = 127.5, 127.5


def preprocess(frame_bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Daemon contract: BGR->RGB, stretch-resize whole frame (INTER_LINEAR), (px-127.5)/127.5."""
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
    return (rgb.astype(np.float32) - MEAN) / STD


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)


def load_interpreter(path: Path):  # type depends on the installed runtime
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # older edge devices ship only tflite_runtime
        from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    return interp


def main() -> int:
    labels = (HERE / "labels.txt").read_text().splitlines()
    truth: list[str] = json.loads((HERE / "conveyor.truth.json").read_text())
    interp = load_interpreter(HERE / "model.tflite")
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    _, h, w, _ = inp["shape"]
    in_scale, in_zp = inp["quantization"]
    out_scale, out_zp = out["quantization"]
    print(f"input {inp['shape'].tolist()} {inp['dtype'].__name__} scale={in_scale:.6f} zp={in_zp}")
    print(
        f"output {out['shape'].tolist()} {out['dtype'].__name__} scale={out_scale:.6f} zp={out_zp}"
    )

    n = len(labels)
    confusion = np.zeros((n, n), np.int64)  # rows: truth, cols: predicted
    cap = cv2.VideoCapture(str(HERE / "conveyor.mp4"))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if frames >= len(truth):
            print(f"error: video has more frames than the {len(truth)} truth labels")
            return 1
        x = quantize(preprocess(frame, (w, h)), in_scale, in_zp)
        interp.set_tensor(inp["index"], x[None])
        interp.invoke()
        scores = (interp.get_tensor(out["index"])[0].astype(np.float32) - out_zp) * out_scale
        confusion[labels.index(truth[frames]), int(np.argmax(scores))] += 1
        frames += 1
    cap.release()
    if frames != len(truth):
        print(f"error: read {frames} frames but truth has {len(truth)} labels")
        return 1

    acc = np.trace(confusion) / frames
    print(f"\nframes: {frames}  accuracy: {acc:.4f}\n")
    width = max(len(s) for s in labels) + 2
    print("truth \\ pred".ljust(width) + "".join(s[:10].rjust(11) for s in labels) + "     recall")
    for i, name in enumerate(labels):
        row = confusion[i]
        recall = row[i] / row.sum() if row.sum() else float("nan")
        print(name.ljust(width) + "".join(f"{v:11d}" for v in row) + f"{recall:11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
