"""The MQTT API end to end: commands (v5 and 3.1.1), state, v5 properties, Home Assistant
discovery, and every published payload checked against docs/schemas."""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.helpers.broker import free_port
from tests.helpers.schemas import kind_of, validate
from tests.helpers.subscriber import wait_on

LABELS = (DEMO / "labels.txt").read_text().split()


class Recorder:
    """A v5 client that records topic, payload, retain flag and properties."""

    def __init__(self, port: int, *topics: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"rec-{id(self)}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(self, predicate, timeout: float = 20) -> bool:  # noqa: ANN001
        return wait_on(self._cond, predicate, timeout)

    def send(self, topic: str, payload: bytes, response_topic: str | None = None,
             correlation: bytes | None = None) -> None:
        props = None
        if response_topic:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = response_topic
            if correlation is not None:
                props.CorrelationData = correlation
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(5)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _validate_all(messages: list[mqtt.MQTTMessage]) -> int:
    checked = 0
    for m in messages:
        kind = kind_of(m.topic)
        if kind is not None:
            validate(kind, json.loads(m.payload))
            checked += 1
    return checked


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.fixture
def daemon(tmp_path, broker):
    """Start edged with commands on (and more mqtt keys from the test); yield (proc, metrics port)."""
    procs = []

    def run(**mqtt_keys):  # noqa: ANN003, ANN202
        cfg = demo_config(broker.port, loop=True, realtime=True)
        cfg["mqtt"].update({"commands": {"enabled": True}, **mqtt_keys})
        port = free_port()
        cfg["metrics"]["listen"] = f"127.0.0.1:{port}"
        proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
        procs.append(proc)
        return proc, port

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=10)
            except Exception:  # noqa: BLE001
                proc.kill()
                raise
            assert proc.returncode == 0, err
            assert "Traceback" not in err


def test_classify_round_trip_with_correlation_data_and_v5_properties(broker, daemon):
    rec = Recorder(broker.port, "edged/#", "test/replies/#")
    try:
        proc, _ = daemon(message_expiry_s=60)
        assert rec.wait_for(lambda: len(rec.on("/result")) >= 3)
        rec.send("edged/test-node/conveyor/cmd/classify", b'{"id": "qc-7"}',
                 "test/replies/station-1", b"\x00corr-42")
        assert rec.wait_for(lambda: rec.on("test/replies/station-1"))
        reply_msg = rec.on("test/replies/station-1")[0]
        reply = json.loads(reply_msg.payload)
        assert reply_msg.properties.CorrelationData == b"\x00corr-42"
        assert reply_msg.properties.ContentType == "application/json"
        assert reply["ok"] is True and reply["id"] == "qc-7" and reply["command"] == "classify"
        assert reply["result"]["label"] in LABELS
        assert reply["result"]["age_ms"] < 2000  # the newest frame, not an old one
        validate("command-reply", reply)
        # A result carries the v5 properties: content type, expiry, the model's sha256.
        result = rec.on("/result")[0]
        sha = hashlib.sha256((DEMO / "model.tflite").read_bytes()).hexdigest()
        assert result.properties.ContentType == "application/json"
        assert ("model_sha256", sha) in result.properties.UserProperty
        assert 0 < result.properties.MessageExpiryInterval <= 60
        # cmd/state replies with the state and re-publishes it (retained).
        states_before = len(rec.on("/conveyor/state"))
        rec.send("edged/test-node/conveyor/cmd/state", b"", "test/replies/st", b"s")
        assert rec.wait_for(lambda: rec.on("test/replies/st")
                            and len(rec.on("/conveyor/state")) > states_before)
        state_reply = json.loads(rec.on("test/replies/st")[0].payload)
        assert state_reply["ok"] and state_reply["state"]["state"] in [*LABELS, "unknown"]
        assert proc.poll() is None
        checked = _validate_all(rec.messages)
        assert checked >= 6
    finally:
        rec.stop()


