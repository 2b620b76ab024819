"""Render the demo video conveyor.mp4 and its per-frame ground truth.

Usage: python models/demo/make_video.py
Each part is held under the camera for FRAMES_PER_PART frames (belt creeps, part
wobbles, light flickers) and parts change with a hard cut, so every frame has
exactly one unambiguous label: conveyor.truth.json[i] is the label of frame i.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scene import LABELS, draw, jitter, sample_scene

SEED = 7  # differs from train.py so the video is unseen data
SIZE = (320, 240)
FPS = 15
PARTS_PER_CLASS = 6
FRAMES_PER_PART = 20  # 30 parts x 20 frames = 600 frames = 40 s
MAX_BYTES = 5 * 1024 * 1024


def main() -> int:
    rng = np.random.default_rng(SEED)
    order = [lab for lab in LABELS for _ in range(PARTS_PER_CLASS)]
    rng.shuffle(order)

    video, truth_path = HERE / "conveyor.mp4", HERE / "conveyor.truth.json"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    if not writer.isOpened():
        print("error: cannot open mp4v VideoWriter")
        return 1
    truth: list[str] = []
    for label in order:
        scene = sample_scene(label, rng)
        for t in range(FRAMES_PER_PART):
            writer.write(draw(jitter(scene, rng, t), rng, SIZE))
            truth.append(label)
    writer.release()
    truth_path.write_text(json.dumps(truth) + "\n")

    # Verify what a reader actually gets back, not what we think we wrote.
    cap = cv2.VideoCapture(str(video))
    read = 0
    while cap.read()[0]:
        read += 1
    cap.release()
    size = video.stat().st_size
    print(
        f"{video.name}: {SIZE[0]}x{SIZE[1]} @ {FPS} fps, {read} frames "
        f"({read / FPS:.1f} s), {size / 1024:.0f} KiB; truth labels: {len(truth)}"
    )
    if read != len(truth):
        print("error: frame count read back differs from truth length")
        return 1
    if size > MAX_BYTES:
        print("error: video exceeds 5 MB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
