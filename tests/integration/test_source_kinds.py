"""Source kinds one by one: choice by URL or `type`, failure kinds against real servers,
credentials, hot-folder settling, frame views, stale frames, V4L2 and GStreamer paths."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edged.config import CameraConfig, load_config
from edged.errors import SourceError
from edged.capture.roi import crop, view
from edged.service.metrics import Metrics
from edged.capture.sources import make_source
from edged.capture.sources.base import IDLE
from edged.frame import Frame
from edged.capture.sources.failures import SourceFailure, kind_of, status_kind
from edged.capture.sources.gstreamer import GStreamerSource, opencv_has_gstreamer
from edged.capture.sources.hotfolder import HotFolderSource
from edged.capture.sources.mjpeg import HttpSource
from edged.capture.sources.rtsp import RtspSource, probe_rtsp
from edged.capture.sources.url import credentials, redact, without_credentials
from edged.capture.sources.v4l2 import V4l2Source, apply_settings
from tests.conftest import DEMO, demo_config, write_config
from tests.helpers.broker import free_port
from tests.helpers.streams import MjpegServer, RtspServer, write_frames


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    return write_frames(DEMO / "conveyor.mp4", tmp_path_factory.mktemp("frames"), 20)


def cam(source: str | int, **kw: object) -> CameraConfig:
    return CameraConfig(source=source, **kw)


# --- choosing the kind -----------------------------------------------------------------------

@pytest.mark.parametrize("source,kw,key", [
    ("rtsp://u:p@cam/x", {}, "rtsp"), ("RTSPS://cam/x", {}, "rtsp"),
    ("http://cam/video.mjpg", {}, "http"), ("https://cam/x", {}, "http"),
    ("/dev/video0", {}, "v4l2"), (2, {}, "v4l2"),
    ("videotestsrc ! videoconvert ! appsink", {}, "gstreamer"),
    ("{tmp}", {}, "images"), ("{tmp}", {"watch": True}, "hotfolder"),
    ("{tmp}/*.jpg", {}, "images"), ("{tmp}/a.mp4", {}, "video"),
    ("{tmp}/a.mp4", {"type": "rtsp"}, "rtsp"),
])
def test_kind_from_source_or_type(tmp_path, source, kw, key):
    if isinstance(source, str):
        source = source.replace("{tmp}", str(tmp_path))
    assert make_source(cam(source, **kw)).key == key


def test_watch_on_a_non_folder_is_a_clear_error(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"not a folder")
    with pytest.raises(SourceError, match="watch: true needs an image folder"):
        make_source(cam(str(tmp_path / "a.mp4"), watch=True))


# --- credentials ----------------------------------------------------------------------------

def test_redact_and_split_credentials():
    url = "rtsp://admin:p%40ss:w@192.168.1.9:554/Streaming/101?x=1"
    assert redact(url) == "rtsp://***@192.168.1.9:554/Streaming/101?x=1"
    assert without_credentials(url) == "rtsp://192.168.1.9:554/Streaming/101?x=1"
    assert credentials(url) == ("admin", "p@ss:w")
    assert credentials("rtsp://cam/x") == (None, None)
    assert redact("http://cam/x") == "http://cam/x"
    for source in (RtspSource(cam(url)), HttpSource(cam(url.replace("rtsp", "http")))):
        assert "p%40ss" not in source.describe() and "admin" not in source.describe()


# --- failure kinds --------------------------------------------------------------------------

def test_failure_kinds_from_errors_and_status_codes():
    assert kind_of(ConnectionRefusedError()) == "unreachable"
    assert kind_of(socket.gaierror()) == "unreachable"
    assert kind_of(socket.timeout()) == "timeout"
    assert kind_of(ConnectionResetError()) == "ended"
    assert kind_of(PermissionError()) == "auth"
    assert kind_of(SourceFailure("x", "decode")) == "decode"
    assert kind_of(SourceFailure("x", "nonsense")) == "error"
    assert kind_of(ValueError()) == "error"
    assert [status_kind(c) for c in (200, 401, 403, 404, 454, 408, 500)] == [
        None, "auth", "auth", "not_found", "not_found", "timeout", "error"]


def test_rtsp_failures_are_classified_against_a_real_server(frames):
    server = RtspServer(frames, fps=15, user="op", password="right").start()
    try:
        assert probe_rtsp(server.url(user="op", password="right"), 3) == (None, "RTSP 200")
        assert probe_rtsp(server.url(user="op", password="wrong"), 3)[0] == "auth"
        assert probe_rtsp(server.url(), 3) == ("auth", "needs credentials (RTSP 401)")
        assert probe_rtsp(server.url("/nope", user="op", password="right"), 3)[0] == "not_found"
        src = RtspSource(cam(server.url(user="op", password="wrong"), timeout_s=3))
        with pytest.raises(SourceFailure) as info:
            src.open()
        assert info.value.kind == "auth"
        assert "wrong" not in str(info.value) and "***@" in str(info.value)
        # Per-camera transport: UDP works too, and does not leak into the next open.
        for transport in ("udp", "tcp"):
            ok = RtspSource(cam(server.url(user="op", password="right"), transport=transport,
                                timeout_s=3))
            ok.open()
            try:
                image, _ = ok.read()
                assert image.shape == (240, 320, 3)
            finally:
                ok.close()
                ok.close()  # idempotent
        assert "OPENCV_FFMPEG_CAPTURE_OPTIONS" not in os.environ
    finally:
        server.stop()
    down = RtspSource(cam(server.url(), timeout_s=2))
    with pytest.raises(SourceFailure) as info:
        down.open()
    assert info.value.kind == "unreachable"


def test_http_failures_are_classified_against_a_real_server(frames):
    server = MjpegServer(frames, fps=30, user="op", password="right").start()
    base = f"http://op:right@127.0.0.1:{server.port}"
    try:
        cases = {f"{base}/missing": "not_found",
                 f"http://op:wrong@127.0.0.1:{server.port}/stream.mjpg": "auth",
                 f"http://127.0.0.1:{server.port}/stream.mjpg": "auth",
                 f"http://127.0.0.1:{free_port()}/stream.mjpg": "unreachable"}
        for url, kind in cases.items():
            src = HttpSource(cam(url, timeout_s=2))
            with pytest.raises(SourceFailure) as info:
                src.open()
            assert info.value.kind == kind, url
            assert "right" not in str(info.value) and "wrong" not in str(info.value)
        snap = HttpSource(cam(f"{base}/snapshot.jpg", timeout_s=2))
        snap.open()
        assert snap.read()[0].shape == (240, 320, 3)
        assert snap.read()[0].shape == (240, 320, 3)  # fetched again
        snap.close()
    finally:
        server.stop()


def test_mjpeg_without_content_length_and_a_stalled_server(frames):
    server = MjpegServer(frames, fps=30, content_length=False).start()
    try:
        src = HttpSource(cam(f"http://127.0.0.1:{server.port}/stream.mjpg", timeout_s=2))
        src.open()
        shots = [src.read()[0] for _ in range(5)]
        src.close()
        assert all(s.shape == (240, 320, 3) for s in shots)
        expected = cv2.imread(str(frames / "00001.jpg"))
        assert np.array_equal(shots[1], expected)  # whole frames, in order
    finally:
        server.stop()
    slow = MjpegServer(frames, fps=0.2).start()  # one frame, then 5 s of silence
    try:
        src = HttpSource(cam(f"http://127.0.0.1:{slow.port}/stream.mjpg", timeout_s=0.5))
        src.open()
        src.read()
        t0 = time.monotonic()
        with pytest.raises(SourceFailure) as info:
            src.read()
        assert info.value.kind == "timeout"
        assert time.monotonic() - t0 < 2.0
        src.close()
    finally:
        slow.stop()


# --- V4L2 and GStreamer: what runs here without the hardware ------------------------------

def test_v4l2_missing_device_is_not_found():
    src = V4l2Source(cam("/dev/video99"))
    with pytest.raises(SourceFailure) as info:
        src.open()
    assert info.value.kind == "not_found" and "/dev/video99" in str(info.value)
    assert V4l2Source(cam(7)).describe() == "/dev/video7"


class RecordingCapture:
    """Stands in for a USB camera's VideoCapture (none can run here): records set() calls."""

    def __init__(self, refuse: set[int]) -> None:
        self.calls: list[tuple[int, float]] = []
        self.refuse = refuse

    def set(self, prop: int, value: float) -> bool:
        self.calls.append((prop, value))
        return prop not in self.refuse


