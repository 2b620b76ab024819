"""Output tensor to classes: pure functions."""

from __future__ import annotations

import numpy as np


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantized output -> float32 scores; float outputs pass through."""
    if raw.dtype == np.float32 or not scale:
        return raw.astype(np.float32, copy=False)
    return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k best (index, score), best first; equal scores keep the lower index first."""
    scores = scores.reshape(-1)
    # A stable sort keeps ties in index order (uint8 outputs have many exact ties).
    order = np.argsort(-scores, kind="stable")[:k]
    return [(int(i), float(scores[i])) for i in order]
