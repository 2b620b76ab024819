"""Hot reload on SIGHUP: what changed (pure), and the running daemon applying it."""

from __future__ import annotations

import copy
import re
import signal

from edged.config import Config
from edged.app.reload import diff_configs
from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.helpers.broker import Mosquitto
from tests.helpers.subscriber import Subscriber


def cfg_of(data: dict) -> Config:
    return Config.model_validate(data)


BASE = {"node_id": "n", "models": {"m": {"path": "a.tflite"}, "k": {"path": "b.tflite"}},
        "cameras": {"a": {"source": "a.mp4", "model": "m"}, "b": {"source": "b.mp4", "model": "k"}}}


def changed(**edits: object) -> Config:
    data = copy.deepcopy(BASE)
    for path, value in edits.items():
        *parents, leaf = path.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    return cfg_of(data)


def test_diff_same_config_is_empty():
    d = diff_configs(cfg_of(BASE), cfg_of(copy.deepcopy(BASE)))
    assert d.empty and d.summary() == "nothing changed"


def test_diff_cameras_added_removed_restarted():
    d = diff_configs(cfg_of(BASE), changed(cameras__c={"source": "c.mp4", "model": "m"}))
    assert d.cameras_added == ("c",) and not d.cameras_restarted and not d.models_added
    d = diff_configs(cfg_of(BASE), changed(cameras__b=None))
    assert d.cameras_removed == ("b",) and d.models_removed == ("k",)
    d = diff_configs(cfg_of(BASE), changed(cameras__a__fps=5))
    assert d.cameras_restarted == ("a",) and not d.cameras_rewired and not d.models_changed
    # Disabling a camera removes it; enabling one adds it.
    d = diff_configs(cfg_of(BASE), changed(cameras__a__enabled=False))
    assert d.cameras_removed == ("a",) and d.models_removed == ("m",)
    assert d.summary() == "cameras -a; models -m"


def test_diff_model_change_rewires_only_its_cameras():
    d = diff_configs(cfg_of(BASE), changed(models__k__top_k=2))
    assert d.models_changed == ("k",) and d.cameras_rewired == ("b",)
    assert not d.cameras_restarted and not d.mqtt_changed
    # A model no enabled camera uses is not loaded, so changing it changes nothing.
    d = diff_configs(cfg_of(BASE), changed(models__spare={"path": "c.tflite"}))
    assert d.empty
    # A camera moved to another model restarts (its own settings changed).
    d = diff_configs(cfg_of(BASE), changed(cameras__a__model="k"))
    assert d.cameras_restarted == ("a",) and d.models_removed == ("m",)


def test_diff_mqtt_metrics_and_log_level():
    assert diff_configs(cfg_of(BASE), changed(mqtt__port=1884)).mqtt_changed
    assert diff_configs(cfg_of(BASE), changed(node_id="other")).mqtt_changed
    d = diff_configs(cfg_of(BASE), changed(metrics__listen="127.0.0.1:9200"))
    assert d.metrics_changed and not d.mqtt_changed
    d = diff_configs(cfg_of(BASE), changed(log_level="debug"))
    assert d.log_level_changed and d.summary() == "log_level"


# --- the running daemon -------------------------------------------------------------------

def seqs(sub: Subscriber, camera: str) -> list[int]:
    return [m.json["seq"] for m in sub.on(f"/{camera}/result")]


def live_demo(port: int) -> dict:
    # policy every: the tests check that no frame is lost, which a busy machine would break
    # under `latest` (frames replaced by newer ones are dropped by design).
    return demo_config(port, loop=True, realtime=True, policy="every")