def test_v4l2_settings_ask_pixel_format_first_and_report_refusals():
    cfg = cam("/dev/video0", v4l2={"pixel_format": "MJPG", "width": 1280, "height": 720,
                                   "fps": 30})
    cap = RecordingCapture(refuse={cv2.CAP_PROP_FPS})
    refused = apply_settings(cap, cfg.v4l2, timeout_s=4)
    assert cap.calls[:4] == [(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG")),
                             (cv2.CAP_PROP_FRAME_WIDTH, 1280), (cv2.CAP_PROP_FRAME_HEIGHT, 720),
                             (cv2.CAP_PROP_FPS, 30)]
    assert (cv2.CAP_PROP_READ_TIMEOUT_MSEC, 4000) in cap.calls
    assert refused == ["fps"]


def test_gstreamer_support_is_read_from_the_build_information():
    assert opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.22.0)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    src = GStreamerSource(cam("videotestsrc ! appsink"))
    if opencv_has_gstreamer():
        src.check()
    else:
        with pytest.raises(SourceError, match="built without GStreamer"):
            src.check()


# --- hot folder -------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read_all(src: HotFolderSource) -> list[str]:
    names = []
    while (item := src.read()) is not IDLE:
        names.append(item[1])
    return names


def test_hot_folder_reads_a_file_only_once_it_has_settled(tmp_path):
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 99, np.uint8))[1].tobytes()
    clock = Clock()
    src = HotFolderSource(cam(str(tmp_path), watch=True, done_dir="done", settle_s=0.5), clock)
    src.open()
    (tmp_path / "b.jpg").write_bytes(jpeg)
    (tmp_path / "a.jpg").write_bytes(jpeg[:10])  # being written
    (tmp_path / ".c.jpg").write_bytes(jpeg)  # rename-in temp name: ignored
    (tmp_path / "d.jpg.part").write_bytes(jpeg)  # ignored
    assert read_all(src) == []  # first sighting
    clock.now += 0.6
    (tmp_path / "a.jpg").write_bytes(jpeg)  # finished: its size changed, so it settles again
    assert read_all(src) == ["b.jpg"]
    clock.now += 0.6
    assert read_all(src) == ["a.jpg"]
    os.rename(tmp_path / ".c.jpg", tmp_path / "c.jpg")
    assert read_all(src) == []
    clock.now += 0.6
    assert read_all(src) == ["c.jpg"]
    clock.now += 5
    assert read_all(src) == []  # each once
    src.done("a.jpg")
    assert (tmp_path / "done" / "a.jpg").exists() and not (tmp_path / "a.jpg").exists()
    (tmp_path / "a.jpg").write_bytes(jpeg)  # the same name again is a new part
    assert read_all(src) == []
    clock.now += 0.6
    assert read_all(src) == ["a.jpg"]
    (tmp_path / "e.jpg").write_bytes(b"not an image")
    read_all(src)
    clock.now += 0.6
    with pytest.raises(SourceFailure) as info:
        read_all(src)
    assert info.value.kind == "decode"
    assert read_all(src) == []  # not retried
    src.close()


