"""ConnectionHealth: the log lines, /readyz reason, gauge and backoff from paho's events."""

from __future__ import annotations

import logging

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edged.mqtt.connection_health import ConnectionHealth
from edged.service.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def health(caplog):
    caplog.set_level(logging.INFO, logger="test.health")
    metrics = Metrics()
    clock = Clock()
    h = ConnectionHealth("b", 1883, "v5", logging.getLogger("test.health"), metrics,
                         strikes=3, clock=clock)
    return h, metrics, clock


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def _connection(h: ConnectionHealth, mid: int, *sends: tuple[int, int, str], acks=()) -> None:
    h.attempt()
    h.connected()
    for m, qos, cls in sends:
        h.sent(m, qos, cls)
    for m in acks:
        h.acked(m)
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), False, expected=False)


def test_protocol_refusal_is_one_line_naming_the_key_and_value(health, caplog):
    h, metrics, _ = health
    for _ in range(5):
        h.attempt()
        h.refused(ReasonCode(PacketTypes.CONNACK, aName="Unsupported protocol version"))
        h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), False, False)
    lines = _lines(caplog)
    assert lines == ["mqtt: broker b:1883 refuses MQTT v5 (Unsupported protocol version): "
                     "set mqtt.protocol: v3.1.1"]
    assert "mqtt.protocol: v3.1.1" in h.problem
    assert _value(metrics, "edged_mqtt_connection_failures_total", reason="protocol") == 5


def test_v311_refused_names_v5(caplog):
    h = ConnectionHealth("b", 1, "v3.1.1", logging.getLogger("test.health"))
    caplog.set_level(logging.INFO, logger="test.health")
    h.attempt()
    h.refused(ReasonCode(PacketTypes.CONNACK, aName="Unsupported protocol version"))
    assert _lines(caplog)[0].endswith("set mqtt.protocol: v5")


def test_reason_logged_every_time_it_changes_and_closed_before_connack(health, caplog):
    h, metrics, clock = health
    h.attempt()
    h.unreachable(": [Errno 111] Connection refused")
    h.attempt()
    h.unreachable(": [Errno 111] Connection refused")  # same: not again
    h.attempt()
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), False, False)
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), False, False)  # dup
    h.attempt()
    h.refused(ReasonCode(PacketTypes.CONNACK, identifier=135))
    clock.t += 301  # the same reason again, much later: a reminder with the count
    for _ in range(2):
        h.attempt()
        h.refused(ReasonCode(PacketTypes.CONNACK, identifier=135))
    lines = _lines(caplog)
    assert len(lines) == 4, lines
    assert "cannot reach broker b:1883: [Errno 111]" in lines[0]
    assert "closed the connection before answering the CONNECT" in lines[1]
    assert "try mqtt.protocol: v3.1.1" in lines[1]
    assert "Not authorized" in lines[2] and "mqtt.username" in lines[2]
    assert lines[3] == lines[2]  # the reminder (no repeats were suppressed in between)
    assert _value(metrics, "edged_mqtt_connection_failures_total",
                  reason="closed_before_connack") == 1
    assert "Not authorized" in h.problem


def test_connected_once_per_connection_and_gauge(health, caplog):
    h, metrics, _ = health
    h.attempt()
    h.connected()
    assert _lines(caplog) == ["mqtt: connected to b:1883"]
    assert _value(metrics, "edged_mqtt_connected") == 1
    assert h.problem is None
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0), False, expected=True)
    assert _value(metrics, "edged_mqtt_connected") == 0
    assert len(_lines(caplog)) == 1  # a disconnect edged asked for is no failure


def test_drops_after_qos2_publishes_make_it_stuck_then_an_ack_recovers(health, caplog):
    h, metrics, _ = health
    factors = []
    for i in range(4):
        # Every connection: the status (QoS 1) is acknowledged, the QoS 2 result never is.
        _connection(h, i, (100 + i, 1, "status"), (7, 2, "result"), acks=(100 + i,))
        factors.append(h.backoff_factor())
    assert factors == [2, 4, 8, 16]  # exponential
    assert not h.usable
    assert h.problem.startswith("broker b:1883 closes the connection right after QoS 2 "
                                "publishes (4 connections in a row, none acknowledged)")
    assert h.problem.endswith("set mqtt.qos: 1")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "mqtt.qos: 1" in errors[0]
    h.attempt()
    h.connected()
    assert _value(metrics, "edged_mqtt_connected") == 0  # connected, but not delivering
    h.acked(7)  # the broker takes QoS 2 again (fixed): trusted again
    assert h.usable and h.problem is None and h.backoff_factor() == 1
    assert _value(metrics, "edged_mqtt_connected") == 1
    assert _value(metrics, "edged_mqtt_connection_failures_total",
                  reason="dropped_after_publish") == 4


def test_a_drop_with_acks_on_that_connection_is_no_strike(health):
    h, _, _ = health
    for i in range(5):
        _connection(h, i, (10 + i, 1, "result"), (20 + i, 1, "result"), acks=(10 + i,))
    # The broker acknowledged QoS 1 on each connection: an outage, not a refused QoS.
    assert h.usable and h.backoff_factor() == 1


def test_early_acks_and_qos0_do_not_leak(health):
    h, _, _ = health
    h.attempt()
    h.connected()
    h.acked(5)  # the ack raced ahead of the sink's bookkeeping
    h.sent(5, 1, "result")
    h.sent(6, 0, "result")  # QoS 0 never acknowledged, dropped by paho on disconnect
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80), False, False)
    assert h.backoff_factor() == 1 and h.usable


def test_maximum_qos_below_a_setting_is_named_at_connect(caplog):
    caplog.set_level(logging.INFO, logger="test.health")
    h = ConnectionHealth("b", 1, "v5", logging.getLogger("test.health"),
                         qos_settings={"mqtt.qos": 2, "mqtt.status.qos": 1})
    h.attempt()
    h.connected(max_qos=1)
    assert h.problem == ("broker b:1 accepts QoS up to 1 (its CONNACK says so): set "
                         "mqtt.qos: 1")
    h.attempt()
    h.connected(max_qos=1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once, not per connection
    h.attempt()
    h.connected(max_qos=None)  # no limit (or a v3.1.1 CONNACK)
    assert h.problem is None


def test_disconnect_qos_not_supported_is_stuck_at_once(health):
    h, _, _ = health
    h.attempt()
    h.connected()
    h.sent(1, 2, "result")
    h.disconnected(ReasonCode(PacketTypes.DISCONNECT, identifier=155), True, False)
    assert not h.usable
    assert h.problem == ('broker b:1883 disconnects on QoS 2 publishes ("QoS not supported"); '
                         "set mqtt.qos: 1")
