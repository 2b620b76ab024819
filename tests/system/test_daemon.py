"""The daemon end to end: real mosquitto, real LiteRT, real video files, the real CLI."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import (DEMO, demo_config, edged, shared_or_skip, start_edged, wait_until,
                            write_config)
from tests.helpers.broker import Mosquitto, free_port
from tests.helpers.subscriber import Subscriber

RESULT_FIELDS = {"camera": str, "seq": int, "frame": int, "ts": float, "model": str,
                 "label": str, "index": int, "score": float, "top_k": list,
                 "latency_ms": float}


def results(sub: Subscriber, camera: str = "conveyor") -> list[dict]:
    return [m.json for m in sub.on(f"/{camera}/result")]


def statuses(sub: Subscriber) -> list[str]:
    return [m.json["state"] for m in sub.on("/status")]


def check_result(msg: dict, labels: list[str], top_k: int = 3) -> None:
    for key, kind in RESULT_FIELDS.items():
        assert isinstance(msg[key], kind), (key, msg)
    assert msg["label"] == labels[msg["index"]]
    assert 0.0 <= msg["score"] <= 1.0
    assert len(msg["top_k"]) == top_k
    assert msg["top_k"][0] == {"label": msg["label"], "index": msg["index"],
                               "score": msg["score"]}
    scores = [t["score"] for t in msg["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert abs(msg["ts"] - time.time()) < 600
    assert msg["latency_ms"] >= 0


def test_demo_video_every_frame_in_order_and_correct(tmp_path, broker, subscriber):
    truth = json.loads((DEMO / "conveyor.truth.json").read_text())
    labels = (DEMO / "labels.txt").read_text().split()
    cfg = write_config(tmp_path / "c.yaml", demo_config(broker.port))
    proc = edged("run", "-c", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert subscriber.wait_for(lambda: "stopped" in statuses(subscriber), 10)
    got = results(subscriber)
    assert len(got) == len(truth)
    assert [m["seq"] for m in got] == list(range(len(truth)))  # arrival order = seq order
    assert [m["frame"] for m in got] == list(range(len(truth)))  # no frame dropped
    for m in got:
        check_result(m, labels)
        assert m["camera"] == "conveyor" and m["model"] == "default"
    right = sum(m["label"] == truth[m["frame"]] for m in got)
    assert right / len(truth) >= 0.95, f"{right}/{len(truth)}"
    assert statuses(subscriber)[0] == "online" and statuses(subscriber)[-1] == "stopped"
    topics = {m.topic for m in subscriber.messages}
    assert topics == {"edged/test-node/status", "edged/test-node/conveyor/result",
                      "edged/test-node/conveyor/state"}


def test_status_is_retained_stopped_after_exit(tmp_path, broker):
    cfg = write_config(tmp_path / "c.yaml", demo_config(broker.port))
    assert edged("run", "-c", str(cfg)).returncode == 0
    late = Subscriber(broker.port, "edged/+/status", "late").start()
    try:
        assert late.wait_for(lambda: late.messages, 5)
        assert late.messages[0].retain and late.messages[0].json["state"] == "stopped"
    finally:
        late.stop()


def test_sigterm_finishes_in_flight_and_exits_within_5s(tmp_path, broker, subscriber):
    cfg = write_config(tmp_path / "c.yaml",
                       demo_config(broker.port, loop=True, realtime=True))
    proc = start_edged("run", "-c", str(cfg))
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber)) >= 20, 20)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert elapsed < 5.0
    assert "Traceback" not in err
    assert subscriber.wait_for(lambda: "stopped" in statuses(subscriber), 5)
    got = results(subscriber)
    assert [m["seq"] for m in got] == list(range(len(got)))
    # Everything published came before `stopped`: nothing in flight was lost after it.
    topics = [m.topic for m in subscriber.messages]
    assert topics[-1].endswith("/status")


def test_sigint_also_stops_cleanly(tmp_path, broker, subscriber):
    cfg = write_config(tmp_path / "c.yaml", demo_config(broker.port, loop=True, realtime=True))
    proc = start_edged("run", "-c", str(cfg))
    try:
        assert subscriber.wait_for(lambda: len(results(subscriber)) >= 5, 20)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert subscriber.wait_for(lambda: "stopped" in statuses(subscriber), 5)


def test_broker_down_at_start_then_up(tmp_path):
    port = free_port()
    cfg = write_config(tmp_path / "c.yaml", demo_config(port, loop=True, realtime=True))
    proc = start_edged("run", "-c", str(cfg))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")),
                              name="stderr-reader", daemon=True)
    reader.start()
    broker = Mosquitto(tmp_path, port)
    sub = None
    try:
        # Wait until the daemon has really tried the broker that is not there (a busy machine
        # may take seconds to start it), then bring the broker up.
        assert wait_until(lambda: any("cannot reach broker" in x for x in lines), 30), lines
        assert proc.poll() is None, "the daemon must keep running without a broker"
        broker.start()
        sub = Subscriber(port).start()
        assert sub.wait_for(lambda: len(results(sub)) >= 10, 20)
        assert "online" in statuses(sub)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        reader.join(5)
        assert proc.returncode == 0
        assert not any("Traceback" in x for x in lines)
    finally:
        proc.kill()
        if sub:
            sub.stop()
        broker.stop()


def test_broker_restart_reconnects_and_republishes_online(tmp_path):
    broker = Mosquitto(tmp_path).start()
    cfg = write_config(tmp_path / "c.yaml", demo_config(broker.port, loop=True, realtime=True))
    proc = start_edged("run", "-c", str(cfg))
    sub = Subscriber(broker.port).start()
    try:
        assert sub.wait_for(lambda: len(results(sub)) >= 5, 20)
        sub.stop()
        broker.stop()
        time.sleep(1.5)
        assert proc.poll() is None
        broker.start()
        sub = Subscriber(broker.port, client_id="test-sub-2").start()
        assert sub.wait_for(lambda: "online" in statuses(sub) and len(results(sub)) >= 5, 20)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
        assert proc.returncode == 0
        seqs = [m["seq"] for m in results(sub)]
        assert seqs == sorted(seqs)
    finally:
        proc.kill()
        sub.stop()
        broker.stop()


def test_metrics_endpoint_counts_frames(tmp_path, broker):
    from prometheus_client import CollectorRegistry

    from edged.config import load_config
    from edged.app.daemon import Daemon

    cfg = load_config(write_config(tmp_path / "c.yaml", demo_config(broker.port)))
    registry = CollectorRegistry()
    daemon = Daemon(cfg, registry)
    import threading

    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,))
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while daemon.metrics_server is None or daemon.metrics_server.port == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = daemon.metrics_server.port
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
        assert health == b"ok\n"
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"edged_build_info" in text and b"ai-edge-litert" in text
    finally:
        runner.join(60)
        stop.set()
    frames = len(json.loads((DEMO / "conveyor.truth.json").read_text()))
    get = registry.get_sample_value
    assert get("edged_frames_captured_total", {"camera": "conveyor"}) == frames
    assert get("edged_frames_processed_total", {"camera": "conveyor"}) == frames
    assert get("edged_frames_dropped_total", {"camera": "conveyor", "reason": "replaced"}) == 0
    assert get("edged_inference_duration_seconds_count",
               {"model": "default", "accelerator": "cpu"}) == frames
    assert get("edged_capture_to_publish_seconds_count", {"camera": "conveyor"}) == frames
    assert get("edged_mqtt_published_total", {"topic_class": "result"}) == frames
    assert get("edged_mqtt_connected") == 0  # after the clean stop


# --- bad input at start: one clear line, non-zero exit, no traceback -------------------------

def _one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, and besides INFO log records exactly one line: the error, last."""
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines()
             if line.strip() and not re.match(r"^\S+ \S+ INFO ", line)]
    assert lines and lines[-1] == proc.stderr.splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_source_that_cannot_be_opened(tmp_path, broker):
    cfg = demo_config(broker.port)
    cfg["cameras"]["conveyor"]["source"] = str(tmp_path / "nope.mp4")
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    _one_line_error(proc, "cameras.conveyor", "nope.mp4")


