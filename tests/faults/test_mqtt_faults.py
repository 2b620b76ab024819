"""Fault injection on MQTT: hostile commands and response topics (real mosquitto), and
brokers that refuse (the tests' own broker stand-in, tests/helpers/fake_broker.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from edged.mqtt.extensions.commands import MAX_PAYLOAD
from tests.conftest import demo_config, start_edged, write_config
from tests.faults.test_config_faults import rss_mb
from tests.helpers.broker import free_port
from tests.helpers.fake_broker import FakeBroker
from tests.integration.test_mqtt_api import Recorder


def _readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def _metric(port: int, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith(name + "{") or line.startswith(name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait(predicate, timeout: float, step: float = 0.1) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Edged:
    """edged run in a subprocess with a config made by the test; stop() returns stderr."""

    def __init__(self, tmp_path, broker_port: int, **mqtt: object) -> None:  # noqa: ANN001
        cfg = demo_config(broker_port, loop=True, realtime=True)
        cfg["mqtt"].update(mqtt)
        self.port = free_port()
        cfg["metrics"]["listen"] = f"127.0.0.1:{self.port}"
        self.proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))
        assert _wait(self._serving, 30), "edged did not start serving metrics"

    def _serving(self) -> bool:
        assert self.proc.poll() is None, self.proc.stderr.read()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
            return True
        except OSError:
            return False

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert self.proc.returncode == 0, err
        assert "Traceback" not in err, err
        return err


@pytest.fixture
def run_edged(tmp_path):
    started: list[Edged] = []

    def start(port: int, **mqtt: object) -> Edged:
        e = Edged(tmp_path, port, **mqtt)
        started.append(e)
        return e

    yield start
    for e in started:
        if e.proc.poll() is None:
            e.proc.kill()
            e.proc.communicate(timeout=10)


# --- hostile commands -------------------------------------------------------------------------


def _commands_answered(rec: Recorder) -> None:
    """Wait until edged answers commands (its subscription may come after `online`): a probe
    each second until its reply arrives; the probe's replies are left out of what follows."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rec.send("edged/test-node/conveyor/cmd/classify", b'{"id": "probe"}')
        if rec.wait_for(lambda: rec.on("/reply/classify"), 1.0):
            time.sleep(0.5)  # the later probes' replies
            with rec._cond:
                rec.messages.clear()
            return
    raise AssertionError("edged never answered a command")



