"""The parts behind a fleet on a clustered broker: mqtt.servers (parsing, rotation), the status
heartbeat payload and how a consumer reads it, Home Assistant's expire_after, and the hints
that name the key to change when a broker refuses a feature."""

from __future__ import annotations

import json

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from edged.config import MqttConfig, split_server
from edged.mqtt.brokers import feature_hint
from edged.mqtt.contract import Topics, discovery_payload, status_payload
from edged.mqtt.heartbeat import Heartbeat, expire_after, is_stale
from edged.mqtt.servers import ServerList
from tests.helpers.schemas import validate

# --- mqtt.servers ------------------------------------------------------------------------------

def test_servers_parse_and_host_port_stay_the_one_server_form():
    assert MqttConfig().server_list() == [("127.0.0.1", 1883)]
    assert MqttConfig(host="b.plant", port=8883).server_list() == [("b.plant", 8883)]
    cfg = MqttConfig(servers=["n1.plant:1883", "10.0.0.2:1884", "[::1]:1885"])
    assert cfg.server_list() == [("n1.plant", 1883), ("10.0.0.2", 1884), ("::1", 1885)]
    assert split_server(" a:1 ") == ("a", 1)


@pytest.mark.parametrize(("servers", "reason"), [
    ([], "at least one"),
    (["n1"], "expected HOST:PORT"),
    (["n1:0"], "expected HOST:PORT"),
    (["n1:70000"], "expected HOST:PORT"),
    ([":1883"], "expected HOST:PORT"),
    (["n1:1883", "n1:1883"], "listed twice"),
])
def test_bad_servers_are_refused(servers, reason):
    with pytest.raises(ValidationError, match=reason):
        MqttConfig(servers=servers)


def test_servers_and_host_together_are_refused():
    with pytest.raises(ValidationError, match="either servers or host/port"):
        MqttConfig(servers=["a:1"], host="b")
    with pytest.raises(ValidationError, match="either servers or host/port"):
        MqttConfig(servers=["a:1"], port=1884)


def test_server_list_rotates_round_robin_and_points_paho_at_the_current_one():
    servers = ServerList([("a", 1), ("b", 2), ("::1", 3)])
    assert servers.describe() == "a:1 (server 1 of 3)"
    assert str(servers.advance()) == "b:2" and str(servers.advance()) == "[::1]:3"
    assert servers.describe() == "[::1]:3 (server 3 of 3)"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t")
    servers.apply(client)
    assert (client.host, client.port) == ("::1", 3)
    assert str(servers.advance()) == "a:1"  # wraps round
    servers.apply(client)
    assert (client.host, client.port) == ("a", 1)
    one = ServerList([("only", 1883)])
    assert str(one.advance()) == "only:1883" and one.describe() == "only:1883"
    with pytest.raises(ValueError):
        ServerList([])


# --- the heartbeat -----------------------------------------------------------------------------

def test_status_payloads_fit_the_schema_and_carry_interval_and_server():
    online = json.loads(status_payload("online", 100.0, 30.0, "n2.plant:1883"))
    assert online == {"state": "online", "ts": 100.0, "interval_s": 30.0,
                      "server": "n2.plant:1883"}
    for body in (online, json.loads(status_payload("offline", 100.0, 30.0)),
                 json.loads(status_payload("stopped", 100.0)),
                 json.loads(status_payload("online", 100.0))):
        validate("status", body)
    assert "interval_s" not in json.loads(status_payload("online", 100.0, 0.0))


def test_a_consumer_treats_a_status_older_than_three_intervals_as_offline():
    beat = {"state": "online", "ts": 1000.0, "interval_s": 30.0}
    assert not is_stale(beat, 1000.0 + 89.9)
    assert is_stale(beat, 1000.0 + 90.1)
    assert is_stale({"state": "offline", "ts": 1000.0, "interval_s": 30.0}, 1000.0)
    assert is_stale({"state": "stopped", "ts": 1000.0}, 1000.0)
    # Without a heartbeat only the last will can tell: an old `online` stays online.
    assert not is_stale({"state": "online", "ts": 0.0}, 1e9)