def test_1000_malformed_or_oversized_commands_counted_answered_daemon_lives(broker, daemon):
    rec = Recorder(broker.port, "edged/test-node/+/reply/#", "edged/test-node/status")
    try:
        proc, metrics_port = daemon()
        assert rec.wait_for(lambda: rec.on("/status"))
        big = b'{"id": "' + b"x" * (64 * 1024) + b'"}'
        kinds = [b"{not json", b'{"id": 1, "frobnicate": true}', big, b"[1, 2]", b"\xff\xfe"]
        for i in range(1000):
            rec.send("edged/test-node/conveyor/cmd/classify", kinds[i % len(kinds)])
        assert rec.wait_for(lambda: len(rec.on("/reply/classify")) >= 1000, 60)
        replies = [json.loads(m.payload) for m in rec.on("/reply/classify")]
        assert len(replies) == 1000 and not any(r["ok"] for r in replies)
        for r in replies[:10]:
            validate("command-reply", r)
        errors = {r["error"].split(":")[0] for r in replies}
        assert any("larger than 65536" in e for e in errors)
        assert _metric(metrics_port, "edged_mqtt_command_errors_total") == 1000
        assert proc.poll() is None
        # It still answers a good command, and an unknown command or camera gets an error.
        rec.send("edged/test-node/conveyor/cmd/classify", b"")
        rec.send("edged/test-node/nocam/cmd/classify", b"")
        rec.send("edged/test-node/conveyor/cmd/reboot", b"")
        assert rec.wait_for(lambda: len(rec.on("/reply/classify")) >= 1002
                            and rec.on("/reply/reboot"), 20)
        last = [json.loads(m.payload) for m in rec.on("/reply/classify")[1000:]]
        assert sorted(r["ok"] for r in last) == [False, True]
        assert "no camera named 'nocam'" in next(r["error"] for r in last if not r["ok"])
        assert "unknown command" in json.loads(rec.on("/reply/reboot")[0].payload)["error"]
        assert _metric(metrics_port, "edged_mqtt_command_errors_total") == 1002
    finally:
        rec.stop()


def test_commands_under_mqtt_311_reply_on_the_reply_topic(broker, daemon):
    rec = Recorder(broker.port, "edged/#")
    try:
        daemon(protocol="v3.1.1")
        assert rec.wait_for(lambda: len(rec.on("/result")) >= 2)
        rec.send("edged/test-node/conveyor/cmd/classify", b'{"id": 5}')
        assert rec.wait_for(lambda: rec.on("/conveyor/reply/classify"))
        reply = json.loads(rec.on("/conveyor/reply/classify")[0].payload)
        assert reply["ok"] and reply["id"] == 5
        _validate_all(rec.messages)
    finally:
        rec.stop()


def test_state_is_retained_and_republished_on_reconnect_with_since(tmp_path, broker, daemon):
    from tests.helpers.broker import Mosquitto
    from tests.helpers.subscriber import Subscriber

    daemon()
    sub = Subscriber(broker.port, "edged/#").start()
    try:
        assert sub.wait_for(lambda: sub.on("/conveyor/state") and sub.on("/result"))
        first = sub.on("/conveyor/state")[-1].json
        validate("state", first)
        assert first["state"] in [*LABELS, "unknown"] and first["since"] <= time.time()
    finally:
        sub.stop()
    # Restart the broker: the state comes again, retained, before `online`.
    port = broker.port
    broker.stop()
    time.sleep(1.0)
    broker2 = Mosquitto(tmp_path, port).start()
    try:
        late = Subscriber(port, "edged/#", "late").start()
        assert late.wait_for(lambda: late.on("/status") and late.on("/conveyor/state"), 20)
        topics = [m.topic.rsplit("/", 1)[-1] for m in late.messages
                  if not m.topic.endswith("/result")]
        assert topics.index("state") < topics.index("status")
        late.stop()
        late2 = Subscriber(port, "edged/+/+/state", "late2").start()
        assert late2.wait_for(lambda: late2.messages, 5) and late2.messages[0].retain
        late2.stop()
    finally:
        broker2.stop()
        broker.start()  # the fixture stops it


def test_home_assistant_discovery_and_resend_on_birth(broker, daemon):
    rec = Recorder(broker.port, "homeassistant/#", "edged/test-node/status")
    try:
        daemon(homeassistant={"enabled": True})
        assert rec.wait_for(lambda: rec.on("/config") and rec.on("/status"))
        msg = rec.on("/config")[0]
        assert msg.topic == "homeassistant/sensor/test-node/conveyor/config"
        config = json.loads(msg.payload)
        validate("ha-discovery", config)
        assert config["state_topic"] == "edged/test-node/conveyor/state"
        assert config["availability_topic"] == "edged/test-node/status"
        assert config["value_template"] == "{{ value_json.state }}"
        assert "since" in config["json_attributes_template"]
        retained = Recorder(broker.port, "homeassistant/sensor/#")
        assert retained.wait_for(lambda: retained.messages, 5) and retained.messages[0].retain
        retained.stop()
        count = len(rec.on("/config"))
        rec.client.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
        assert rec.wait_for(lambda: len(rec.on("/config")) > count, 10)
        rec.client.publish("homeassistant/status", b"offline", qos=1).wait_for_publish(5)
        time.sleep(0.5)
        assert len(rec.on("/config")) == count + 1  # only `online` triggers a re-send
    finally:
        rec.stop()
