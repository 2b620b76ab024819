"""The YAML configuration: pydantic models, loading, and errors mapped to file lines.

The sections live beside what they configure: the common camera settings in
`edged.config.camera`, each source kind's own in its file under `edged/capture/sources/`,
models in `edged.config.model`; this module holds the root `Config` and the loader.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edged.errors import ConfigError
from edged.config.base import NAME_RULE, Name, ReconnectConfig, _Strict, _topic_safe, safe_name
from edged.config.camera import (
    RESERVED_REGION_NAMES,
    CameraConfig,
    CaptureRulesConfig,
    RegionConfig,
    SmoothingConfig,
    SnapshotConfig,
    is_path_source,
    kind_of,
    kind_settings,
    source_kinds,
)
from edged.config.model import ModelConfig
from edged.config.yamlpos import YamlError, line_for, load_with_lines

__all__ = [
    "NAME_RULE", "RESERVED_REGION_NAMES", "CameraConfig", "CaptureConfig", "CaptureRulesConfig",
    "CommandsConfig", "Config", "HomeAssistantConfig",
    "MetricsConfig", "ModelConfig", "MqttConfig", "Name", "OutboxConfig", "ReconnectConfig",
    "RegionConfig", "SmoothingConfig", "SnapshotConfig", "StateTopicConfig",
    "StatusTopicConfig", "TlsConfig", "WebAuthConfig", "WebConfig", "is_path_source",
    "load_config", "resolve_config_path", "safe_name", "split_listen", "split_server",
]

DEFAULT_CONFIG = "/etc/edged/config.yaml"
# Refused unread beyond this: a config is a few KiB; a bigger file is the wrong file (a log,
# a video) and parsing it would only take time and memory (README: Configuration).
MAX_CONFIG_BYTES = 1024 * 1024


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


class _PasswordSources(_Strict):
    """Where a password comes from (never the config file itself); read by credentials.py."""

    password_file: str | None = Field(None, description="File holding the password.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password."
    )
    password_credential: str | None = Field(
        None, description="systemd credential name holding the password ($CREDENTIALS_DIRECTORY)."
    )

    def password_sources(self) -> list[str]:
        return [k for k in ("password_file", "password_env", "password_credential")
                if getattr(self, k) is not None]


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


class CaptureConfig(_Strict):
    dir: str | None = Field(
        None, description="Folder of the captures; default captures/ under $STATE_DIRECTORY, "
        "else /var/lib/edged/captures.",
    )
    max_bytes: int = Field(
        1024 ** 3, ge=1024 * 1024, description="Retention by size: the oldest captures are "
        "deleted while all of them take more than this.",
    )
    max_age_days: float = Field(
        30.0, gt=0, description="Retention by age: captures older than this are deleted."
    )
    min_free_bytes: int = Field(
        512 * 1024 * 1024, ge=0, description="Free-space floor: capture pauses (counted, logged "
        "once) while writing would leave less free space than this on the capture filesystem.",
    )
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of captures.")
    queue_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024, description="Most bytes of frames waiting for the "
        "writer thread; frames beyond it are dropped and counted (never slowing inference).",
    )
    writer_cpu: float = Field(
        0.1, gt=0, le=1, description="Most of one CPU core the writer thread uses (it rests "
        "after each capture in proportion); frames it cannot write in time are dropped and "
        "counted, so classification keeps the CPU.",
    )
    qos: Literal[0, 1, 2] = Field(
        1, description="QoS of the announcements on {prefix}/{node_id}/{camera}/capture."
    )


# Region names become a topic level next to these, so they cannot be one of them.
class MetricsConfig(_Strict):
    enabled: bool = Field(True, description="Serve Prometheus metrics.")
    listen: str = Field("127.0.0.1:9108", description="HOST:PORT of the metrics listener.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v


class WebAuthConfig(_PasswordSources):
    username: str = Field(..., min_length=1, description="User name for HTTP basic auth.")

    @model_validator(mode="after")
    def _one_password(self) -> WebAuthConfig:
        if len(self.password_sources()) != 1:
            raise ValueError("give exactly one of password_file, password_env, "
                             "password_credential")
        return self


class WebConfig(_Strict):
    enabled: bool = Field(
        False, description="Serve the live view at / on the metrics listener (metrics.listen)."
    )
    auth: WebAuthConfig | None = Field(
        None, description="HTTP basic auth for the live view; recommended beyond loopback."
    )
    stream_fps: float = Field(
        5.0, gt=0, le=30, description="Most frames per second a viewer's stream gets."
    )
    max_width: int = Field(
        640, ge=64, le=4096, description="Frames wider than this are scaled down for viewing."
    )
    max_streams: int = Field(
        4, ge=1, le=64, description="Most MJPEG streams at once (each holds a thread)."
    )
    jpeg_quality: int = Field(75, ge=10, le=100, description="JPEG quality of the view.")


class Config(_Strict):
    node_id: str = Field(
        default_factory=lambda: safe_name(socket.gethostname().split(".")[0]),
        description="This node's name in topics; default the host name.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log level shown."
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker and topics.")
    models: dict[Name, SerializeAsAny[ModelConfig]] = Field(
        ..., description="Models by name; each takes the settings of its backend too.")
    # SerializeAsAny: each camera is its source kind's model and dumps all of its settings.
    cameras: dict[Name, SerializeAsAny[CameraConfig]] = Field(
        ..., description="Cameras by name; each takes the settings of its source kind too.")
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus metrics listener."
    )
    web: WebConfig = Field(
        default_factory=WebConfig, description="The live view page (off by default)."
    )
    capture: CaptureConfig = Field(
        default_factory=CaptureConfig, description="Evidence captures: where, retention, "
        "free-space floor (the rules are per camera)."
    )

    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """Settings accepted but without effect (another source kind's), one line each:
        `dotted.key: reason`, or `FILE:LINE: dotted.key: reason` from load_config."""
        return self._notes

    @model_validator(mode="wrap")
    @classmethod
    def _settings_of_other_kinds(cls, data: Any, handler: Any, info: ValidationInfo) -> Config:  # noqa: ANN401
        """A camera setting of another source kind (`transport` on a video file, as in a
        config copied from the example, which lists every key) is dropped with a note when it
        is set to something other than its default, so older configs keep working."""
        notes: list[str] = []
        base = (info.context or {}).get("base_dir")
        for section, root in (("cameras", CameraConfig), ("models", ModelConfig)):
            if isinstance(data, dict) and isinstance(data.get(section), dict):
                data = {**data, section: {
                    name: _drop_other_variants(root, f"{section}.{name}", entry, base, notes)
                    for name, entry in data[section].items()}}
        cfg = handler(data)
        cfg._notes = notes
        return cfg

    @field_validator("node_id")
    @classmethod
    def _node_id(cls, v: str) -> str:
        return _topic_safe(v)

    @field_validator("cameras", "models")
    @classmethod
    def _not_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ValueError("at least one entry is needed")
        return v

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        """Rules between sections, here so that `Config.model_validate` applies them too.
        load_config defers them (context cross_checks=False) to report them in line order
        together with the file checks."""
        if info.context is not None and not info.context.get("cross_checks", True):
            return self
        problems = cross_problems(self)
        if problems:
            raise ValueError(CROSS_CHECK + "\n".join(problems))
        return self


_VARIANT_WORDS = {CameraConfig: ("sources", "camera is"), ModelConfig: ("backends", "model runs on")}


def _drop_other_variants(root: Any, where: str, entry: Any, base: str | None,  # noqa: ANN401
                         notes: list[str]) -> Any:  # noqa: ANN401
    """`entry` without the settings of the root's other variants: silently at their defaults
    (a config copied from the example lists them all), else with a note."""
    if not isinstance(entry, dict):
        return entry
    kind = root.variant_of(entry, base)
    models = root.variants()
    if kind not in models:
        return entry  # the root reports the source, type or delegate
    own, others = models[kind].model_fields, root.variant_settings()
    kept = {}
    for key, value in entry.items():
        if key in own or key not in others:
            kept[key] = value
            continue
        if root is CameraConfig and key == "watch" and value is True and entry.get("type"):
            kept[key] = value  # an explicit type with watch: true contradicts: an error
            continue
        owners = sorted(others[key])
        field = models[owners[0]].model_fields[key]
        default = field.get_default(call_default_factory=True)
        if not _is_default(value, default.model_dump() if hasattr(default, "model_dump")
                           else default):
            noun, verb = _VARIANT_WORDS[root]
            how = ", from its source" if root is CameraConfig and entry.get("type") is None \
                else ""
            notes.append(f"{where}.{key}: ignored: a setting of {' and '.join(owners)} "
                         f"{noun}, and this {verb} {kind}{how}")
    return kept


def _is_default(value: Any, default: Any) -> bool:  # noqa: ANN401
    if isinstance(value, dict) and isinstance(default, dict):
        return all(k in default and _is_default(v, default[k]) for k, v in value.items())
    return bool(value == default)


def cross_problems(cfg: Config) -> list[str]:
    """Each problem between sections as `dotted.key: reason`."""
    problems = []
    for name, cam in cfg.cameras.items():
        if cam.model not in cfg.models:
            problems.append(f"cameras.{name}.model: no model named {cam.model!r} under "
                            "models")
        if cam.snapshot.enabled and not cfg.mqtt.state.enabled:
            problems.append(f"cameras.{name}.snapshot.enabled: needs mqtt.state.enabled: "
                            "snapshots follow state changes")
        if cam.capture.states and not cfg.mqtt.state.enabled:
            problems.append(f"cameras.{name}.capture.states: needs mqtt.state.enabled: "
                            "state rules follow state changes")
        problems += region_problems(name, cam, cfg)
    if cfg.web.enabled and not cfg.metrics.enabled:
        problems.append("web.enabled: needs metrics.enabled: the live view is served on "
                        "the metrics listener")
    return problems


def region_problems(name: str, cam: CameraConfig, cfg: Config) -> list[str]:
    """A camera's regions against the rest of the config: models, snapshots, and pixel boxes
    against the frame size where the config fixes it."""
    problems = []
    size = cam.known_size()
    for rname, region in cam.regions.items():
        key = f"cameras.{name}.regions.{rname}"
        if f"{name}__{rname}" in cfg.cameras:
            problems.append(f"{key}: its Home Assistant id {name}__{rname} is also a camera's "
                            "name; rename one")
        if region.model is not None and region.model not in cfg.models:
            problems.append(f"{key}.model: no model named {region.model!r} under models")
        if (region.snapshot is not None and region.snapshot.enabled
                and not cfg.mqtt.state.enabled):
            problems.append(f"{key}.snapshot.enabled: needs mqtt.state.enabled: snapshots "
                            "follow state changes")
        if region.capture is not None and region.capture.states and not cfg.mqtt.state.enabled:
            problems.append(f"{key}.capture.states: needs mqtt.state.enabled: state rules "
                            "follow state changes")
        if size is not None and region.box is not None:
            x, y, w, h = region.box
            if x + w > size[0] or y + h > size[1]:
                problems.append(f"{key}.box: {region.box} lies outside the {size[0]}x{size[1]} "
                                "frame (v4l2.width/height, after rotate)")
    return problems


def split_listen(listen: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9108")
    return host.strip("[]"), int(port)


def resolve_config_path(cli_path: str | None) -> str:
    """-c wins over $EDGED_CONFIG, which wins over the default."""
    return cli_path or os.environ.get("EDGED_CONFIG") or DEFAULT_CONFIG


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and resolve a config file; raise ConfigError with FILE:LINE lines.

    Any file at all ends in a Config or a ConfigError (the running daemon re-reads it on
    SIGHUP and must survive whatever it finds): size and nesting are bounded, and a bad byte
    or character is reported with its line."""
    path = Path(path)
    text = read_config_text(path)
    try:
        data, lines = load_with_lines(text)
    except YamlError as exc:
        raise ConfigError([f"{path}:{exc.line}: {exc.reason}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the config must be a YAML mapping of keys"])
    try:
        cfg = Config.model_validate(data, context={"cross_checks": False,
                                                   "base_dir": str(path.resolve().parent)})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, lines, exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:  # a last resort, never a traceback
        raise ConfigError([f"{path}:1: cannot validate the config: {type(exc).__name__}: "
                           f"{str(exc)[:200]}"]) from None
    cfg = _resolve(cfg, path, lines)
    placed = sorted((line_for(lines, tuple(note.partition(": ")[0].split("."))), note)
                    for note in cfg.notes)
    cfg._notes = [f"{path}:{line}: {note}" for line, note in placed]
    return cfg


def read_config_text(path: Path) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8 (a BOM is allowed), else ConfigError
    naming the line of the first bad byte."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: config file larger than {MAX_CONFIG_BYTES // 1024} KiB "
                           "(the limit); is this the right file?"])
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError([f"{path}:1: not a UTF-8 text file (it is UTF-16); save it as UTF-8"])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError([f"{path}:{line}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} "
                           f"at column {column}); save it as UTF-8"]) from None