def test_hot_folder_without_done_dir_remembers_and_rereads_a_rewritten_file(tmp_path):
    clock = Clock()
    src = HotFolderSource(cam(str(tmp_path), watch=True, settle_s=0), clock)
    src.open()
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((4, 4, 3), np.uint8))
    read_all(src)
    clock.now += 0.1
    assert read_all(src) == ["x.png"]
    src.done("x.png")  # no done_dir: stays
    clock.now += 1
    assert read_all(src) == [] and (tmp_path / "x.png").exists()
    cv2.imwrite(str(tmp_path / "x.png"), np.zeros((6, 6, 3), np.uint8))
    read_all(src)
    clock.now += 0.1
    assert read_all(src) == ["x.png"]


def test_hot_folder_reads_ahead_in_order_and_a_reopen_rereads_what_was_not_handed_on(
        tmp_path):
    """The next files are decoded while one is classified; files read ahead but not handed
    on when the source closes (a reconnect) are read again, never lost."""
    clock = Clock()
    src = HotFolderSource(cam(str(tmp_path), watch=True, settle_s=0), clock)
    src.owned_by("qc")
    src.open()
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((4, 4, 3), i, np.uint8))
    assert src.read() is IDLE  # first sighting
    clock.now += 0.1
    image, name = src.read()
    assert name == "0.png" and int(image[0, 0, 0]) == 0
    assert len(src._ahead) <= 2  # at most two files ahead, on threads named for the camera
    assert src._ahead.name == "read-ahead-qc"
    src.close()  # 1.png (and perhaps 2.png) were read ahead, not handed on
    src.open()
    assert read_all(src) == []  # sighted again after the reopen
    clock.now += 0.1
    assert read_all(src) == ["1.png", "2.png", "3.png"]
    src.close()


