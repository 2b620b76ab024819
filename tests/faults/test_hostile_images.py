"""Hostile images and file names against the real daemon: a decompression bomb, truncated,
empty and unknown files, names that are not UTF-8 or hold control characters, in an image
folder and in a hot folder. The daemon stays up, RSS stays under 400 MB, every bad file is a
counted drop (and, in a hot folder, moved to failed/), and a restart does not crash-loop."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import pytest

from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.faults._hostile_common import (
    RSS_LIMIT_KB,
    RssWatch,
    metric,
    results,
    scrape,
    stop_edged,
)
from tests.helpers.broker import free_port
from tests.helpers.hostile import png_bomb
from tests.helpers.schemas import validate

NOT_UTF8 = b"\xff\xfe-part.jpg"  # shown as \xff\xfe-part.jpg
CONTROL = "ctl\x1b[31m\nred.png"  # shown as ctl\x1b[31m\x0ared.png


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    out = {}
    for i in range(4):
        ok, image = cap.read()
        assert ok
        out[f"jpg{i}"] = cv2.imencode(".jpg", image)[1].tobytes()
        out[f"png{i}"] = cv2.imencode(".png", image)[1].tobytes()
    cap.release()
    out["bomb"] = png_bomb()
    out["truncated"] = out["jpg0"][: len(out["jpg0"]) * 2 // 3]
    return out


def write(folder: Path, name: str | bytes, data: bytes) -> None:
    path = os.path.join(os.fsencode(folder), os.fsencode(name))
    with open(path, "wb") as f:
        f.write(data)


def names_in(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder))) if folder.exists() else set()


def test_image_folder_with_a_bomb_bad_files_and_odd_names(tmp_path, broker, subscriber,
                                                          images):
    folder = tmp_path / "imgs"
    folder.mkdir()
    write(folder, "a-good.jpg", images["jpg0"])
    write(folder, NOT_UTF8, images["jpg1"])
    write(folder, CONTROL, images["png2"])
    write(folder, "back\\slash.png", images["png3"])
    write(folder, "bomb.png", images["bomb"])
    write(folder, "cut.jpg", images["truncated"])
    write(folder, "empty.jpg", b"")
    write(folder, "gif.jpg", b"GIF89a" + b"\x00" * 100)
    mport = free_port()
    cfg = demo_config(broker.port)
    cfg["metrics"] = {"listen": f"127.0.0.1:{mport}"}
    cfg["cameras"] = {
        "good": {"source": str(DEMO / "conveyor.mp4"), "loop": True, "realtime": True,
                 "fps": 10},
        "imgs": {"source": str(folder)},
    }
    path = write_config(tmp_path / "c.yaml", cfg)
    want = sorted(["a-good.jpg", "\\xff\\xfe-part.jpg", "ctl\\x1b[31m\\x0ared.png",
                   "back\\\\slash.png"])
    for run in (1, 2):  # the second run is a restart over the same folder: no crash loop
        proc = start_edged("run", "-c", str(path))
        try:
            with RssWatch(proc.pid) as rss:
                want_n = 4 * run
                assert subscriber.wait_for(
                    lambda: len(results(subscriber, "imgs")) >= want_n, 30), run  # noqa: B023
                time.sleep(1.0)  # the bad files after the good ones
                text = scrape(mport)
                before = len(results(subscriber, "good"))
                time.sleep(1.0)
                assert len(results(subscriber, "good")) > before  # the other camera flows
                assert proc.poll() is None
        finally:
            err = stop_edged(proc)
        assert proc.returncode == 0, err  # not a SIGSEGV
        assert "Traceback" not in err
        files = sorted(m["file"] for m in results(subscriber, "imgs")[4 * (run - 1):])
        assert files == want
        assert metric(text, "edged_frames_dropped_total", camera="imgs", reason="decode") == 3
        assert metric(text, "edged_frames_dropped_total", camera="imgs",
                      reason="too_large") == 1
        assert "camera imgs: end of source after 8 frames" in err
        # One line per episode of failures (the first, then at most every 60 s).
        assert "bomb.png: 30000x30000 is over max_pixels (50000000); not decoded" in err
        assert rss.peak < RSS_LIMIT_KB, rss.peak


def test_hot_folder_moves_bad_files_to_failed_and_survives_restarts(tmp_path, broker,
                                                                    subscriber, images):
    hot = tmp_path / "hot"
    hot.mkdir()
    write(hot, b"\xfe-left-from-before.jpg", images["truncated"])  # there at start
    write(hot, "ctl\x07bell.png", images["png0"])
    mport = free_port()
    cfg = demo_config(broker.port)
    cfg["metrics"] = {"listen": f"127.0.0.1:{mport}"}
    cfg["cameras"] = {
        "good": {"source": str(DEMO / "conveyor.mp4"), "loop": True, "realtime": True,
                 "fps": 10},
        "qc": {"source": str(hot), "watch": True, "done_dir": "done", "settle_s": 0.3},
    }
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = start_edged("run", "-c", str(path))
    try:
        with RssWatch(proc.pid) as rss:
            assert subscriber.wait_for(lambda: len(results(subscriber, "qc")) >= 1, 30)
            before = len(results(subscriber, "good"))
            write(hot, "empty.jpg", b"")
            write(hot, "bomb.png", images["bomb"])
            write(hot, "cut.jpg", images["truncated"])
            write(hot, "junk.png", b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
            write(hot, NOT_UTF8, images["jpg1"])
            write(hot, "back\\slash.png", images["png2"])
            assert subscriber.wait_for(lambda: len(results(subscriber, "qc")) >= 3, 20)
            deadline = time.monotonic() + 10
            while len(names_in(hot / "failed")) < 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)
            text = scrape(mport)
            assert proc.poll() is None
            flowing = len(results(subscriber, "good")) - before
    finally:
        err = stop_edged(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert flowing >= 3  # the other camera kept publishing (10/s)
    files = sorted(m["file"] for m in results(subscriber, "qc"))
    assert files == sorted(["ctl\\x07bell.png", "\\xff\\xfe-part.jpg", "back\\\\slash.png"])
    # On disk the names are exactly the bytes they were written with.
    for result in results(subscriber, "qc"):
        validate("result", result)  # the published contract, escaped names included
    assert names_in(hot / "done") == {b"ctl\x07bell.png", NOT_UTF8, b"back\\slash.png"}
    assert names_in(hot / "failed") == {b"\xfe-left-from-before.jpg", b"empty.jpg",
                                        b"bomb.png", b"cut.jpg", b"junk.png"}
    assert metric(text, "edged_frames_dropped_total", camera="qc", reason="decode") == 4
    assert metric(text, "edged_frames_dropped_total", camera="qc", reason="too_large") == 1
    for shown in ("\\xfe-left-from-before.jpg: truncated JPEG", "empty.jpg: empty file",
                  "bomb.png: 30000x30000 is over max_pixels", "junk.png: not a JPEG"):
        assert shown in err and f"moved to {hot / 'failed'}" in err, shown
    assert rss.peak < RSS_LIMIT_KB, rss.peak

    # A restart with more bad files and odd names waiting: no crash loop, each handled once.
    write(hot, b"\xc3\x28-invalid-utf8.jpg", images["jpg2"])
    write(hot, "also-empty.png", b"")
    proc = start_edged("run", "-c", str(path))
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber, "qc")) >= 4, 30)
        deadline = time.monotonic() + 10
        while b"also-empty.png" not in names_in(hot / "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        err = stop_edged(proc)
    assert proc.returncode == 0, err
    assert results(subscriber, "qc")[-1]["file"] == "\\xc3(-invalid-utf8.jpg"
    assert b"also-empty.png" in names_in(hot / "failed")
    assert b"\xc3\x28-invalid-utf8.jpg" in names_in(hot / "done")
