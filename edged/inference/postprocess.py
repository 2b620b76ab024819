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


OUTPUT_KINDS = ("auto", "probabilities", "logits")
# A float output is taken as probabilities when every value is in [0, 1] and they sum to 1
# within this tolerance; anything else is logits (or scores that need a softmax).
_SUM_TOLERANCE = 0.02


def quantized_range(dtype: np.dtype, scale: float, zero_point: int) -> tuple[float, float]:
    """The real values a quantized output tensor can express."""
    info = np.iinfo(dtype)
    return (info.min - zero_point) * scale, (info.max - zero_point) * scale


def output_kind_from_quantization(dtype: np.dtype, scale: float, zero_point: int) -> str | None:
    """'probabilities' when a quantized output can only hold values in [0, 1] (a quantized
    softmax: uint8 scale 1/256 zp 0, int8 scale 1/256 zp -128); None (decide per result)
    otherwise."""
    if np.dtype(dtype) == np.float32 or not scale:
        return None
    low, high = quantized_range(np.dtype(dtype), scale, zero_point)
    return "probabilities" if low >= -1e-6 and high <= 1.0 + 1e-6 else None


def looks_like_probabilities(scores: np.ndarray) -> bool:
    """Every value in [0, 1] and a sum of 1 (within _SUM_TOLERANCE)."""
    if scores.size == 0:
        return False
    lo, hi = float(np.min(scores)), float(np.max(scores))
    return lo >= -1e-6 and hi <= 1.0 + 1e-6 and abs(float(np.sum(scores)) - 1.0) <= _SUM_TOLERANCE


def to_scores(raw: np.ndarray, scale: float, zero_point: int, kind: str) -> np.ndarray:
    """Dequantize, then softmax when the output is logits.

    kind: `probabilities` (used as is), `logits` (always softmax) or `auto`: probabilities when
    the values look like a distribution (see looks_like_probabilities), else softmax."""
    scores = dequantize(raw, scale, zero_point)
    if kind == "probabilities":
        return scores
    if kind == "logits" or not looks_like_probabilities(scores):
        return softmax(scores.astype(np.float64)).astype(np.float32)
    return scores
