"""Hostile HTTP cameras (the tests' own loopback server, real sockets): every live read has a
deadline for the whole frame, bodies are capped, and the daemon keeps the other cameras'
results flowing while it times out, counts and reconnects with backoff."""

from __future__ import annotations

import itertools
import socket
import ssl
import threading
import time

import cv2
import pytest

from edged.capture.imagedecode import ImageRejected
from edged.capture.sources.failures import SourceFailure
from edged.capture.sources.mjpeg import HttpSource
from edged.config import CameraConfig
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
from tests.helpers.hostile import HostileCamera, png_bomb
from tests.helpers.tls import make_pki

TIMEOUT_S = 1.5
MARGIN_S = 0.75  # scheduling on a shared 2-core machine


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    ok, image = cap.read()
    cap.release()
    assert ok
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture
def camera(jpeg):
    server = HostileCamera(jpeg, png_bomb()).start()
    yield server
    server.stop()


def timed(call) -> tuple[SourceFailure, float]:  # noqa: ANN001
    t0 = time.monotonic()
    with pytest.raises(SourceFailure) as info:
        call()
    return info.value, time.monotonic() - t0


@pytest.mark.parametrize("path,when,kind", [
    ("/trickle", "read", "timeout"),               # 1 byte/s inside a part
    ("/trickle-head", "open", "timeout"),          # the HTTP head at 1 byte/s
    ("/endless-header", "open", "timeout"),        # an HTTP header line that never ends
    ("/endless-part-header", "read", "timeout"),   # a part header line that never ends
    ("/slow-part-headers", "read", "timeout"),     # whole part header lines, forever
    ("/slow-body", "open", "timeout"),             # a snapshot body at 20 bytes/s
])
def test_a_trickling_camera_times_out_after_timeout_s_whatever_it_sends(camera, path, when,
                                                                        kind):
    src = HttpSource(CameraConfig(source=camera.url(path), timeout_s=TIMEOUT_S))
    try:
        if when == "read":
            src.open()
            failure, took = timed(src.read)
        else:
            failure, took = timed(src.open)
    finally:
        src.close()
    assert failure.kind == kind, failure
    assert TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + MARGIN_S, (path, took)
    assert f"within {TIMEOUT_S:.1f}s" in str(failure)
    assert camera.sent[path] > 0  # bytes kept coming meanwhile


def test_an_endless_snapshot_body_is_cut_at_32_mib_not_buffered(camera):
    src = HttpSource(CameraConfig(source=camera.url("/endless-body"), timeout_s=10))
    failure, took = timed(src.open)
    src.close()
    assert failure.kind == "decode" and "larger than max_frame_bytes (33554432)" in str(failure)
    assert took < 10  # the cap, not the deadline, ended it
    assert camera.sent["/endless-body"] < 40 * 1024 * 1024 + 8 * 65536


def test_bad_frames_in_a_good_mjpeg_stream_are_drops_and_the_stream_stays_open(camera):
    src = HttpSource(CameraConfig(source=camera.url("/mixed"), timeout_s=5))
    src.open()
    try:
        got = []
        for _ in range(8):
            try:
                got.append(src.read()[0].shape)
            except ImageRejected as exc:
                got.append(exc.reason)
    finally:
        src.close()
    assert got == [(240, 320, 3), "decode", (240, 320, 3), "too_large"] * 2
    assert len(camera.connections["/mixed"]) == 1


