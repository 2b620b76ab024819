"""Pure parts of capture: reduction factor, reduced JPEG decode, fps sampling
by stream time, lag episodes, keyframe-rate learning and the decode policy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edged.capture.decode import HEADROOM, DecodeTarget, imread_flag, reduction, target_for
from edged.capture.imagedecode import decode_image
from edged.capture.pacing import FpsGate, LagEpisodes
from edged.capture.sources.avstream import KeyframeRate, keyframes_only


def jpeg(h: int, w: int, progressive: bool = False) -> bytes:
    image = (np.indices((h, w)).sum(axis=0)[..., None] % 256).astype(np.uint8).repeat(3, 2)
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if progressive else []
    ok, buf = cv2.imencode(".jpg", image, params)
    assert ok
    return buf.tobytes()


def test_reduction_keeps_headroom_times_the_model_input_on_both_sides():
    t = (100, 100)
    assert reduction((2 * HEADROOM * 100 - 1, 10_000), t) == 1
    assert reduction((2 * HEADROOM * 100, 2 * HEADROOM * 100), t) == 2
    assert reduction((4 * HEADROOM * 100, 8 * HEADROOM * 100), t) == 4
    assert reduction((8 * HEADROOM * 100, 8 * HEADROOM * 100), t) == 8
    assert reduction((10**5, 10**5), t) == 8
    assert reduction(None, t) == 1 and reduction((5000, 5000), None) == 1


def test_decode_image_reduced_with_auto_full_when_off_and_for_other_formats():
    size = (8 * HEADROOM * 32, 8 * HEADROOM * 32 + 5)
    data = jpeg(*size)
    target = DecodeTarget()
    target.hw = (32, 32)
    small = decode_image(data, target=target, scale_mode="auto")
    assert small.shape == (HEADROOM * 32, -(-size[1] // 8), 3)
    assert target.full_hw == size
    assert decode_image(jpeg(*size, progressive=True), target=target,
                        scale_mode="auto").shape == small.shape
    full = decode_image(data, target=target, scale_mode="off")
    assert full.shape[:2] == size and target.full_hw is None
    assert decode_image(data).shape == full.shape  # no target: full, as before
    ok, png = cv2.imencode(".png", np.zeros((2000, 2000, 3), np.uint8))
    assert decode_image(png.tobytes(), target=target, scale_mode="auto").shape == (2000, 2000, 3)
    assert imread_flag((5000, 5000), (32, 32), "auto", is_jpeg=False) == cv2.IMREAD_COLOR
    assert imread_flag((5000, 5000), (32, 32), "auto") == cv2.IMREAD_REDUCED_COLOR_8


def test_target_is_swapped_by_a_quarter_turn_and_off_with_a_roi():
    assert target_for((96, 128), 0, None) == (96, 128)
    assert target_for((96, 128), 90, None) == (128, 96)
    assert target_for((96, 128), 0, [0, 0, 10, 10]) is None


def test_fps_gate_takes_keyframes_that_wobble_around_the_period():
    gate = FpsGate(1.0)
    times = [0.0, 0.98, 2.01, 2.99, 4.0]
    assert [gate.accept(t, spacing=1.0) for t in times] == [True] * 5
    strict = FpsGate(1.0)
    assert [strict.accept(t) for t in times] == [True, False, True, False, True]


def test_fps_gate_samples_25_fps_to_2_and_restarts_when_time_goes_back():
    gate = FpsGate(2.0)
    taken = [i for i in range(100) if gate.accept(i * 0.04, spacing=0.04)]
    assert len(taken) == 8 and taken[:3] == [0, 12, 25]  # 0.0, 0.48, 1.0 s: 2 per second
    assert gate.accept(0.1, spacing=0.04)  # a reopen: pts starts over
    assert FpsGate(0).accept(5.0)  # fps 0: every frame


def test_lag_episode_lasts_until_quiet():
    ep = LagEpisodes(quiet_s=10)
    assert ep.jumped(100.0, 2.5) is True
    assert ep.jumped(103.0, 3.0) is False and ep.worst == 3.0
    assert ep.active(112.9) and not ep.ended(112.9)
    assert ep.ended(113.1) and not ep.active(113.1)
    assert not ep.ended(120.0)  # once
    assert ep.jumped(130.0, 2.1) is True and ep.worst == 2.1


def test_keyframe_rate_is_learnt_from_the_longest_recent_interval():
    rate = KeyframeRate()
    rate.add(0.0)
    assert rate.rate == 0.0  # one keyframe is not a rate
    rate.add(1.0)
    assert rate.rate == pytest.approx(1.0)
    rate.add(2.0)
    assert rate.rate == pytest.approx(1.0)
    rate.add(4.0)  # a 2 s GOP among 1 s ones: promise the slower
    assert rate.rate == pytest.approx(0.5)
    rate.add(1.0)  # time went back: learn again
    assert rate.rate == 0.0


@pytest.mark.parametrize("mode,fps,kf,want", [
    ("keyframes", 0, 0, True), ("all", 1, 1, False),
    ("auto", 1, 1.0, True), ("auto", 2, 1.0, False), ("auto", 2, 0.5, False),
    ("auto", 0.5, 0.5, True), ("auto", 0, 1.0, False), ("auto", 1, 0.0, False),
])
def test_decode_policy(mode, fps, kf, want):
    assert keyframes_only(mode, fps, kf) is want
