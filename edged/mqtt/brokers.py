"""Brokers with fewer features: when one refuses a feature by name, which edged key to change.

edged.mqtt.connection_health already names the key for a refused protocol version
(`mqtt.protocol`), refused credentials or client ids, and QoS levels the broker does not take
(a v5 "QoS not supported", a CONNACK Maximum QoS, or NATS dropping the connection on a QoS 2
publish). This adds the other MQTT v5 reason codes a broker with fewer features gives, in a
CONNACK or a DISCONNECT. docs/fleet.md has the table per broker.
"""

from __future__ import annotations

from edged.config import MqttConfig

# MQTT v5 reason codes.
TOPIC_NAME_INVALID = 0x90
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
RETAIN_NOT_SUPPORTED = 0x9A
WILDCARD_NOT_SUPPORTED = 0xA2
SHARED_NOT_SUPPORTED = 0x9E


def feature_hint(reason_code: object, cfg: MqttConfig) -> str:
    """'' or ' (hint naming the key)' for a broker's reason code."""
    code = getattr(reason_code, "value", reason_code)
    if code == RETAIN_NOT_SUPPORTED:
        keys = [k for k, on in (("mqtt.status.retain", cfg.status.retain),
                                ("mqtt.state.retain", cfg.state.retain),
                                ("mqtt.result_retain", cfg.result_retain)) if on]
        return (f" (the broker keeps no retained messages: set {', '.join(keys) or 'retain'}: "
                "false; availability then rests on the heartbeat, mqtt.status.interval_s)")
    if code == TOPIC_NAME_INVALID:
        return (" (the broker refused a topic name: its levels come from mqtt.topic_prefix, "
                "node_id and the camera names)")
    if code == PACKET_TOO_LARGE:
        return (" (a message is larger than the broker allows: lower "
                "cameras.<name>.snapshot.max_bytes, or raise the broker's limit)")
    if code == QUOTA_EXCEEDED:
        return " (the broker's quota was exceeded: lower mqtt.max_inflight)"
    if code in (WILDCARD_NOT_SUPPORTED, SHARED_NOT_SUPPORTED):
        return (" (the broker does not take this subscription: mqtt.commands.enabled and "
                "mqtt.homeassistant.enabled subscribe)")
    return ""