def test_hot_folder_that_does_not_exist(tmp_path):
    src = HotFolderSource(cam(str(tmp_path / "gone"), watch=True))
    with pytest.raises(SourceFailure, match="no such folder to watch"):
        src.open()


# --- frame view --------------------------------------------------------------------------------

def test_rotate_flip_then_roi():
    img = np.arange(6 * 4, dtype=np.uint8).reshape(4, 6)  # 4 rows, 6 columns
    assert np.array_equal(view(img, rotate=90), np.rot90(img, -1))
    assert np.array_equal(view(img, rotate=180), np.rot90(img, 2))
    assert np.array_equal(view(img, rotate=270), np.rot90(img, 1))
    assert np.array_equal(view(img, flip="horizontal"), img[:, ::-1])
    assert np.array_equal(view(img, flip="vertical"), img[::-1])
    assert np.array_equal(view(img, flip="both"), img[::-1, ::-1])
    # The ROI is in the rotated picture's coordinates.
    assert np.array_equal(view(img, rotate=90, roi=[1, 2, 2, 3]), np.rot90(img, -1)[2:5, 1:3])
    assert crop(img, [4, 2, 10, 10]).shape == (2, 2)  # clipped to the frame
    with pytest.raises(ValueError, match="outside the 6x4 frame"):
        crop(img, [6, 0, 2, 2])


def test_roi_outside_the_frame_drops_every_frame_as_bad(tmp_path, broker):
    from edged.app.daemon import Daemon

    data = demo_config(broker.port, roi=[1000, 1000, 10, 10])
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", data)), CollectorRegistry())
    import threading

    daemon.run(threading.Event())
    get = daemon.metrics.registry.get_sample_value
    assert get("edged_frames_dropped_total", {"camera": "conveyor", "reason": "bad_frame"}) == 600
    assert not get("edged_frames_processed_total", {"camera": "conveyor"})


# --- stale frames -----------------------------------------------------------------------------

def test_frames_older_than_max_age_are_dropped_before_inference(tmp_path):
    from edged.config import ModelConfig
    from edged.model.loaded import load_model
    from edged.inference.scheduler import Scheduler
    from edged.inference.worker import WorkerPool

    model = load_model("default", ModelConfig(path=str(DEMO / "model.tflite"),
                                              labels=str(DEMO / "labels.txt")))
    metrics = Metrics(CollectorRegistry())
    scheduler = Scheduler(capacity=4)
    scheduler.add_camera("cam", "every", max_age_s=0.2)
    outcomes = []
    pool = WorkerPool(model, 1, scheduler, outcomes.append, metrics)
    image = cv2.VideoCapture(str(DEMO / "conveyor.mp4")).read()[1]
    now = time.monotonic()
    for i, age in enumerate((1.0, 0.0, 5.0)):
        scheduler.put("cam", Frame(image, i, time.time(), now - age), lambda: False)
    pool.start()
    pool.stop()
    assert [o.top is not None for o in outcomes] == [False, True, False]
    get = metrics.registry.get_sample_value
    assert get("edged_frames_dropped_total", {"camera": "cam", "reason": "stale"}) == 2
    assert get("edged_frames_processed_total", {"camera": "cam"}) == 1


# --- config -----------------------------------------------------------------------------------

@pytest.mark.parametrize("camera,message", [
    ({"roi": [0, 0, 0, 5]}, "cameras.c.roi: expected [x, y, w, h]"),
    ({"roi": [1, 2, 3]}, "cameras.c.roi: expected [x, y, w, h]"),
    ({"rotate": 45}, "cameras.c.rotate: "),
    ({"flip": "sideways"}, "cameras.c.flip: "),
    ({"transport": "http"}, "cameras.c.transport: "),
    ({"type": "onvif"}, "cameras.c.type: "),
    ({"source": "imgs/*.jpg", "done_dir": "done"}, "cameras.c: done_dir needs watch: true"),
    ({"source": "imgs/*.jpg", "failed_dir": "bad"}, "cameras.c: failed_dir needs watch: true"),
    ({"source": "imgs/*.jpg", "max_pixels": 0}, "cameras.c.max_pixels"),
    ({"source": "http://cam/x", "max_pixels": 0}, "cameras.c.max_pixels"),
    ({"source": "/dev/video0", "v4l2": {"pixel_format": "MJPEG"}},
     "cameras.c.v4l2.pixel_format: "),
    ({"max_age_ms": -1}, "cameras.c.max_age_ms: "),
    ({"watch": True, "type": "rtsp"}, "cameras.c: watch: true is for image folders"),
    ({"source": "file:///srv/a.mp4"}, "cameras.c: source: no source kind handles"),
])
def test_bad_live_source_config_is_one_line_with_its_key(tmp_path, camera, message):
    from edged.errors import ConfigError

    data = demo_config(1883)
    data["cameras"] = {"c": {"source": "rtsp://cam/x", **camera}}
    with pytest.raises(ConfigError) as info:
        load_config(write_config(tmp_path / "c.yaml", data))
    assert len(info.value.lines) == 1
    assert message in info.value.lines[0], info.value.lines