# Errors shown at most; the rest are counted (an error line per key of a huge wrong file
# would bury the first, most useful ones).
_MAX_ERROR_LINES = 50


CROSS_CHECK = "between sections:\n"  # marks Config._cross_checks' message


def _format_errors(path: Path, lines: dict, exc: ValidationError) -> list[str]:
    out: set[tuple[int, str]] = set()
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"] and msg.startswith(CROSS_CHECK):
            for problem in msg.removeprefix(CROSS_CHECK).splitlines():
                key, _, reason = problem.partition(": ")
                loc = tuple(key.split("."))
                out.add((line_for(lines, loc), f"{path}:{line_for(lines, loc)}: {key}: {reason}"))
            continue
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        key = ".".join(_short(str(p)) for p in loc) or "(top)"
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        elif err["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = _short(err["msg"].removeprefix("Value error, "), 300)
        out.add((line_for(lines, loc), f"{path}:{line_for(lines, loc)}: {key}: {reason}"))
    shown = [text for _, text in sorted(set(out))]
    if len(shown) > _MAX_ERROR_LINES:
        more = len(shown) - _MAX_ERROR_LINES
        shown = shown[:_MAX_ERROR_LINES] + [f"{path}: ... and {more} more errors"]
    return shown


def _short(text: str, limit: int = 60) -> str:
    """One readable line even for a key or message of a megabyte."""
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried (e.g. 'str', 'list[float]'); not a config key.
    return isinstance(part, str) and (part in {"str", "int", "float"} or "[" in part)


def _resolve(cfg: Config, path: Path, lines: dict) -> Config:
    base = path.resolve().parent
    errors: list[tuple[int, str]] = []

    def fix(p: str) -> str:
        return str(p if os.path.isabs(p) else base / p)

    def error(loc: tuple[str, ...], reason: str) -> None:
        line = line_for(lines, loc)
        errors.append((line, f"{path}:{line}: {'.'.join(loc)}: {reason}"))

    for name, model in cfg.models.items():
        model.path = fix(model.path)
        if not os.path.isfile(model.path):
            error(("models", name, "path"), f"model file not found: {model.path}")
        if getattr(model, "cpu_path", None) is not None:  # accelerators' CPU twin
            model.cpu_path = fix(model.cpu_path)
            if not os.path.isfile(model.cpu_path):
                error(("models", name, "cpu_path"), f"model file not found: {model.cpu_path}")
        if model.labels is not None:
            model.labels = fix(model.labels)
            if not os.path.isfile(model.labels):
                error(("models", name, "labels"), f"labels file not found: {model.labels}")
    for name, cam in cfg.cameras.items():
        if is_path_source(cam.source) and cam.type in ("video", "images"):
            cam.source = fix(str(cam.source))
    mqtt = cfg.mqtt
    for key in ("password_file",):
        if getattr(mqtt, key) is not None:
            setattr(mqtt, key, fix(getattr(mqtt, key)))
            if not os.path.isfile(getattr(mqtt, key)):
                error(("mqtt", key), f"file not found: {getattr(mqtt, key)}")
    if mqtt.tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            if getattr(mqtt.tls, key) is not None:
                setattr(mqtt.tls, key, fix(getattr(mqtt.tls, key)))
                if not os.path.isfile(getattr(mqtt.tls, key)):
                    error(("mqtt", "tls", key), f"file not found: {getattr(mqtt.tls, key)}")
    if mqtt.outbox.path is not None:
        mqtt.outbox.path = fix(mqtt.outbox.path)
    if cfg.capture.dir is not None:
        cfg.capture.dir = fix(cfg.capture.dir)
    _check_capture_rules(cfg, error)
    auth = cfg.web.auth
    if auth is not None and auth.password_file is not None:
        auth.password_file = fix(auth.password_file)
        if not os.path.isfile(auth.password_file):
            error(("web", "auth", "password_file"), f"file not found: {auth.password_file}")
    for problem in cross_problems(cfg):
        key, _, reason = problem.partition(": ")
        error(tuple(key.split(".")), reason)
    if errors:
        raise ConfigError([text for _, text in sorted(errors)])
    return cfg


def _check_capture_rules(cfg: Config, error: Any) -> None:
    """Capture rules that can never match: a label that the model's labels file lacks
    (embedded labels are checked when the model loads)."""
    from edged.errors import ModelError
    from edged.model.labels import read_labels

    known: dict[str, list[str] | None] = {}
    # The camera's rules, and each region's own rules (against the region's model).
    checks = [(("cameras", name, "capture"), cam.capture, cam.model)
              for name, cam in cfg.cameras.items()]
    checks += [(("cameras", name, "regions", rname, "capture"), region.capture,
                region.model or cam.model)
               for name, cam in cfg.cameras.items() for rname, region in cam.regions.items()
               if region.capture is not None]
    for loc, rules, model_name in checks:
        model = cfg.models.get(model_name)
        if model is None or model.labels is None or not (rules.labels or rules.states):
            continue
        if model_name not in known:
            try:
                known[model_name] = read_labels(model.labels)
            except ModelError:
                known[model_name] = None  # reported where the model loads
        labels = known[model_name]
        if labels is None:
            continue
        for key, extra in (("labels", set()), ("states", {"unknown"})):
            for label in getattr(rules, key):
                if label not in {*labels, *extra, "background"}:
                    error((*loc, key),
                          f"{label!r} is not a label of model {model_name!r} (labels: "
                          f"{', '.join(labels)})")
