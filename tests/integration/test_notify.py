"""sd_notify against a real unix datagram socket, as systemd would provide it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from edged.app.health import CameraProgress, camera_stall
from edged.service.notify import Notifier, Watchdog, watchdog_interval
from tests.conftest import DEMO, demo_config, write_config
from tests.helpers.mjpeg import MjpegCamera, jpeg_frames


class NotifySocket:
    """What systemd listens on: records every datagram with its arrival time."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edged-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._dir = tempfile.mkdtemp(prefix="sdn", dir="/tmp")  # short: sun_path <= 107
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-recv", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode().split("\n")))

    def times(self, line: str) -> list[float]:
        return [t for t, lines in list(self.messages) if line in lines]

    def lines(self, prefix: str) -> list[str]:
        return [x for _, lines in list(self.messages) for x in lines if x.startswith(prefix)]

    def wait_for(self, line: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.times(line):
                return True
            time.sleep(0.05)
        return False

    def wait_for_count(self, line: str, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.times(line)) >= count:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)
            os.rmdir(self._dir)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notifier_reaches_path_and_abstract_sockets(abstract):
    sock = NotifySocket(abstract)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": sock.address})
    try:
        notifier.ready("1/1 cameras up")
        before = time.monotonic_ns() // 1000
        notifier.reloading()
        notifier.stopping()
        assert sock.wait_for("STOPPING=1", 2)
    finally:
        notifier.close()
        sock.close()
    assert sock.messages[0][1] == ["READY=1", "STATUS=1/1 cameras up"]
    assert sock.messages[1][1][0] == "RELOADING=1"
    usec = int(sock.messages[1][1][1].removeprefix("MONOTONIC_USEC="))
    assert 0 <= usec - before < 2_000_000  # CLOCK_MONOTONIC in microseconds, like systemd's


def test_notifier_without_socket_is_a_no_op_and_a_dead_socket_is_not_fatal(tmp_path):
    assert Notifier.from_env({}).notify("READY=1") is False
    gone = Notifier(str(tmp_path / "nobody-listens"))
    assert gone.notify("WATCHDOG=1") is False  # logged once, never raised


def test_watchdog_interval_is_half_of_watchdog_usec_and_respects_pid():
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "abc"}, 42) is None


def test_watchdog_thread_pings_only_while_healthy():
    sock = NotifySocket()
    notifier = Notifier(sock.address)
    problems: list[str] = []
    dog = Watchdog(notifier, 0.05, lambda: list(problems))
    dog.start()
    try:
        assert sock.wait_for("WATCHDOG=1", 2)
        assert any(t.name == "sd-watchdog" for t in threading.enumerate())
        problems.append("camera x: no frame for 12.0s (timeout 10s)")
        time.sleep(0.2)
        count = len(sock.times("WATCHDOG=1"))
        time.sleep(0.4)
        assert len(sock.times("WATCHDOG=1")) == count
        problems.clear()
        deadline = time.monotonic() + 2
        while len(sock.times("WATCHDOG=1")) == count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(sock.times("WATCHDOG=1")) > count
    finally:
        dog.stop()
        notifier.close()
        sock.close()


def test_camera_stall_covers_capture_and_processing():
    p = CameraProgress(started=100.0)
    assert camera_stall(101.0, p, 0.0, 0.0, 5) is None  # grace after start
    assert "capture stuck for 6.0s" in camera_stall(106.0, p, 0.0, 0.0, 5)
    # A camera that is down and retried (alive: failing opens, backoff) is not wedged, even
    # with no frame for long: no restart storm for a camera that is off.
    assert camera_stall(106.0, p, 105.5, 0.0, 5) is None
    assert camera_stall(130.0, p, 140.0, 0.0, 5) is None  # sleeping through a 30 s backoff
    p.processed = 104.0
    assert camera_stall(106.0, p, 105.0, 105.0, 5) is None  # capture and processing recent
    # Frames keep coming but no worker finished one for longer than the timeout: a wedged
    # model or accelerator is a hang too.
    assert "no frame processed for 6.0s" in camera_stall(110.0, p, 109.5, 109.5, 5)
    # Nothing waiting (last frame done after it was captured) is not a processing stall.
    p.processed = 109.6
    assert camera_stall(110.0, p, 109.5, 109.5, 5) is None


