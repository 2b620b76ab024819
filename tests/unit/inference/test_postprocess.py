"""Output tensor -> scores -> top-k: pure math."""

from __future__ import annotations

import numpy as np
import pytest

from edged.inference.postprocess import dequantize, softmax, top_k

# --- dequantize ------------------------------------------------------------------------------


def test_dequantize_uint8_imagenet_output():
    raw = np.array([0, 1, 128, 255], dtype=np.uint8)
    got = dequantize(raw, 1 / 256, 0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.0, 1 / 256, 0.5, 255 / 256], np.float32))


def test_dequantize_int8_zero_point_minus_128():
    raw = np.array([-128, -127, 0, 127], dtype=np.int8)
    got = dequantize(raw, 1 / 256, -128)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([0.0, 1 / 256, 0.5, 255 / 256], np.float32))


def test_dequantize_int8_no_overflow_in_arithmetic():
    """(raw - zp) must be computed wider than int8: 127 - (-128) = 255, not -1."""
    got = dequantize(np.array([127], dtype=np.int8), 0.5, -128)
    assert got[0] == pytest.approx(127.5)


def test_dequantize_negative_scores_with_positive_zero_point():
    got = dequantize(np.array([0, 10, 20], dtype=np.uint8), 0.25, 10)
    np.testing.assert_array_equal(got, [-2.5, 0.0, 2.5])


def test_dequantize_float_passthrough():
    raw = np.array([0.1, -3.0, 7.25], dtype=np.float32)
    got = dequantize(raw, 0.0, 0)
    np.testing.assert_array_equal(got, raw)
    assert got.dtype == np.float32
    # Even if a float output reported a quantization, it is not applied to float data.
    np.testing.assert_array_equal(dequantize(raw, 0.5, 3), raw)


def test_dequantize_quantized_without_scale_is_cast():
    got = dequantize(np.array([3, 200], dtype=np.uint8), 0.0, 0)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, [3.0, 200.0])


# --- top_k -----------------------------------------------------------------------------------


def test_top_k_order_best_first():
    scores = np.array([0.1, 0.7, 0.05, 0.9, 0.3], dtype=np.float32)
    got = top_k(scores, 3)
    assert [i for i, _ in got] == [3, 1, 4]
    assert [s for _, s in got] == pytest.approx([0.9, 0.7, 0.3])
    assert all(isinstance(i, int) and isinstance(s, float) for i, s in got)


def test_top_k_one():
    assert top_k(np.array([1.0, 5.0, 2.0], dtype=np.float32), 1) == [(1, 5.0)]


def test_top_k_larger_than_classes_returns_all_sorted():
    scores = np.array([0.2, 0.5, 0.3], dtype=np.float32)
    got = top_k(scores, 10)
    assert [i for i, _ in got] == [1, 2, 0]
    assert len(top_k(scores, 3)) == 3


def test_top_k_accepts_2d_output():
    scores = np.array([[0.2, 0.5, 0.3]], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 2)] == [1, 2]


def test_top_k_negative_scores():
    scores = np.array([-5.0, -1.0, -3.0], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 2)] == [1, 2]


def test_top_k_ties_inside_result_lower_index_first():
    scores = np.array([0.1, 0.4, 0.4, 0.05, 0.4], dtype=np.float32)
    assert [i for i, _ in top_k(scores, 3)] == [1, 2, 4]
    assert [i for i, _ in top_k(scores, 5)] == [1, 2, 4, 0, 3]


def test_top_k_matches_stable_sort_when_no_ties_at_cut():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 1100))
        scores = rng.random(n).astype(np.float32)  # continuous: ties practically never happen
        k = int(rng.integers(1, n + 3))
        want = sorted(range(n), key=lambda i: (-scores[i], i))[:k]
        assert [i for i, _ in top_k(scores, k)] == want


def test_top_k_ties_at_cut_prefer_lower_index():
    assert [i for i, _ in top_k(np.zeros(1001, dtype=np.float32), 3)] == [0, 1, 2]
    scores = np.array([0.5] + [0.0] * 1000, dtype=np.float32)
    assert [i for i, _ in top_k(scores, 3)] == [0, 1, 2]


# --- softmax ---------------------------------------------------------------------------------


def test_softmax_sums_to_one_and_keeps_order():
    x = np.array([1.0, 2.0, 3.0, -1.0], dtype=np.float32)
    p = softmax(x)
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert (p > 0).all()
    assert list(np.argsort(-p)) == [2, 1, 0, 3]
    expected = np.exp([1.0, 2.0, 3.0, -1.0]) / np.exp([1.0, 2.0, 3.0, -1.0]).sum()
    np.testing.assert_allclose(p, expected, rtol=1e-5)


def test_softmax_stable_for_large_logits():
    p = softmax(np.array([1000.0, 1000.0, 999.0], dtype=np.float32))
    assert np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert p[0] == pytest.approx(p[1])
    assert p[0] / p[2] == pytest.approx(np.e, rel=1e-5)


def test_softmax_stable_for_very_negative_logits():
    p = softmax(np.array([-1e4, -1e4 - 1.0], dtype=np.float64))
    assert np.isfinite(p).all()
    assert p.sum() == pytest.approx(1.0)
    assert p[0] / p[1] == pytest.approx(np.e)


def test_softmax_shift_invariant():
    x = np.array([0.3, -2.0, 5.0])
    np.testing.assert_allclose(softmax(x), softmax(x + 123.0), rtol=1e-12)
