"""/healthz, /readyz and the metrics a dashboard needs, on a running daemon."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry

from edged.config import load_config
from edged.app.daemon import Daemon
from tests.conftest import ROOT, demo_config, write_config
from tests.helpers.broker import Mosquitto


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(port: int, want: bool, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, body = get(f"http://127.0.0.1:{port}/readyz")
        data = json.loads(body)
        assert status == (200 if data["ready"] else 503)
        if data["ready"] == want or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon, self.stop = daemon, threading.Event()
        self.thread = threading.Thread(target=daemon.run, args=(self.stop,), name="test-daemon")

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.daemon.ready:
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.05)
        return self

    @property
    def port(self) -> int:
        return self.daemon.metrics_server.port

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_readyz_follows_the_broker(tmp_path):
    broker = Mosquitto(tmp_path).start()
    cfg = demo_config(broker.port, loop=True, realtime=True)
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)), CollectorRegistry())
    try:
        with Running(daemon) as run:
            assert get(f"http://127.0.0.1:{run.port}/healthz") == (200, b"ok\n")
            data = wait_ready(run.port, True, 10)
            assert data["ready"] and data["problems"] == [] and data["mqtt_connected"]
            assert data["cameras"] == ["conveyor"] and data["models"] == ["default"]
            broker.stop()
            data = wait_ready(run.port, False, 10)
            assert not data["ready"]
            assert data["problems"] == [f"mqtt: not connected to 127.0.0.1:{broker.port}"]
            assert daemon.metrics.registry.get_sample_value("edged_ready") == 0
            broker.start()
            data = wait_ready(run.port, True, 15)
            assert data["ready"], data
            assert daemon.metrics.registry.get_sample_value("edged_ready") == 1
            # /healthz only says the process serves: it stayed 200 throughout.
            assert get(f"http://127.0.0.1:{run.port}/healthz")[0] == 200
    finally:
        broker.stop()


def test_readyz_names_a_camera_that_is_not_fresh(tmp_path, broker):
    cfg = demo_config(broker.port, loop=True, realtime=True)
    # A live camera that never answers: connection refused on a closed loopback port.
    from tests.helpers.broker import free_port

    cfg["cameras"]["gate"] = {"source": f"http://127.0.0.1:{free_port()}/x.mjpg",
                              "timeout_s": 1.0, "reconnect": {"initial_s": 0.2, "max_s": 0.5}}
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)), CollectorRegistry())
    with Running(daemon) as run:
        data = wait_ready(run.port, True, 3)  # never ready: the gate camera has no frames
        assert not data["ready"]
        assert any(p.startswith("camera gate: no frame for") for p in data["problems"]), data
        assert not any("conveyor" in p for p in data["problems"]), data
        status = daemon.status()
        assert status.startswith("1/2 cameras up") and "broker connected" in status


METRIC_NAMES = [
    "edged_build_info", "edged_model_info", "edged_camera_up", "edged_camera_reconnects_total",
    "edged_frames_captured_total", "edged_frames_processed_total", "edged_frames_dropped_total",
    "edged_frame_age_seconds_bucket", "edged_capture_to_publish_seconds_bucket",
    "edged_inference_duration_seconds_bucket", "edged_outbox_messages", "edged_outbox_bytes",
    "edged_outbox_oldest_age_seconds", "edged_mqtt_published_total", "edged_mqtt_failed_total",
    "edged_mqtt_connected", "edged_ready", "edged_config_reloads_total",
]


def test_metrics_cover_the_dashboard(tmp_path, broker):
    from pathlib import Path

    cfg = demo_config(broker.port, loop=True, realtime=True)
    cfg["mqtt"]["qos"] = 0
    daemon = Daemon(load_config(write_config(tmp_path / "c.yaml", cfg)), CollectorRegistry())
    with Running(daemon) as run:
        wait_ready(run.port, True, 10)
        time.sleep(1.0)
        broker.stop()  # QoS 0 results while disconnected count as failed
        time.sleep(1.0)
        text = get(f"http://127.0.0.1:{run.port}/metrics")[1].decode()
    for name in METRIC_NAMES:
        assert f"\n{name}" in text, name
    get_value = daemon.metrics.registry.get_sample_value
    assert get_value("edged_mqtt_failed_total", {"topic_class": "result"}) > 0
    assert get_value("edged_frame_age_seconds_count", {"camera": "conveyor"}) > 0
    sha = daemon.pools["default"].model.sha256
    assert get_value("edged_model_info", {"model": "default", "sha256": sha,
                                          "accelerator": "cpu"}) == 1
    assert 'accelerator="cpu"' in text
    # The Grafana dashboard only queries metrics that exist.
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json")
                           .read_text())
    import re

    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 8
    exported = {re.split(r"[{ ]", line)[0] for line in text.splitlines()
                if line and not line.startswith("#")}
    for expr in exprs:
        for used in re.findall(r"\bedged_[a-z_]+", expr):
            assert used in exported, (used, expr)
