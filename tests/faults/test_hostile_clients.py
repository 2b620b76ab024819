"""Hostile clients of the HTTP listener (metrics, health, live view), on real sockets: idle and
slow-loris connections are closed after the request timeout, viewers that never read are
dropped after the write timeout and free their stream slot, and connections beyond the cap are
refused at once. Nothing holds a thread for ever, and the daemon keeps publishing."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from edged.service.metrics import Metrics, MetricsServer
from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.faults._hostile_common import metric, results, scrape, stop_edged
from tests.helpers.broker import free_port


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:  # before connect, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes the connection within `within_s` (reading what it sent)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:  # reset
            return True
    return False


def conn_threads() -> int:
    return sum(t.name == "http-conn" for t in threading.enumerate())


def test_idle_and_slow_loris_connections_are_closed_after_the_request_timeout():
    metrics = Metrics(CollectorRegistry())
    server = MetricsServer(metrics, "127.0.0.1", 0, request_timeout_s=1.0, write_timeout_s=1.0)
    server.start()
    stop = threading.Event()
    socks: list[socket.socket] = []
    try:
        socks = [connect(server.port) for _ in range(6)]  # say nothing
        loris = [connect(server.port) for _ in range(3)]  # a header byte every 0.2 s

        def drip() -> None:
            for s in loris:
                s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            while not stop.wait(0.2):
                for s in loris:
                    try:
                        s.sendall(b"a")
                    except OSError:
                        pass

        dripper = threading.Thread(target=drip, name="loris", daemon=True)
        dripper.start()
        t0 = time.monotonic()
        # Meanwhile the listener answers others at once.
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2)
        assert body.read() == b"ok\n"
        assert conn_threads() >= 9
        assert all(closed_by_server(s, 3.0) for s in socks + loris)
        assert time.monotonic() - t0 < 1.0 + 2.0
        stop.set()
        dripper.join(2)
        deadline = time.monotonic() + 2
        while conn_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn_threads() == 0  # every thread given back
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                      timeout=2).read().decode()
        assert metric(text, "edged_http_connections_dropped_total", reason="idle") == 9
    finally:
        stop.set()
        for s in socks:
            s.close()
        server.stop()


def test_connections_beyond_the_cap_are_closed_at_once():
    metrics = Metrics(CollectorRegistry())
    server = MetricsServer(metrics, "127.0.0.1", 0, request_timeout_s=5.0, max_connections=3)
    server.start()
    socks = []
    try:
        socks = [connect(server.port) for _ in range(3)]
        deadline = time.monotonic() + 2
        while conn_threads() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        extra = connect(server.port)
        socks.append(extra)
        assert closed_by_server(extra, 1.0)
        assert metrics.registry.get_sample_value("edged_http_connections_dropped_total",
                                                 {"reason": "busy"}) == 1
        for s in socks[:3]:
            s.close()
        deadline = time.monotonic() + 2
        while conn_threads() and time.monotonic() < deadline:
            time.sleep(0.02)
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2)
        assert body.read() == b"ok\n"  # slots back
    finally:
        for s in socks:
            s.close()
        server.stop()


def stream_status(port: int) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/cameras/good/stream.mjpg",
                                    timeout=5) as resp:
            return resp.status, resp.read(2000)
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_viewers_that_never_read_are_dropped_and_free_their_slots(tmp_path, broker,
                                                                  subscriber):
    """The daemon with the live view (default timeouts: 10 s): four viewers that never read
    hold every stream slot, until their writes time out; then a new viewer gets a stream.
    Idle connections opened at the same time are closed after the request timeout."""
    mport = free_port()
    cfg = demo_config(broker.port)
    cfg["metrics"] = {"listen": f"127.0.0.1:{mport}"}
    cfg["web"] = {"enabled": True, "stream_fps": 30, "max_streams": 4}
    cfg["cameras"] = {"good": {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                               "realtime": True}}
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    viewers: list[socket.socket] = []
    idle: list[socket.socket] = []
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber, "good")) >= 5, 30)
        t0 = time.monotonic()
        idle = [connect(mport) for _ in range(5)]
        for _ in range(4):
            s = connect(mport, rcvbuf=4096)
            s.sendall(b"GET /cameras/good/stream.mjpg HTTP/1.0\r\n\r\n")
            viewers.append(s)  # and never read
        time.sleep(1.0)
        assert stream_status(mport)[0] == 503  # every slot held
        # Within the request timeout (10 s) + margin, the idle ones are closed ...
        assert all(closed_by_server(s, 10 + 5 - (time.monotonic() - t0)) for s in idle)
        # ... and within the time to fill the socket buffers + the write timeout (10 s),
        # the stuck viewers are dropped and a new viewer is served.
        status, body = 503, b""
        deadline = time.monotonic() + 25
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
            status, body = stream_status(mport)
        freed_after = time.monotonic() - t0
        assert status == 200 and b"Content-Type: image/jpeg" in body, (status, freed_after)
        n = len(results(subscriber, "good"))
        time.sleep(1.0)
        assert len(results(subscriber, "good")) > n  # still publishing
        text = scrape(mport)
        assert proc.poll() is None
    finally:
        for s in viewers + idle:
            s.close()
        err = stop_edged(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert metric(text, "edged_http_connections_dropped_total", reason="idle") >= 5
    assert metric(text, "edged_http_connections_dropped_total", reason="write_timeout") >= 1
    assert freed_after >= 10  # not before the write timeout