def test_another_kinds_setting_on_a_live_camera_is_ignored_with_a_note(tmp_path):
    """watch: true on a camera whose source is an RTSP URL is, like every setting of another
    kind, ignored with one line naming the key and the kinds it belongs to (with an explicit
    `type: rtsp` it is an error, as before)."""
    data = demo_config(1883)
    data["cameras"] = {"c": {"source": "rtsp://cam/x", "watch": True}}
    cfg = load_config(write_config(tmp_path / "c.yaml", data))
    (note,) = cfg.notes
    assert note.endswith("cameras.c.watch: ignored: a setting of images sources, and this "
                         "camera is rtsp, from its source")
    assert not hasattr(cfg.cameras["c"], "watch")


def test_pipeline_and_url_sources_are_not_made_paths(tmp_path):
    data = demo_config(1883)
    data["cameras"] = {"g": {"source": "videotestsrc ! appsink"},
                       "r": {"source": "cam.local/stream", "type": "rtsp"}}
    cfg = load_config(write_config(tmp_path / "c.yaml", data))
    assert cfg.cameras["g"].source == "videotestsrc ! appsink"
    assert cfg.cameras["r"].source == "cam.local/stream"


def test_live_camera_survives_unexpected_errors_and_redacts_them(caplog):
    """A live source whose open raises a foreign error (quoting the URL, as some libraries
    do) is retried like any failure; the password is not logged."""
    import logging
    import threading

    from edged.capture.camera import Camera
    from edged.inference.scheduler import Scheduler
    from edged.capture.sources.base import SOURCES, Source

    class Flaky(Source):
        key = "test-flaky"
        live = True
        opens = 0

        @classmethod
        def accepts(cls, source):  # noqa: ANN001, ANN206
            return False

        def open(self) -> None:
            Flaky.opens += 1
            if Flaky.opens <= 2:
                raise RuntimeError(f"library failed on {self.cfg.source}")

        def read(self):  # noqa: ANN201
            time.sleep(0.01)
            return np.zeros((8, 8, 3), np.uint8), None

        def close(self) -> None:
            pass

    try:
        cfg = cam("rtsp://op:hunter2@127.0.0.1:9/x", reconnect={"initial_s": 0.05, "max_s": 0.1})
        metrics = Metrics(CollectorRegistry())
        scheduler = Scheduler()
        camera = Camera("c", cfg, scheduler, metrics)
        camera._source = Flaky(cfg)
        with caplog.at_level(logging.INFO):
            camera.start()
            deadline = time.monotonic() + 5
            while scheduler.get(0.1) is None and time.monotonic() < deadline:
                pass
            camera.stop()
        assert Flaky.opens == 3
        get = metrics.registry.get_sample_value
        assert get("edged_source_failures_total", {"camera": "c", "kind": "error"}) == 2
        assert "RuntimeError" in caplog.text and "***@127.0.0.1" in caplog.text
        assert "hunter2" not in caplog.text
        assert all(t.name != "camera-c" for t in threading.enumerate())
    finally:
        SOURCES.pop("test-flaky", None)


def test_hot_folder_that_goes_away_is_retried_not_a_crash(tmp_path, caplog):
    caplog.set_level("INFO")
    folder = tmp_path / "hot"
    folder.mkdir()
    src = HotFolderSource(cam(str(folder), watch=True, settle_s=0), Clock())
    src.open()
    assert src.read() is IDLE
    folder.rmdir()
    assert src.read() is IDLE and src.read() is IDLE
    assert sum("cannot list" in r.getMessage() for r in caplog.records) == 1
    folder.mkdir()
    assert src.read() is IDLE
    assert any("readable again" in r.getMessage() for r in caplog.records)
