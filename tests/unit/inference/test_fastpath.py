"""The CPU fast-path check: its verdicts and causes, on real files and a real interpreter."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.inference.backends.fastpath import (cpuinfo_readable, has_delegate, judge,
                                               slow_limit_ms, time_invokes)
from tests.conftest import DEMO


def test_cpuinfo_readable(tmp_path):
    good = tmp_path / "cpuinfo"
    good.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\n")
    empty = tmp_path / "empty"
    empty.write_text("")
    assert cpuinfo_readable(good)
    assert not cpuinfo_readable(empty)
    assert not cpuinfo_readable(tmp_path / "missing")  # ProcSubset=pid: no such file
    assert cpuinfo_readable(Path("/proc/cpuinfo"))  # this machine shows it


def test_the_verdict_names_the_likely_cause():
    size = 68_880  # the demo model
    ok = judge("m", "ai-edge-litert 2.3.0", True, True, 0.3, size)
    assert ok.ok and ok.cause is None
    hidden = judge("m", "ai-edge-litert 2.3.0", False, False, 54.0, size)
    assert not hidden.ok and "/proc/cpuinfo is not readable" in hidden.cause
    assert "ProcSubset=pid" in hidden.cause and "54.0 ms" in hidden.cause
    old = judge("m", "tflite-runtime 2.14.0", False, True, 4.0, size)
    assert not old.ok and "float models only" in old.cause and "ai-edge-litert" in old.cause
    other = judge("m", "ai-edge-litert 2.3.0", False, True, 4.0, size)
    assert not other.ok and "created no XNNPACK delegate" in other.cause
    # A runtime that cannot show its plan: the invoke time decides.
    assert judge("m", "x 1", None, True, 0.5, size).ok
    slow = judge("m", "x 1", None, True, slow_limit_ms(size) + 1, size)
    assert not slow.ok and "expected" in slow.cause
    # The delegate, when visible, wins over a slow moment of a shared machine.
    assert judge("m", "ai-edge-litert 2.3.0", True, True, 500.0, size).ok


def test_time_invokes_warms_up_then_takes_the_median_within_a_deadline():
    now = [0.0]
    durations = iter([1.0, 0.002, 0.004, 0.003, 0.010, 0.001])

    def invoke() -> None:
        now[0] += next(durations)

    assert time_invokes(invoke, count=5, deadline_s=60, clock=lambda: now[0]) == pytest.approx(3.0)
    slow = iter([0.5] * 100)
    now[0] = 0.0

    def slow_invoke() -> None:
        now[0] += next(slow)

    assert time_invokes(slow_invoke, count=50, deadline_s=1.2, clock=lambda: now[0]) == pytest.approx(500.0)
    assert now[0] <= 2.0  # stopped at the deadline, not after 50 invokes


def test_has_delegate_sees_xnnpack_in_a_real_interpreter():
    from edged.model.runtime import find_runtime

    interp = find_runtime().interpreter(model_path=str(DEMO / "model.tflite"), num_threads=1)
    interp.allocate_tensors()
    assert has_delegate(interp) is True  # LiteRT on this machine: XNNPACK took the convs

    class NoPlan:
        pass

    assert has_delegate(NoPlan()) is None