def test_source_that_is_not_a_video(tmp_path, broker):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    cfg = demo_config(broker.port)
    cfg["cameras"]["conveyor"]["source"] = str(bad)
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    _one_line_error(proc, "cameras.conveyor", "bad.mp4")


def test_model_that_is_not_tflite(tmp_path, broker):
    bad = tmp_path / "model.tflite"
    bad.write_text("not a model")
    cfg = demo_config(broker.port)
    cfg["models"]["default"]["path"] = str(bad)
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    _one_line_error(proc, "model.tflite", "not a TFLite model")


def test_labels_that_do_not_fit_the_model(tmp_path, broker):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n")
    cfg = demo_config(broker.port)
    cfg["models"]["default"]["labels"] = str(labels)
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    _one_line_error(proc, "labels.txt", "10 labels")


def test_missing_config_file(tmp_path):
    proc = edged("run", "-c", str(tmp_path / "none.yaml"))
    _one_line_error(proc, "none.yaml")


def test_metrics_port_in_use(tmp_path, broker):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg = demo_config(broker.port)
        cfg["metrics"]["listen"] = f"127.0.0.1:{s.getsockname()[1]}"
        proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    _one_line_error(proc, "metrics.listen")


def test_bad_frames_are_skipped_not_fatal(tmp_path, broker, subscriber):
    """An image folder with an undecodable file: the others are classified, the bad one counted."""
    import cv2
    import numpy as np

    folder = tmp_path / "imgs"
    folder.mkdir()
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    for i in range(3):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i}.png"), frame)
    (folder / "1b.png").write_bytes(b"\x89PNG broken")
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    cfg = demo_config(broker.port)
    cfg["cameras"]["conveyor"]["source"] = str(folder)
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert subscriber.wait_for(lambda: "stopped" in statuses(subscriber), 10)
    got = results(subscriber)
    assert [m["file"] for m in got] == ["0.png", "1.png", "2.png", "tiny.png"]
    assert [m["seq"] for m in got] == [0, 1, 2, 3]
    assert "1b.png" in proc.stderr