def test_daemon_times_out_counts_and_backs_off_while_a_good_camera_keeps_publishing(
        tmp_path, broker, subscriber, camera):
    """Four hostile cameras next to a good one: the good one's results keep coming, each
    hostile one fails as `timeout` (or `decode` for the endless body) again and again with
    growing gaps between its connections, and RSS stays bounded."""
    mport = free_port()
    cfg = demo_config(broker.port)
    cfg["metrics"] = {"listen": f"127.0.0.1:{mport}"}
    hostile = {"trickle": "/trickle", "headers": "/endless-header",
               "parts": "/slow-part-headers", "body": "/endless-body"}
    backoff = {"initial_s": 0.5, "max_s": 2.0}
    cfg["cameras"] = {"good": {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                               "realtime": True, "fps": 10}}
    cfg["cameras"]["mixed"] = {"source": camera.url("/mixed"), "timeout_s": TIMEOUT_S}
    for name, path in hostile.items():
        cfg["cameras"][name] = {"source": camera.url(path), "timeout_s": TIMEOUT_S,
                                "reconnect": backoff}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    try:
        with RssWatch(proc.pid) as rss:
            assert subscriber.wait_for(lambda: len(results(subscriber, "good")) >= 5, 30)
            flowing = []
            for _ in range(4):  # 12 s of hostile cameras
                n = len(results(subscriber, "good"))
                time.sleep(3)
                flowing.append(len(results(subscriber, "good")) - n)
                assert proc.poll() is None
            text = scrape(mport)
    finally:
        err = stop_edged(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert all(n >= 5 for n in flowing), flowing  # ~10/s (30 per 3 s) throughout
    for name in ("trickle", "headers", "parts"):
        failures = metric(text, "edged_source_failures_total", camera=name, kind="timeout")
        assert failures >= 3, (name, failures)
        assert f"camera {name}: http://127.0.0.1:{camera.port}" in err
        assert metric(text, "edged_camera_up", camera=name) == 0
    assert metric(text, "edged_source_failures_total", camera="body", kind="decode") >= 3
    assert "larger than max_frame_bytes (33554432)" in err and "[timeout]" in err
    # Bad frames inside a good stream are drops, and the stream stays open.
    assert len(results(subscriber, "mixed")) >= 10
    assert metric(text, "edged_frames_dropped_total", camera="mixed", reason="decode") >= 5
    assert metric(text, "edged_frames_dropped_total", camera="mixed", reason="too_large") >= 5
    assert len(camera.connections["/mixed"]) == 1
    # Reconnects back off: gaps between a camera's connections grow from about
    # timeout_s + initial_s towards timeout_s + max_s, never a tight loop.
    times = camera.connections["/trickle"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) >= 3 and all(g >= TIMEOUT_S + 0.2 for g in gaps), gaps
    assert len(camera.connections["/endless-body"]) <= 12 / 0.25  # jitter: >= initial_s / 2
    assert rss.peak < RSS_LIMIT_KB, rss.peak


def _serve_tls_snapshot(listener: socket.socket, context: ssl.SSLContext, jpeg: bytes,
                        stop: threading.Event) -> None:
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        try:
            conn.settimeout(5)
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: "
                            b"%d\r\n\r\n" % len(jpeg) + jpeg)
        except OSError:
            pass


def _trickle_handshake(listener: socket.socket, stop: threading.Event) -> None:
    """Accepts, then sends a TLS record header and one byte a second: a handshake that never
    completes but never goes quiet."""
    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        with conn:
            for byte in b"\x16\x03\x03\x40\x00" + b"\x02" * 100:
                if stop.wait(1.0):
                    break
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    break


def test_https_camera_reads_through_the_deadline_and_a_stuck_handshake_times_out(
        tmp_path, jpeg, monkeypatch):
    pki = make_pki(tmp_path / "pki")
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))  # the test CA as the system's
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*pki.server)
    stop = threading.Event()
    good, stuck = socket.create_server(("127.0.0.1", 0)), socket.create_server(("127.0.0.1", 0))
    threads = [threading.Thread(target=_serve_tls_snapshot, args=(good, context, jpeg, stop),
                                name="tls-good", daemon=True),
               threading.Thread(target=_trickle_handshake, args=(stuck, stop),
                                name="tls-stuck", daemon=True)]
    for t in threads:
        t.start()
    try:
        src = HttpSource(CameraConfig(source=f"https://127.0.0.1:{good.getsockname()[1]}/s.jpg",
                                      timeout_s=5))
        src.open()
        image, _ = src.read()
        assert image.shape == (240, 320, 3)
        assert src.read()[0].shape == (240, 320, 3)  # fetched again
        src.close()
        src = HttpSource(CameraConfig(
            source=f"https://127.0.0.1:{stuck.getsockname()[1]}/s.jpg", timeout_s=TIMEOUT_S))
        failure, took = timed(src.open)
        src.close()
        assert failure.kind == "timeout", failure
        assert TIMEOUT_S - 0.1 <= took <= TIMEOUT_S + MARGIN_S, took
    finally:
        stop.set()
        for t in threads:
            t.join(2)
        good.close()
        stuck.close()
