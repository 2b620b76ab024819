"""Train the demo conveyor QC classifier and export a fully int8 TFLite model.

Usage: python models/demo/train.py   (writes model.tflite + labels.txt next to this file)
Deterministic: fixed seeds for data, weights and shuffling, TF op determinism.
"""

from __future__ import annotations

import os
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import tensorflow as tf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ start-up chatter out
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from evaluate import load_interpreter, preprocess, quantize  # shared daemon contract
from scene import LABELS, render

SEED = 20240601  # the video uses a different seed (make_video.py)
FRAME = (320, 240)  # render at the video resolution, then apply the daemon resize
INPUT = (96, 96)  # model input W, H
TRAIN_PER_CLASS = 1600
VAL_PER_CLASS = 120
EPOCHS = 12
BATCH = 64


def _make_chunk(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Render `count` frames of one class; each chunk owns an independent seed."""
    seed, label_idx, count = args
    rng = np.random.default_rng(seed)
    xs = np.empty((count, INPUT[1], INPUT[0], 3), np.float32)
    for i in range(count):
        frame = render(LABELS[label_idx], rng, FRAME)
        if rng.random() < 0.5:  # codecs smooth fine detail and sensor noise
            frame = cv2.GaussianBlur(frame, (0, 0), rng.uniform(0.3, 0.9))
        # Random JPEG round trip at video resolution mimics codec blocking/blur.
        q = int(rng.integers(20, 96))
        jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, q])[1]
        frame = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
        xs[i] = preprocess(frame, INPUT)
    return xs, np.full(count, label_idx, np.int64)


def make_dataset(seed: int, per_class: int, workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Render per_class frames of every class in chunks of 100 across worker processes."""
    jobs = [
        (c, min(100, per_class - start))
        for c in range(len(LABELS))
        for start in range(0, per_class, 100)
    ]
    seeds = np.random.SeedSequence(seed).generate_state(len(jobs))
    with Pool(workers) as pool:  # map keeps job order, so the result is deterministic
        parts = pool.map(_make_chunk, [(int(s), c, n) for s, (c, n) in zip(seeds, jobs)])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build_model(num_classes: int) -> tf.keras.Model:
    """Small VGG-style CNN; Flatten (not global pooling) keeps position info for `misaligned`."""
    import tensorflow as tf

    L = tf.keras.layers
    x = inp = L.Input((INPUT[1], INPUT[0], 3), name="image")  # already in [-1, 1]

    def block(x: tf.Tensor, filters: int, strides: int = 1) -> tf.Tensor:
        x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x)

    x = block(x, 16, strides=2)  # 48x48
    x = L.MaxPooling2D()(block(x, 32))  # 24x24
    x = L.MaxPooling2D()(block(x, 48))  # 12x12
    x = L.MaxPooling2D()(block(x, 64))  # 6x6
    x = L.Dropout(0.3)(L.Flatten()(x))
    out = L.Dense(num_classes, activation="softmax", name="probs")(x)
    return tf.keras.Model(inp, out)


def to_tflite(model: tf.keras.Model, rep: np.ndarray) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[None]] for x in rep)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def int8_accuracy(tflite: Path, xs: np.ndarray, ys: np.ndarray) -> float:
    """Accuracy of the exported int8 model, run by the same runtime as the daemon."""
    interp = load_interpreter(tflite)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    correct = 0
    for x, y in zip(xs, ys):
        interp.set_tensor(inp["index"], quantize(x, *inp["quantization"])[None])
        interp.invoke()
        correct += int(np.argmax(interp.get_tensor(out["index"])[0]) == y)
    return correct / len(ys)


def main() -> None:
    t0 = time.time()
    # Render data before importing TensorFlow: forking a process with TF loaded is unsafe.
    x_train, y_train = make_dataset(SEED, TRAIN_PER_CLASS)
    x_val, y_val = make_dataset(SEED + 1, VAL_PER_CLASS)
    print(f"data: train {x_train.shape} val {x_val.shape} in {time.time() - t0:.0f}s", flush=True)

    import tensorflow as tf

    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    model = build_model(len(LABELS))
    steps = EPOCHS * int(np.ceil(len(x_train) / BATCH))
    lr = tf.keras.optimizers.schedules.CosineDecay(3e-3, steps)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=True,
        validation_data=(x_val, y_val),
        verbose=2,
    )

    rep = x_train[np.random.default_rng(SEED).choice(len(x_train), 300, replace=False)]
    tflite = to_tflite(model, rep)
    (HERE / "model.tflite").write_bytes(tflite)
    (HERE / "labels.txt").write_text("\n".join(LABELS) + "\n")
    acc = int8_accuracy(HERE / "model.tflite", x_val, y_val)
    print(
        f"int8 val accuracy {acc:.4f}; model.tflite {len(tflite) / 1024:.1f} KiB; "
        f"tensorflow {tf.__version__}; total {time.time() - t0:.0f}s"
    )


if __name__ == "__main__":
    main()
