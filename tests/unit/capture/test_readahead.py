"""Read-ahead of still images: order kept, at most `depth` in flight, errors at take()."""

from __future__ import annotations

import threading
import time

import pytest

from edged.capture.readahead import ReadAhead


def test_order_is_kept_and_loads_run_in_parallel():
    started: list[int] = []
    both = threading.Barrier(2, timeout=5)

    def load(key: int) -> int:
        started.append(key)
        if key < 2:
            both.wait()  # the first two only return once both run at once
        time.sleep(0.01 * max(0, 3 - key))  # later keys finish first
        return key * 10

    ahead: ReadAhead[int, int] = ReadAhead(load, depth=2, name="test-ahead")
    got = []
    keys = iter(range(5))
    for key in keys:
        ahead.submit(key)
        if ahead.room == 0:
            break
    for key in keys:
        k, future = ahead.take()
        got.append((k, future.result(timeout=5)))
        ahead.submit(key)
    while len(ahead):
        k, future = ahead.take()
        got.append((k, future.result(timeout=5)))
    assert got == [(i, i * 10) for i in range(5)]
    ahead.close()


def test_at_most_depth_are_ahead():
    ahead: ReadAhead[int, int] = ReadAhead(lambda k: k, depth=2)
    ahead.submit(1)
    ahead.submit(2)
    assert ahead.room == 0 and len(ahead) == 2
    ahead.take()
    assert ahead.room == 1
    ahead.close()


def test_a_load_that_raises_raises_at_take():
    def load(key: str) -> str:
        raise ValueError(f"bad {key}")

    ahead: ReadAhead[str, str] = ReadAhead(load, depth=2)
    ahead.submit("a.jpg")
    key, future = ahead.take()
    with pytest.raises(ValueError, match="bad a.jpg"):
        future.result(timeout=5)
    assert key == "a.jpg"
    ahead.close()


def test_close_returns_what_was_not_taken_and_its_threads_end():
    gate = threading.Event()

    def load(key: int) -> int:
        gate.wait(5)
        return key

    ahead: ReadAhead[int, int] = ReadAhead(load, depth=2, name="test-close")
    for k in (1, 2):
        ahead.submit(k)
    assert sorted(ahead.close()) == [1, 2] and len(ahead) == 0
    gate.set()
    deadline = time.monotonic() + 5
    while any(t.name.startswith("test-close") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "read-ahead threads did not end"
        time.sleep(0.01)


def test_images_read_ahead_for_an_old_model_input_are_decoded_again(tmp_path):
    """A reload that changes the model (or adds regions) re-aims the decode scale: images
    already read ahead at the old scale are decoded again at the new one."""
    import cv2
    import numpy as np

    from edged.capture.sources.images import ImageFolderSource
    from edged.config import CameraConfig

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.full((960, 1280, 3), 100 + i, np.uint8))
    src = ImageFolderSource(CameraConfig(source=str(tmp_path / "*.jpg")))
    src.owned_by("qc")
    src.decode_target.hw = (40, 40)  # a small model: 1/8 scale
    src.open()
    first, _ = src.read()
    assert first.shape[:2] == (120, 160)  # and two more are read ahead at 1/8
    src.decode_target.hw = None  # regions: full decodes from now on
    second, name = src.read()
    assert name == "1.jpg" and second.shape[:2] == (960, 1280)
    third, _ = src.read()
    assert third.shape[:2] == (960, 1280)
    assert src.read() is None
    src.close()