# --- the real, publicly released models in ../shared -------------------------------------------

EXPECTED_IMAGENET = {"parrot.jpg": "macaw", "grace_hopper.bmp": "military uniform",
                     "cat.bmp": "Egyptian cat", "bird.bmp": "chickadee",
                     "squat.bmp": "dumbbell"}


@pytest.fixture(scope="module")
def photos_video(tmp_path_factory) -> Path:
    models = shared_or_skip()
    out = tmp_path_factory.mktemp("video") / "photos.mp4"
    photos = [str(models / "photos" / name) for name in EXPECTED_IMAGENET]
    subprocess.run([sys.executable, str(models.parent / "bench" / "make_video.py"), str(out),
                    *photos, "--hold", "10"], check=True, capture_output=True)
    return out


def test_daemon_on_video_of_shared_photos_gives_documented_labels(tmp_path, broker, subscriber,
                                                                   photos_video):
    models = shared_or_skip()
    truth = json.loads(Path(str(photos_video) + ".truth.json").read_text())
    cfg = demo_config(broker.port)
    cfg["models"]["default"] = {
        "path": str(models / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"),
        "labels": str(models / "imagenet" / "imagenet_labels.txt")}
    cfg["cameras"]["conveyor"]["source"] = str(photos_video)
    proc = edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
    assert proc.returncode == 0, proc.stderr
    assert subscriber.wait_for(lambda: "stopped" in statuses(subscriber), 10)
    got = results(subscriber)
    assert len(got) == len(truth)
    for m in got:
        assert m["label"] == EXPECTED_IMAGENET[truth[m["frame"]]], (m["frame"], m["label"])