def test_deep_json_commands_within_the_size_limit_get_an_error_reply(broker, run_edged):
    rec = Recorder(broker.port, "edged/test-node/+/reply/#", "edged/test-node/status")
    try:
        e = run_edged(broker.port, commands={"enabled": True})
        assert rec.wait_for(lambda: rec.on("/status"))
        _commands_answered(rec)
        deep = [b"[" * MAX_PAYLOAD, b'{"id":' * (MAX_PAYLOAD // 6),
                b"[" * 30000 + b"]" * 30000, b'{"id": ' + b"9" * 6000 + b"}"]
        assert all(len(p) <= MAX_PAYLOAD for p in deep)
        for payload in deep:
            rec.send("edged/test-node/conveyor/cmd/classify", payload)
        assert rec.wait_for(lambda: len(rec.on("/reply/classify")) >= len(deep), 30)
        replies = [json.loads(m.payload) for m in rec.on("/reply/classify")]
        assert [r["ok"] for r in replies] == [False] * len(deep)
        assert all(r["error"].startswith("payload is not valid JSON") for r in replies)
        assert sum("nested too deeply" in r["error"] for r in replies) == 3
        rec.send("edged/test-node/conveyor/cmd/classify", b'{"id": "after"}')
        assert rec.wait_for(lambda: any(json.loads(m.payload).get("id") == "after"
                                        for m in rec.on("/reply/classify")), 20)
        assert _metric(e.port, "edged_mqtt_command_errors_total", reason="bad_json") == 4
        after = next(json.loads(m.payload) for m in rec.on("/reply/classify")
                     if json.loads(m.payload).get("id") == "after")
        assert after["ok"], after  # the daemon still classifies on demand
        assert rss_mb(e.proc.pid) < 400
        err = e.stop()
    finally:
        rec.stop()
    assert "RecursionError" not in err


HOSTILE_TOPICS = ["edged/test-node/conveyor/result", "edged/test-node/status",
                  "edged/test-node/conveyor/state", "edged/test-node/conveyor/cmd/classify",
                  "edged/other-node/conveyor/reply/classify", "$SYS/x", "a/#", "a/+/b",
                  "homeassistant/sensor/test-node/conveyor/config"]


def test_hostile_response_topics_get_no_publish_there(broker, run_edged):
    rec = Recorder(broker.port, "#", "$SYS/#")
    try:
        e = run_edged(broker.port, commands={"enabled": True, "reply_prefixes": ["clients/"]})
        assert rec.wait_for(lambda: len(rec.on("/conveyor/result")) >= 2)
        _commands_answered(rec)
        for i, topic in enumerate(HOSTILE_TOPICS + ["elsewhere/x"]):
            rec.send("edged/test-node/conveyor/cmd/classify", json.dumps({"id": i}).encode(),
                     topic, f"c{i}".encode())
        rec.send("edged/test-node/conveyor/cmd/classify", b'{"id": "ok"}', "clients/7/r", b"k")
        n = len(HOSTILE_TOPICS) + 1
        assert rec.wait_for(lambda: len(rec.on("/conveyor/reply/classify")) >= n
                            and rec.on("clients/7/r"), 30)
        refused = [m for m in rec.on("/conveyor/reply/classify")]
        bodies = [json.loads(m.payload) for m in refused]
        assert sorted(b["id"] for b in bodies) == list(range(n))
        assert all(not b["ok"] and b["error"].startswith("response topic refused: ")
                   for b in bodies)
        # The asker can still match the refusal: its correlation data comes along.
        assert sorted(m.properties.CorrelationData for m in refused) == sorted(
            f"c{i}".encode() for i in range(n))
        assert json.loads(rec.on("clients/7/r")[0].payload)["ok"] is True
        # Nothing carrying a command reply went anywhere but the two allowed places.
        for m in rec.messages:
            if b'"command"' in m.payload:
                assert m.topic in ("edged/test-node/conveyor/reply/classify", "clients/7/r"), \
                    m.topic
        assert not [m for m in rec.messages if m.topic.startswith(("$SYS/x", "a/", "elsewhere"))]
        assert _metric(e.port, "edged_mqtt_command_errors_total", reason="response_topic") == n
        err = e.stop()
    finally:
        rec.stop()
    assert len(re.findall(r"commands: refused a response topic", err)) == 1  # one per episode


# --- brokers that refuse ----------------------------------------------------------------------


@pytest.mark.parametrize("refuse_with", ["connack", "close"])
def test_broker_refusing_v5_gives_one_line_naming_mqtt_protocol(run_edged, refuse_with):
    fake = FakeBroker(accept_levels=(4,), refuse_with=refuse_with).start()
    try:
        e = run_edged(fake.port, protocol="v5")
        assert _wait(lambda: len(fake.snapshot()[0]) >= 4, 20)
        ready = _readyz(e.port)
        assert not ready["ready"] and not ready["mqtt_connected"]
        assert _metric(e.port, "edged_mqtt_connected") == 0
        if refuse_with == "connack":
            assert any("set mqtt.protocol: v3.1.1" in p for p in ready["problems"]), ready
            assert _metric(e.port, "edged_mqtt_connection_failures_total",
                           reason="protocol") >= 4
        else:
            assert any("try mqtt.protocol: v3.1.1" in p for p in ready["problems"]), ready
            assert _metric(e.port, "edged_mqtt_connection_failures_total",
                           reason="closed_before_connack") >= 4
        err = e.stop()
    finally:
        fake.stop()
    mqtt_lines = [line for line in err.splitlines() if "mqtt.protocol" in line]
    assert len(mqtt_lines) == 1, mqtt_lines  # one line, not one per attempt
    assert f"127.0.0.1:{fake.port}" in mqtt_lines[0]
    assert "mqtt: connected" not in err


def test_broker_dropping_every_qos2_publish_is_not_ready_names_the_qos_and_backs_off(run_edged):
    fake = FakeBroker(max_qos=1).start()  # as NATS: QoS 0/1 only, drops the connection on 2
    try:
        e = run_edged(fake.port, qos=2, reconnect={"initial_s": 0.2, "max_s": 3.2})
        assert _wait(lambda: any("set mqtt.qos: 1" in p for p in _readyz(e.port)["problems"]),
                     30), _readyz(e.port)
        ready = _readyz(e.port)
        assert not ready["ready"] and not ready["mqtt_connected"]
        assert _metric(e.port, "edged_mqtt_connected") == 0
        t_stuck = time.monotonic()
        n_stuck = len(fake.snapshot()[0])
        time.sleep(8)
        conns, received = fake.snapshot()
        # Backed off: without it paho reconnects every 0.1-0.2 s (40+ connections in 8 s);
        # with it at most one per max_s * 0.5 (the smallest jitter) = 1.6 s.
        later = conns[n_stuck:]
        assert len(later) <= 6, [round(c.opened - t_stuck, 2) for c in later]
        gaps = [b.opened - a.opened for a, b in zip(conns, conns[1:])]
        assert max(gaps[-3:]) > 4 * min(gaps[:3]), gaps
        assert all(c.outcome in ("dropped_qos2", "open") for c in conns), conns
        # QoS 1 still works (the status), so the QoS named is 2 and nothing is counted twice.
        assert any(r.topic == "edged/test-node/status" and r.qos == 1 for r in received)
        assert _metric(e.port, "edged_mqtt_connection_failures_total",
                       reason="dropped_after_publish") >= 3
        assert rss_mb(e.proc.pid) < 400
        err = e.stop()
        connections = len(fake.snapshot()[0])
    finally:
        fake.stop()
    assert err.count("mqtt: connected to") == connections  # once per connection, no more
    stuck = [line for line in err.splitlines() if "set mqtt.qos: 1" in line]
    assert len(stuck) == 1 and "ERROR" in stuck[0] and "QoS 2" in stuck[0], stuck
    # Results were not lost: they wait in the outbox (not acknowledged at exit).
    assert re.search(r"mqtt: \d+ messages not acknowledged at exit; kept in the outbox", err) \
        or "broker unreachable at exit" in err, err


def test_v5_broker_limiting_qos_is_named_at_the_first_connection(run_edged):
    # A v5 broker that says so: Maximum QoS 1 in its CONNACK, DISCONNECT 0x9B on QoS 2.
    fake = FakeBroker(max_qos=1, v5_limits=True).start()
    try:
        e = run_edged(fake.port, qos=2, reconnect={"initial_s": 0.2, "max_s": 3.2})
        assert _wait(lambda: any("accepts QoS up to 1 (its CONNACK says so): set mqtt.qos: 1"
                                 in p for p in _readyz(e.port)["problems"]), 20)
        assert _wait(lambda: any('disconnects on QoS 2 publishes ("QoS not supported"); set '
                                 "mqtt.qos: 1" in p for p in _readyz(e.port)["problems"]), 20)
        # Named at the first drop (the broker said why): no 3 connections needed to guess.
        assert len(fake.snapshot()[0]) <= 2
        assert not _readyz(e.port)["ready"]
        err = e.stop()
        conns = fake.snapshot()[0]
    finally:
        fake.stop()
    assert "the broker said: QoS not supported" in err
    assert len([line for line in err.splitlines() if "accepts QoS up to 1" in line]) == 1
    stuck = [line for line in err.splitlines() if "disconnects on QoS 2 publishes" in line]
    assert len(stuck) == 1 and "ERROR" in stuck[0], stuck
    assert all(c.outcome in ("dropped_qos2", "open") for c in conns), conns