def test_sighup_invalid_keeps_running_then_valid_adds_a_camera(tmp_path, broker, subscriber):
    data = live_demo(broker.port)
    path = write_config(tmp_path / "c.yaml", data)
    proc = start_edged("run", "-c", str(path))
    try:
        assert subscriber.wait_for(lambda: len(seqs(subscriber, "conveyor")) >= 5, 20)
        bad = copy.deepcopy(data)
        bad["cameras"]["conveyor"]["fps"] = -1
        write_config(path, bad)
        proc.send_signal(signal.SIGHUP)
        n = len(seqs(subscriber, "conveyor"))
        assert subscriber.wait_for(lambda: len(seqs(subscriber, "conveyor")) >= n + 15, 20)
        assert proc.poll() is None, "an invalid config must not stop the daemon"
        good = copy.deepcopy(data)
        good["cameras"]["second"] = {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                                     "realtime": True}
        write_config(path, good)
        proc.send_signal(signal.SIGHUP)
        assert subscriber.wait_for(lambda: len(seqs(subscriber, "second")) >= 10, 20)
        n = len(seqs(subscriber, "conveyor"))
        assert subscriber.wait_for(lambda: len(seqs(subscriber, "conveyor")) >= n + 5, 10)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # The error in FILE:LINE form, then the decision.
    assert re.search(rf"reload: {re.escape(str(path))}:\d+: cameras\.conveyor\.fps: ", err), err
    assert "reload: invalid config; still running on the previous one" in err
    assert "reload: applied (cameras +second)" in err
    got = seqs(subscriber, "conveyor")
    assert got == list(range(len(got))), "the untouched camera's seq must not gap or restart"
    frames = [m.json["frame"] for m in subscriber.on("/conveyor/result")]
    assert frames == list(range(len(frames)))  # not restarted: no frame lost either
    second = seqs(subscriber, "second")
    assert second == list(range(len(second)))


def test_reload_swaps_a_model_and_moves_mqtt_without_losing_results(tmp_path, broker,
                                                                    subscriber):
    data = live_demo(broker.port)
    data["models"]["other"] = dict(data["models"]["default"])
    data["cameras"]["side"] = {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                               "realtime": True, "model": "other"}
    path = write_config(tmp_path / "c.yaml", data)
    proc = start_edged("run", "-c", str(path))
    broker2 = Mosquitto(tmp_path).start()
    sub2 = Subscriber(broker2.port, client_id="sub2").start()
    try:
        assert subscriber.wait_for(lambda: len(seqs(subscriber, "side")) >= 5, 20)
        # 1. Swap the model of `side`: `conveyor` is untouched.
        swapped = copy.deepcopy(data)
        swapped["models"]["other"]["top_k"] = 2
        write_config(path, swapped)
        proc.send_signal(signal.SIGHUP)
        assert subscriber.wait_for(
            lambda: any(len(m.json["top_k"]) == 2 for m in subscriber.on("/side/result")), 20)
        # 2. Move to another broker and drop the `side` camera.
        moved = copy.deepcopy(swapped)
        moved["mqtt"]["port"] = broker2.port
        del moved["cameras"]["side"]
        write_config(path, moved)
        proc.send_signal(signal.SIGHUP)
        assert sub2.wait_for(lambda: len(seqs(sub2, "conveyor")) >= 10, 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        sub2.stop()
        broker2.stop()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "reload: applied (cameras ~side; models ~other)" in err
    assert "reload: applied (cameras -side; models -other; mqtt)" in err
    # The untouched camera: every frame classified and published once, across both brokers.
    first, second = seqs(subscriber, "conveyor"), seqs(sub2, "conveyor")
    assert first + second == list(range(len(first) + len(second)))
    frames = ([m.json["frame"] for m in subscriber.on("/conveyor/result")]
              + [m.json["frame"] for m in sub2.on("/conveyor/result")])
    assert frames == list(range(len(frames)))
    # The rewired camera kept its numbering through the swap.
    side = seqs(subscriber, "side")
    assert side == list(range(len(side)))
    assert not sub2.on("/side/result")
    assert [m.json["state"] for m in sub2.on("/status")][0] == "online"
