"""The `mqtt` section: broker, topics, QoS, TLS, outbox, commands, Home Assistant."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edged.config.base import ReconnectConfig, _PasswordSources, _Strict


class TopicClassConfig(_Strict):
    qos: Literal[0, 1, 2] = Field(1, description="QoS of this topic class.")
    retain: bool = Field(True, description="Whether the broker keeps the last message.")


class StateTopicConfig(TopicClassConfig):
    enabled: bool = Field(True, description="Publish the retained, smoothed per-camera state.")


class StatusTopicConfig(TopicClassConfig):
    interval_s: float = Field(
        30.0, ge=0, description="Heartbeat: re-publish the retained `online` status with a fresh "
        "ts (and each camera's state) this often; consumers treat a status older than 3 x this as "
        "offline, and Home Assistant gets expire_after = 3 x this. 0 = only on connect.",
    )

    @field_validator("interval_s")
    @classmethod
    def _interval(cls, v: float) -> float:
        if 0 < v < 0.5:
            raise ValueError("use 0 (no heartbeat) or at least 0.5 seconds")
        return v


def split_server(entry: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port), for mqtt.servers."""
    host, sep, port = entry.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{entry!r}: expected HOST:PORT, e.g. broker1.plant:8883 or [::1]:1883")
    return host, int(port)


class TlsConfig(_Strict):
    ca_file: str | None = Field(
        None, description="CA certificates (PEM) to verify the broker; default the system's."
    )
    cert_file: str | None = Field(None, description="Client certificate (PEM) for mTLS.")
    key_file: str | None = Field(None, description="Client private key (PEM) for mTLS.")
    insecure: bool = Field(
        False, description="Skip verifying the broker's certificate and host name (unsafe)."
    )

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self


class OutboxConfig(_Strict):
    enabled: bool = Field(
        True, description="Keep QoS>=1 results on disk until the broker acknowledges them."
    )
    path: str | None = Field(
        None, description="SQLite file; default $STATE_DIRECTORY/outbox.db, else "
        "/var/lib/edged/outbox.db.",
    )
    max_messages: int = Field(100_000, ge=1, description="Most results kept; then drop oldest.")
    max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="Most payload bytes kept; then drop oldest."
    )
    synchronous: Literal["normal", "full"] = Field(
        "normal", description="normal: survives a crash of edged; full: also a power loss "
        "(an fsync per result).",
    )
    fallback_max_messages: int = Field(
        10_000, ge=1, description="Most results kept in memory while the outbox file is "
        "unusable (disk full, read-only, I/O error); then the oldest are dropped and counted.",
    )
    fallback_max_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Most payload bytes kept in memory likewise.",
    )
    retry_max_s: float = Field(
        60.0, gt=0, le=3600, description="Longest wait between tries to use an unusable "
        "outbox file again (backoff from 1 s).",
    )


class CommandsConfig(_Strict):
    enabled: bool = Field(False, description="Subscribe to .../cmd/classify and .../cmd/state.")
    reply_prefixes: list[str] | None = Field(
        None, description="MQTT v5 response topics a command may name must start with one of "
        "these (e.g. ['clients/']); default any topic outside edged's own and Home Assistant's "
        "(never a '$' topic or a wildcard). Refused: an error reply on .../reply/{command}."
    )

    @field_validator("reply_prefixes")
    @classmethod
    def _prefixes(cls, v: list[str] | None) -> list[str] | None:
        for p in v or []:
            if not p or p.startswith("$") or any(c in p for c in "+#\x00"):
                raise ValueError(f"{p!r}: a prefix must be non-empty, without '+', '#' or a "
                                 "leading '$'")
        return v


class HomeAssistantConfig(_Strict):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery.")
    discovery_prefix: str = Field(
        "homeassistant", min_length=1, description="Home Assistant's discovery topic prefix."
    )


class MqttConfig(_PasswordSources):
    host: str = Field("127.0.0.1", min_length=1, description="Broker host name or address "
                      "(the one-server form of servers).")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    servers: list[str] | None = Field(
        None, description="Several brokers (e.g. the nodes of a cluster) as HOST:PORT, tried in "
        "this order: on a lost connection edged moves to the next one with the reconnect "
        "backoff. TLS settings apply to each, with the host name checked per entry. Instead "
        "of host/port.",
    )
    topic_prefix: str = Field("edged", min_length=1, description="First level of every topic.")
    qos: Literal[0, 1, 2] = Field(1, description="QoS of result messages.")
    protocol: Literal["v5", "v3.1.1"] = Field("v5", description="MQTT protocol version.")
    client_id: str | None = Field(None, description="MQTT client id; default edged-<node_id>.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval in seconds.")
    max_inflight: int = Field(
        200, ge=1, description="QoS>0 messages sent but not yet acknowledged, at most."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Broker reconnect backoff."
    )
    drain_timeout_s: float = Field(
        10.0, ge=0, description="On exit, how long to wait for the broker to acknowledge results."
    )
    result_retain: bool = Field(False, description="Retain result messages.")
    message_expiry_s: int = Field(
        0, ge=0, description="MQTT v5 message expiry of results in seconds; 0 = none."
    )
    state: StateTopicConfig = Field(
        default_factory=StateTopicConfig, description="The retained per-camera state topic."
    )
    status: StatusTopicConfig = Field(
        default_factory=StatusTopicConfig,
        description="The availability (status) topic and its heartbeat.",
    )
    username: str | None = Field(None, description="User name for the broker.")
    tls: TlsConfig | None = Field(
        None, description="TLS to the broker; verification is on unless insecure: true."
    )
    outbox: OutboxConfig = Field(
        default_factory=OutboxConfig, description="The durable on-disk queue of results."
    )
    commands: CommandsConfig = Field(
        default_factory=CommandsConfig, description="MQTT commands (classify, state)."
    )
    homeassistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery."
    )

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        sources = self.password_sources()
        if len(sources) > 1:
            raise ValueError(f"give only one of {', '.join(sources)}")
        if sources and self.username is None:
            raise ValueError(f"{sources[0]} needs username")
        return self

    @field_validator("servers")
    @classmethod
    def _servers(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("list at least one HOST:PORT (or leave servers out and use host/port)")
        seen = [split_server(entry) for entry in v]
        if len(set(seen)) != len(seen):
            raise ValueError("a server is listed twice")
        return v

    @model_validator(mode="after")
    def _servers_or_host(self) -> MqttConfig:
        if self.servers is not None and {"host", "port"} & self.model_fields_set:
            raise ValueError("give either servers or host/port, not both "
                             "(host/port is the one-server form)")
        return self

    def server_list(self) -> list[tuple[str, int]]:
        """The brokers to try, in order: `servers`, else the one `host`:`port`."""
        if self.servers is None:
            return [(self.host, self.port)]
        return [split_server(entry) for entry in self.servers]

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("no '+', '#' or leading/trailing '/' in a topic prefix")
        return v
