"""A scene with several inspection points side by side, made with the demo's generator: each
tile is one demo frame (320x240) of its own class, so each region's crop is exactly what the
demo model was trained on, and the truth of every region of every frame is known."""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"
TILE = (320, 240)


@lru_cache(maxsize=1)
def scene_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_scene", DEMO / "scene.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def tiled(labels: list[str], rng: np.random.Generator, cols: int = 2) -> np.ndarray:
    """One frame: the demo scene of each label, tiled left to right, top to bottom."""
    scene = scene_module()
    w, h = TILE
    rows = (len(labels) + cols - 1) // cols
    out = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, label in enumerate(labels):
        r, c = divmod(i, cols)
        out[r * h:(r + 1) * h, c * w:(c + 1) * w] = scene.render(label, rng, TILE)
    return out


def write_frames(folder: Path, n: int, regions: int = 4, seed: int = 17, cols: int = 2
                 ) -> list[list[str]]:
    """`n` PNG frames in `folder` (frame_000.png ...); returns each frame's labels by tile.
    Frame i shows in tile j the class (i + j) mod 5: every tile a different class."""
    labels = scene_module().LABELS
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for i in range(n):
        row = [labels[(i + j) % len(labels)] for j in range(regions)]
        cv2.imwrite(str(folder / f"frame_{i:03d}.png"), tiled(row, rng, cols))
        truth.append(row)
    return truth