def test_heartbeat_is_due_one_interval_after_each_online():
    now = [0.0]
    hb = Heartbeat(30.0, clock=lambda: now[0])
    assert not hb.due()  # nothing before the first `online`
    hb.reset()
    now[0] = 29.9
    assert not hb.due()
    now[0] = 30.0
    assert hb.due()
    hb.reset()
    assert not hb.due()
    off = Heartbeat(0.0, clock=lambda: now[0])
    off.reset()
    now[0] = 1e9
    assert not off.due()


def test_status_interval_config():
    assert MqttConfig().status.interval_s == 30.0
    assert MqttConfig(status={"interval_s": 0}).status.interval_s == 0
    with pytest.raises(ValidationError, match="at least 0.5"):
        MqttConfig(status={"interval_s": 0.1})


def test_home_assistant_discovery_expires_after_three_intervals():
    topics = Topics("edged", "n1")
    with_beat = discovery_payload(topics, "cam", expire_after(30.0))
    assert with_beat["expire_after"] == 90
    assert expire_after(2.5) == 8  # rounded up
    assert "expire_after" not in discovery_payload(topics, "cam", expire_after(0.0))
    validate("ha-discovery", with_beat)
    assert expire_after(0.0) is None and expire_after(0.2) == 1


# --- brokers with fewer features ---------------------------------------------------------------

def _rc(name: str, packet: int = PacketTypes.DISCONNECT) -> ReasonCode:
    return ReasonCode(packet, name)


def test_feature_refusals_name_the_key_to_change():
    cfg = MqttConfig()
    assert "set mqtt.status.retain, mqtt.state.retain: false" in feature_hint(
        _rc("Retain not supported"), cfg)
    assert "mqtt.result_retain" in feature_hint(_rc("Retain not supported"),
                                                MqttConfig(result_retain=True))
    assert "snapshot.max_bytes" in feature_hint(_rc("Packet too large"), cfg)
    assert "mqtt.max_inflight" in feature_hint(_rc("Quota exceeded", PacketTypes.PUBACK), cfg)
    assert "node_id" in feature_hint(_rc("Topic name invalid"), cfg)
    assert "mqtt.commands.enabled" in feature_hint(
        _rc("Wildcard subscription not supported"), cfg)
    assert feature_hint(_rc("Server unavailable", PacketTypes.CONNACK), cfg) == ""


def test_connection_health_names_the_current_server_and_adds_the_feature_hint(caplog):
    import logging

    from edged.mqtt.connection_health import ConnectionHealth

    log = logging.getLogger("test.health")
    cfg = MqttConfig(servers=["a:1", "b:2"])
    health = ConnectionHealth("a", 1, "v5", log, where="a:1 (server 1 of 2)",
                              hint=lambda rc: feature_hint(rc, cfg))
    with caplog.at_level(logging.INFO, "test.health"):
        health.attempt()
        health.connected()
        health.disconnected(_rc("Retain not supported"), True, expected=False)
        health.at("b:2 (server 2 of 2)")
        health.attempt()
        health.connected()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "connected to a:1 (server 1 of 2)" in text
    assert ("disconnected from a:1 (server 1 of 2) (the broker said: Retain not supported "
            "(the broker keeps no retained messages") in text
    assert "connected to b:2 (server 2 of 2)" in text


def test_a_drop_with_a_qos_acknowledged_before_is_a_lost_connection_not_a_strike(caplog):
    """A cluster node that stalls while it re-elects drops its clients with QoS 1 publishes in
    flight; QoS 1 was acknowledged before, so it is not taken for a broker without QoS 1."""
    import logging

    from edged.mqtt.connection_health import ConnectionHealth

    health = ConnectionHealth("a", 1, "v3.1.1", logging.getLogger("test.strikes"), strikes=2)
    health.attempt()
    health.connected()
    health.sent(1, 1, "result")
    health.acked(1)  # QoS 1 works here
    with caplog.at_level(logging.INFO, "test.strikes"):
        for mid in range(2, 6):  # drops with QoS 1 in flight, connection after connection
            health.disconnected(_rc("Unspecified error"), False, expected=False)
            health.attempt()
            health.connected()
            health.sent(mid, 1, "result")
    assert health.usable and health.problem is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # A QoS never acknowledged is still suspect (NATS and QoS 2).
    for mid in range(10, 12):
        health.sent(mid, 2, "result")
        health.disconnected(_rc("Unspecified error"), False, expected=False)
        health.attempt()
        health.connected()
    assert not health.usable and "QoS 2" in (health.problem or "")
