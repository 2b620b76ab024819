"""Live video through PyAV against a real RTSP server (gst-rtsp-server) serving a pre-encoded
H.264 file with a keyframe every 25 frames at 25 fps (1 s): keyframe-only decoding, the
`auto` policy learning the keyframe rate, per-camera FFmpeg options, pts on every result,
falling behind (a deliberately slow model) and jumping back to live, and stopping many
cameras against one deadline."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import DEMO, demo_config, write_config
from tests.helpers.h264 import make_h264
from tests.helpers.schemas import validate
from tests.helpers.streams import RtspServer
from tests.helpers.subscriber import Subscriber


@pytest.fixture(scope="module")
def gop25(tmp_path_factory) -> Path:
    """40 s of the demo scene, 320x240, 25 fps, a keyframe every 25 frames, sensor noise."""
    return make_h264(tmp_path_factory.mktemp("h264") / "gop25.mp4", DEMO / "conveyor.mp4", 40)


@pytest.fixture()
def rtsp(gop25):
    server = RtspServer(None, fps=25, video=gop25).start()
    yield server
    server.stop()


def results(sub: Subscriber, camera: str) -> list[dict]:
    return [m.json for m in sub.on(f"/{camera}/result")]


def run_daemon(cfg_path: Path, registry: CollectorRegistry):  # noqa: ANN201
    from edged.app.daemon import Daemon
    from edged.config import load_config

    daemon = Daemon(load_config(cfg_path), registry)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="test-daemon")
    runner.start()
    return daemon, stop, runner


def whole(x: float, tol: float = 0.01) -> bool:
    return abs(x - round(x)) < tol


def test_keyframe_only_decoding_and_auto_learning_on_a_real_rtsp_stream(
        tmp_path, broker, subscriber, rtsp):
    """`keyframes` classifies only keyframes: pts (and frame numbers) advance by whole GOPs,
    and the other 24 frames of each GOP are counted as sampled out without being decoded.
    `auto` at fps 1 learns the 1 s keyframe interval and does the same; `auto` at fps 5 needs
    frames between keyframes, so it decodes them all (pts 0.2 s apart). Every result carries
    pts and fits the schema."""
    cfg = demo_config(broker.port)
    cfg["cameras"] = {
        "kf": {"source": rtsp.url(), "decode": "keyframes", "timeout_s": 5},
        "auto1": {"source": rtsp.url(), "decode": "auto", "fps": 1, "timeout_s": 5},
        "auto5": {"source": rtsp.url(), "decode": "auto", "fps": 5, "timeout_s": 5},
    }
    registry = CollectorRegistry()
    daemon, stop, runner = run_daemon(write_config(tmp_path / "c.yaml", cfg), registry)
    try:
        assert subscriber.wait_for(lambda: all(len(results(subscriber, c)) >= n for c, n in
                                               (("kf", 8), ("auto1", 8), ("auto5", 30))), 40)
        modes = {c.name: c._source.stream.mode for c in daemon.cameras}
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    assert modes == {"kf": "keyframes", "auto1": "keyframes", "auto5": "all"}
    for camera in ("kf", "auto1", "auto5"):
        for msg in results(subscriber, camera):
            validate("result", msg)
            assert msg["pts"] >= 0
    kf = results(subscriber, "kf")
    pts_steps = [b["pts"] - a["pts"] for a, b in zip(kf, kf[1:])]
    assert all(whole(d) and round(d) >= 1 for d in pts_steps), pts_steps
    assert all((b["frame"] - a["frame"]) % 25 == 0 for a, b in zip(kf, kf[1:]))
    # auto1: after learning (3 keyframes), only keyframes: whole seconds from a keyframe.
    learnt = results(subscriber, "auto1")[3:]
    steps = [b["pts"] - a["pts"] for a, b in zip(learnt, learnt[1:])]
    assert all(whole(d) and round(d) >= 1 for d in steps), steps
    a5 = results(subscriber, "auto5")[5:]
    steps = [b["pts"] - a["pts"] for a, b in zip(a5, a5[1:])]
    assert np.median(steps) == pytest.approx(0.2, abs=0.021), steps
    get = registry.get_sample_value
    dropped = get("edged_frames_dropped_total", {"camera": "kf", "reason": "fps"})
    captured = get("edged_frames_captured_total", {"camera": "kf"})
    assert dropped / captured > 0.9  # 24 of every 25 frames never decoded


def test_per_camera_ffmpeg_options_two_cameras_that_differ(tmp_path, broker, subscriber, rtsp):
    """Two cameras on the same server at the same time, with different FFmpeg options: one
    over UDP works; the other is told to take audio only, so it finds no video (a `decode`
    failure) and retries. Options are per stream: neither leaks into the other."""
    cfg = demo_config(broker.port)
    cfg["cameras"] = {
        "udp": {"source": rtsp.url(), "fps": 5, "timeout_s": 5,
                "ffmpeg_options": {"rtsp_transport": "udp"}},
        "audio": {"source": rtsp.url(), "fps": 5, "timeout_s": 5,
                  "reconnect": {"initial_s": 0.2, "max_s": 0.5},
                  "ffmpeg_options": {"allowed_media_types": "audio"}},
        "tcp": {"source": rtsp.url(), "fps": 5, "timeout_s": 5},
    }
    registry = CollectorRegistry()
    daemon, stop, runner = run_daemon(write_config(tmp_path / "c.yaml", cfg), registry)
    get = registry.get_sample_value
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber, "udp")) >= 10
                                   and len(results(subscriber, "tcp")) >= 10, 30)
        deadline = time.monotonic() + 20
        while (get("edged_source_failures_total", {"camera": "audio", "kind": "decode"}) or 0) < 2:
            assert time.monotonic() < deadline, "the audio-only camera never failed"
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    assert not results(subscriber, "audio")
    for camera in ("udp", "tcp"):
        assert get("edged_source_failures_total", {"camera": camera, "kind": "decode"}) == 0


def test_a_camera_that_falls_behind_jumps_back_to_live_and_says_so(
        tmp_path, broker, subscriber, rtsp, monkeypatch, caplog):
    """A deliberately slow model (0.25 s per invoke) and `policy: every` (the capture waits
    for the worker) make the camera fall behind its 25 fps stream. Each time it is more than
    max_lag_s behind it drops what is queued and jumps back to live: counted as reason=lag,
    logged once for the episode, shown as degraded in /readyz, and the results' lag (wall time
    minus stream time, both since the first result) stays bounded instead of growing."""
    from edged.inference.backends.cpu import CpuBackend

    real_invoke = CpuBackend.invoke

    def slow_invoke(self) -> None:  # noqa: ANN001
        real_invoke(self)
        time.sleep(0.25)

    monkeypatch.setattr(CpuBackend, "invoke", slow_invoke)
    cfg = demo_config(broker.port)
    cfg["models"]["default"]["workers"] = 1
    cfg["cameras"] = {"slow": {"source": rtsp.url(), "policy": "every", "decode": "all",
                               "max_lag_s": 1.0, "timeout_s": 5}}
    registry = CollectorRegistry()
    with caplog.at_level(logging.INFO):
        daemon, stop, runner = run_daemon(write_config(tmp_path / "c.yaml", cfg), registry)
        get = registry.get_sample_value
        try:
            assert subscriber.wait_for(lambda: len(results(subscriber, "slow")) >= 5, 30)
            deadline = time.monotonic() + 30
            while (daemon.cameras[0]._source.stream.episodes < 3
                   or results(subscriber, "slow")[-1]["pts"] < 8):
                assert time.monotonic() < deadline, "the camera never jumped back 3 times"
                time.sleep(0.2)
            readiness = daemon.readiness()
            lag_gauge = get("edged_camera_lag_seconds", {"camera": "slow"})
        finally:
            stop.set()
            runner.join(20)
    assert not runner.is_alive()
    assert any("camera slow: lagging" in d for d in readiness["degraded"]), readiness
    assert get("edged_frames_dropped_total", {"camera": "slow", "reason": "lag"}) >= 3
    assert lag_gauge is not None and lag_gauge < 5
    lines = [r.getMessage() for r in caplog.records if "behind the stream" in r.getMessage()]
    assert len(lines) == 1, lines  # one line for the episode, not one per jump
    msgs = results(subscriber, "slow")
    first = msgs[0]
    lags = [(m["ts"] - first["ts"]) - (m["pts"] - first["pts"]) for m in msgs]
    assert max(lags) < 1.0 + 1.5, lags  # bounded by max_lag_s (+ a queue and a frame)
    assert msgs[-1]["pts"] - first["pts"] > 5  # time went on, not stuck behind


def test_many_cameras_stop_within_one_shared_deadline():
    """Capture threads stuck in a read that ignores the stop (as a hung camera's read does)
    are waited for against one deadline for all of them, not 2 s each in turn, and a second
    stop neither waits again nor closes a source under its running read."""
    from edged.capture.camera import Camera
    from edged.capture.sources.base import Source
    from edged.config import CameraConfig
    from edged.inference.scheduler import Scheduler
    from edged.service.metrics import Metrics

    release = threading.Event()

    class Stuck(Source):
        key = "test-stuck"
        live = True

        @classmethod
        def accepts(cls, source):  # noqa: ANN001, ANN206
            return False

        def open(self) -> None:
            pass

        def read(self):  # noqa: ANN201
            release.wait(30)  # a read bounded only by its own timeout
            return np.zeros((8, 8, 3), np.uint8), None

        def close(self) -> None:
            pass

    metrics = Metrics(CollectorRegistry())
    cameras = []
    try:
        for i in range(16):
            cfg = CameraConfig(source=f"rtsp://127.0.0.1:9/{i}")
            camera = Camera(f"c{i}", cfg, Scheduler(), metrics)
            camera._source = Stuck(cfg)
            camera.start()
            cameras.append(camera)
        time.sleep(0.2)
        t0 = time.monotonic()
        for camera in cameras:  # as the daemon's lifecycle stops a tier: signal all, then wait
            camera.request_stop(1.0)
        for camera in cameras:
            camera.stop(1.0)
        elapsed = time.monotonic() - t0
        assert elapsed < 4.0, elapsed  # one deadline; in turn it would be 16 x 1 s
        for camera in cameras:  # again: no second wait, no close under a running read
            camera.stop(1.0)
        assert time.monotonic() - t0 < 5.0
    finally:
        release.set()


def test_realtime_file_is_paced_by_its_timestamps_with_pts_continuing_across_loops(
        tmp_path, broker, subscriber):
    """A 2 s file with `realtime: true, loop: true` is read through PyAV like a camera:
    results carry pts that keep increasing across the loop (no jump back), at the file's
    own pace (stream time advances with wall time), keyframes only at fps 1."""
    video = make_h264(tmp_path / "short.mp4", DEMO / "conveyor.mp4", 2)
    cfg = demo_config(broker.port)
    cfg["cameras"] = {"file": {"source": str(video), "realtime": True, "loop": True, "fps": 1}}
    registry = CollectorRegistry()
    daemon, stop, runner = run_daemon(write_config(tmp_path / "c.yaml", cfg), registry)
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber, "file")) >= 6, 30)
        mode = daemon.cameras[0]._source.stream.mode
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    msgs = results(subscriber, "file")
    pts = [m["pts"] for m in msgs]
    assert all(b > a for a, b in zip(pts, pts[1:])), pts
    assert pts[-1] > 4  # two loops of a 2 s file
    assert mode == "keyframes"
    steps = [b - a for a, b in zip(pts[3:], pts[4:])]
    assert all(abs(d - 1.0) < 0.05 for d in steps), pts
    wall = msgs[-1]["ts"] - msgs[0]["ts"]
    assert abs(wall - (pts[-1] - pts[0])) < 1.0, (wall, pts)  # paced, not as fast as decoded


def test_video_over_http_is_read_through_pyav_and_other_content_is_a_decode_failure(tmp_path):
    """An http:// camera that answers with a video (MPEG-TS, H.264) is demuxed and decoded by
    PyAV: pictures with pts from the stream; one that answers with HTML is a `decode`
    failure with one line naming the content type (credentials redacted)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from edged.capture.sources.failures import SourceFailure
    from edged.capture.sources.mjpeg import HttpSource
    from edged.config import CameraConfig

    video = make_h264(tmp_path / "cam.ts", DEMO / "conveyor.mp4", 3).read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            body, ctype = (video, "video/mp2t") if self.path == "/live.ts" else (
                b"<html>camera</html>", "text/html")
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http-video", daemon=True)
    thread.start()
    base = f"http://op:secret@127.0.0.1:{server.server_address[1]}"
    try:
        src = HttpSource(CameraConfig(source=f"{base}/live.ts", decode="all", timeout_s=5))
        src.open()
        try:
            assert src.timed and src.fps == pytest.approx(25, abs=0.5)
            pts = [src.read_picture().pts for _ in range(30)]
            image, _ = src.read()
            assert image.shape == (240, 320, 3)
        finally:
            src.close()
        assert pts == sorted(pts) and pts[-1] - pts[0] == pytest.approx(29 / 25, abs=0.01)
        html = HttpSource(CameraConfig(source=f"{base}/page", timeout_s=5))
        with pytest.raises(SourceFailure) as info:
            html.open()
        assert info.value.kind == "decode" and "text/html" in str(info.value)
        assert "secret" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