def test_daemon_ready_status_watchdog_and_a_camera_that_hangs_mid_stream(tmp_path, broker):
    """A live camera that stops sending in the middle of a frame: the read's deadline ends it
    as a `timeout` and the camera is reopened, so the pipeline is not wedged and systemd keeps
    getting WATCHDOG=1 (a restart would help nobody). A capture thread stuck for good is the
    watchdog's case: see tests/unit/app/test_orchestration.py (health) and the stall tests."""
    cam = MjpegCamera(jpeg_frames(DEMO / "conveyor.mp4", 15), fps=15, send=45).start()
    cfg = demo_config(broker.port, loop=True, realtime=True)
    cfg["cameras"]["door"] = {"source": cam.url, "timeout_s": 1.5,
                              "reconnect": {"initial_s": 0.2, "max_s": 0.5}}
    path = write_config(tmp_path / "c.yaml", cfg)
    sock = NotifySocket()
    env = {**os.environ, "NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert sock.wait_for("READY=1", 20), sock.messages
        ready_at = sock.times("READY=1")[0]
        assert sock.wait_for("WATCHDOG=1", 5)
        # The pings come only after READY, every ~0.3 s while both pipelines move.
        assert min(sock.times("WATCHDOG=1")) >= ready_at
        # 45 frames at 15 fps, then the camera hangs; it is reopened after its 1.5 s timeout.
        deadline = time.monotonic() + 30
        while cam.connections < 2:
            assert time.monotonic() < deadline, "the hung camera was never reopened"
            time.sleep(0.05)
        count = len(sock.times("WATCHDOG=1"))
        assert sock.wait_for_count("WATCHDOG=1", count + 3, 5), "pings stopped"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert sock.wait_for("STOPPING=1", 2)
    finally:
        proc.kill()
        cam.stop()
        sock.close()
    assert count >= 3  # pinged while healthy
    assert "camera door:" in err and "[timeout]" in err, err
    assert "withholding pings" not in err
    statuses = sock.lines("STATUS=")
    assert statuses and "cameras up" in statuses[0] and "broker" in statuses[0]
    assert "Traceback" not in err


def test_a_camera_that_is_down_and_retried_does_not_stop_the_pings(tmp_path, broker):
    """A camera that is off is retried by edged itself; systemd must not restart the daemon
    for it (a restart storm helps nobody): WATCHDOG=1 keeps coming."""
    from tests.helpers.broker import free_port

    cfg = demo_config(broker.port, loop=True, realtime=True)
    cfg["cameras"]["gate"] = {"source": f"http://127.0.0.1:{free_port()}/x.mjpg",
                              "timeout_s": 1.0, "reconnect": {"initial_s": 0.5, "max_s": 3}}
    path = write_config(tmp_path / "c.yaml", cfg)
    sock = NotifySocket()
    env = {**os.environ, "NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen([sys.executable, "-m", "edged", "run", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert sock.wait_for("READY=1", 20), sock.messages
        time.sleep(5.0)  # several backoffs, each longer than the camera's 1 s timeout
        count = len(sock.times("WATCHDOG=1"))
        time.sleep(2.0)
        assert len(sock.times("WATCHDOG=1")) >= count + 4, "pings stopped for a camera that is down"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert "withholding pings" not in err
        assert "[unreachable]" in err
    finally:
        proc.kill()
        sock.close()


def test_a_camera_stuck_for_good_is_reopened_in_process_and_the_pings_go_on(tmp_path, broker,
                                                                           monkeypatch):
    """The daemon side of Camera.recover_if_wedged: a USB camera whose driver never returns
    from a read (the one part that cannot be real here: tests/unit/capture has the details).
    WATCHDOG=1 goes on while edged reopens it (the demo camera keeps publishing), and stops
    once MAX_ABANDONED reads are stuck at once: then systemd's watchdog decides."""
    import edged.capture.camera as camera_module
    from edged.app.daemon import Daemon
    from edged.capture.camera import MAX_ABANDONED
    from edged.config import load_config
    from tests.unit.capture.test_camera_recovery import StuckUsbCamera

    real = camera_module.make_source
    StuckUsbCamera.made = []
    monkeypatch.setattr(camera_module, "make_source", lambda cfg: StuckUsbCamera(cfg)
                        if cfg.source == "/dev/video7" else real(cfg))
    data = demo_config(broker.port, loop=True, realtime=True)
    data["cameras"]["usb"] = {"source": "/dev/video7", "timeout_s": 1.0}
    cfg = load_config(write_config(tmp_path / "c.yaml", data))
    sock = NotifySocket()
    daemon = Daemon(cfg, notifier=Notifier(sock.address),
                    environ={"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())})
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="daemon", daemon=True)
    runner.start()
    try:
        assert sock.wait_for("READY=1", 30)
        deadline = time.monotonic() + 30
        while len(StuckUsbCamera.made) < 1 + MAX_ABANDONED:
            assert time.monotonic() < deadline, len(StuckUsbCamera.made)
            time.sleep(0.05)
        pinged = len(sock.times("WATCHDOG=1"))
        assert pinged >= 5  # every ~0.2 s all along, the reopenings included
        # Now MAX_ABANDONED reads are stuck and the newest one sticks too: no more pings.
        deadline = time.monotonic() + 10
        while True:
            count = len(sock.times("WATCHDOG=1"))
            time.sleep(1.0)
            if len(sock.times("WATCHDOG=1")) == count:
                break
            assert time.monotonic() < deadline, "pings went on with every read stuck"
        assert len(StuckUsbCamera.made) == 1 + MAX_ABANDONED  # bounded: no thread pile-up
        assert runner.is_alive()
        # The other camera never stopped: its frames are still classified.
        get = daemon.metrics.registry.get_sample_value
        done = get("edged_frames_processed_total", {"camera": "conveyor"})
        deadline = time.monotonic() + 10
        while get("edged_frames_processed_total", {"camera": "conveyor"}) <= done:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert get("edged_source_failures_total", {"camera": "usb", "kind": "wedged"}) \
            == MAX_ABANDONED
    finally:
        stop.set()
        runner.join(20)
        for src in StuckUsbCamera.made:
            src.release.set()
        sock.close()
    assert not runner.is_alive()
