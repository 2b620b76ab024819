"""The YAML configuration: pydantic models, loading, and errors mapped to file lines."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from edged.errors import ConfigError
from edged.config.yamlpos import YamlError, line_for, load_with_lines

DEFAULT_CONFIG = "/etc/edged/config.yaml"
# Refused unread beyond this: a config is a few KiB; a bigger file is the wrong file (a log,
# a video) and parsing it would only take time and memory (README: Configuration).
MAX_CONFIG_BYTES = 1024 * 1024
# Names become MQTT topic levels and Home Assistant object ids: Home Assistant accepts only
# [a-zA-Z0-9_-] there, and some brokers (NATS) map '/' to '.', so '.' is out as well.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
NAME_RULE = "use only letters, digits, '_' and '-'"


def _topic_safe(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        hint = ""
        suggestion = safe_name(value)
        if suggestion != value and suggestion != "edged":
            hint = f"; e.g. {suggestion!r}"
        raise ValueError(f"{NAME_RULE} (it becomes an MQTT topic level and a Home Assistant "
                         f"id){hint}")
    return value


def safe_name(value: str) -> str:
    """`value` with every character outside the name rule replaced by '_' (for hints and the
    default node_id from the host name)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", value).strip("_") or "edged"


Name = Annotated[str, AfterValidator(_topic_safe)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ReconnectConfig(_Strict):
    initial_s: float = Field(1.0, gt=0, description="First retry delay in seconds; doubles each try.")
    max_s: float = Field(30.0, gt=0, description="Largest retry delay in seconds.")

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self


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


class ExternalDelegateConfig(_Strict):
    library: str = Field(..., min_length=1, description="Path or name of the delegate's shared "
                         "library (loaded with load_delegate).")
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Options passed to the delegate, as key: value."
    )


class ModelConfig(_Strict):
    path: str = Field(..., description="TFLite model file (relative to the config file).")
    labels: str | None = Field(
        None, description="Labels file, one per line (relative to the config file)."
    )
    threads: int = Field(1, ge=1, le=64, description="Interpreter threads per worker.")
    workers: int = Field(2, ge=1, le=64, description="Worker threads, each owning an interpreter.")
    top_k: int = Field(3, ge=1, description="How many best classes each result lists.")
    mean: float | list[float] | None = Field(
        None, description="Input normalization mean (scalar or per channel); default 127.5."
    )
    std: float | list[float] | None = Field(
        None, description="Input normalization std (scalar or per channel); default 127.5."
    )

    resize: Literal["stretch", "center-crop", "letterbox"] = Field(
        "stretch", description="How a frame is fitted to the input size: stretch (whole frame, "
        "aspect not kept), center-crop (centred region of the model's aspect) or letterbox "
        "(whole frame, aspect kept, black bars)."
    )
    output: Literal["auto", "probabilities", "logits"] = Field(
        "auto", description="Output kind: logits get a softmax; auto decides from the output's "
        "quantization and values (README: Outputs)."
    )
    output_tensor: int | str | None = Field(
        None, description="Models with several outputs: the output to use, by index or name; "
        "default the first."
    )
    delegate: Literal["edgetpu", "gpu", "npu"] | ExternalDelegateConfig | None = Field(
        None, description="Accelerator: edgetpu (libedgetpu.so.1), gpu or npu (LiteRT hardware "
        "accelerators, with CPU for unsupported ops), or {library, options} for any external "
        "delegate; default none (CPU, XNNPACK)."
    )
    device: str | None = Field(
        None, description="Edge TPU to use: usb, usb:N or pci:N; default the first found."
    )
    fallback: Literal["cpu", "fail"] = Field(
        "cpu", description="When the accelerator cannot load or fails mid-run: cpu (run on the "
        "CPU model, retry the accelerator every retry_s) or fail (stop with an error)."
    )
    cpu_path: str | None = Field(
        None, description="CPU version of an accelerator-compiled model (an Edge TPU model's "
        "twin) for the CPU fallback; default the model itself."
    )
    retry_s: float = Field(
        60.0, gt=0, description="After a fallback to the CPU, retry the accelerator this often."
    )
    invoke_timeout_s: float = Field(
        5.0, ge=0, description="An accelerator invoke taking longer counts as failed (0: no "
        "limit)."
    )

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"(usb|pci)(:\d+)?", v):
            raise ValueError("expected usb, usb:N, pci or pci:N")
        return v

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: float | list[float] | None) -> float | list[float] | None:
        values = v if isinstance(v, list) else [v] if v is not None else []
        if any(x == 0 for x in values):
            raise ValueError("std must not be 0")
        return v


class SmoothingConfig(_Strict):
    method: Literal["none", "majority", "ema"] = Field(
        "majority", description="none: each frame; majority: K of the last N; ema: moving average."
    )
    window: int = Field(5, ge=1, le=1000, description="N: frames considered (ema: its span).")
    min_votes: int = Field(3, ge=1, description="K: votes a new label needs (majority).")
    min_score: float = Field(
        0.5, ge=0, le=1, description="Below this score a frame votes `unknown` (ema: threshold)."
    )

    @model_validator(mode="after")
    def _votes(self) -> SmoothingConfig:
        if self.min_votes > self.window:
            raise ValueError("min_votes must be <= window")
        return self


class SnapshotConfig(_Strict):
    enabled: bool = Field(
        False, description="Publish a JPEG to {prefix}/{node_id}/{camera}/snapshot (retained) "
        "when the state changes to one of `labels`.",
    )
    labels: list[str] = Field(
        default_factory=list, description="States that trigger a snapshot; empty = every change."
    )
    roi_only: bool = Field(
        False, description="Send only the region of interest (the camera's `roi`), if one is set."
    )
    max_bytes: int = Field(
        256 * 1024, ge=4096, description="Largest JPEG sent; larger ones are re-encoded at lower "
        "quality, then smaller size, until they fit.",
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of snapshot messages.")


class CaptureRulesConfig(_Strict):
    """Which of a camera's frames are kept as evidence (any rule set turns capture on)."""

    labels: list[str] = Field(
        default_factory=list, description="Capture frames whose per-frame label is one of "
        "these (rejects, alarms).",
    )
    states: list[str] = Field(
        default_factory=list, description="Capture the frame that changed the smoothed state "
        "to one of these (needs mqtt.state.enabled).",
    )
    below_score: float = Field(
        0.0, ge=0, le=1, description="Capture frames whose top-1 score is below this "
        "(uncertain ones, to label and retrain); 0 = off.",
    )
    sample: float = Field(
        0.0, ge=0, le=1, description="Capture this fraction of all frames at random; 0 = off.",
    )
    max_per_minute: float = Field(
        600, gt=0, description="Rate cap of each rule: this many a minute, up to 10 seconds' "
        "worth at once; frames over it are counted, not written.",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.labels or self.states or self.below_score > 0 or self.sample > 0)

    @field_validator("labels", "states")
    @classmethod
    def _no_blank(cls, v: list[str]) -> list[str]:
        if any(not x.strip() for x in v):
            raise ValueError("labels must not be empty strings")
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
RESERVED_REGION_NAMES = frozenset({"result", "state", "snapshot", "cmd", "reply", "capture",
                                   "captures"})


class RegionConfig(_Strict):
    """One named rectangle of a camera's upright frame, classified on its own (issue 17)."""

    box: list[int] | None = Field(
        None, description="[x, y, w, h] in pixels of the upright (rotated, flipped) frame."
    )
    fraction: list[float] | None = Field(
        None, description="[x, y, w, h] as fractions (0..1) of the frame's width and height, "
        "so the region survives a resolution change.",
    )
    model: str | None = Field(None, description="Model to run on this region; default the "
                              "camera's.")
    top_k: int | None = Field(None, ge=1, description="Classes listed per result; default "
                              "the model's top_k.")
    smoothing: SmoothingConfig | None = Field(
        None, description="The region's state smoothing; default the camera's."
    )
    snapshot: SnapshotConfig | None = Field(
        None, description="The region's snapshots; default the camera's."
    )
    capture: CaptureRulesConfig | None = Field(
        None, description="The region's evidence capture rules; default the camera's."
    )

    @field_validator("box")
    @classmethod
    def _box(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 4 or v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("expected [x, y, w, h] in pixels with x, y >= 0 and w, h > 0")
        return v

    @field_validator("fraction")
    @classmethod
    def _fraction(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 4 or v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0:
            raise ValueError("expected [x, y, w, h] with x, y >= 0 and w, h > 0")
        if v[0] + v[2] > 1 + 1e-9 or v[1] + v[3] > 1 + 1e-9:
            raise ValueError("lies outside the frame: x + w and y + h must be <= 1")
        return v

    @model_validator(mode="after")
    def _one_shape(self) -> RegionConfig:
        if (self.box is None) == (self.fraction is None):
            raise ValueError("give exactly one of box (pixels) or fraction (of the frame)")
        return self


def _region_name(value: str) -> str:
    _topic_safe(value)
    if value in RESERVED_REGION_NAMES:
        raise ValueError(f"{value!r} is reserved (it is a topic level of the camera)")
    return value


RegionName = Annotated[str, AfterValidator(_region_name)]


class CameraConfig(_Strict):
    source: str | int = Field(
        ...,
        description="Video file, image folder or glob, /dev/videoN or index, rtsp:// or http(s):// URL.",
    )
    model: str = Field("default", description="Name of the entry under `models` to run.")
    enabled: bool = Field(True, description="Whether this camera runs.")
    fps: float = Field(0, ge=0, description="Max processing rate; 0 = as fast as frames come.")
    loop: bool = Field(False, description="Files: start over at the end.")
    realtime: bool = Field(False, description="Files: pace at the file's own frame rate.")
    policy: Literal["latest", "every"] | None = Field(
        None,
        description="latest: keep only the newest frame (live default); every: drop nothing "
        "(file default).",
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Live sources: reconnect after this long without a frame."
    )
    reconnect: ReconnectConfig = Field(
        default_factory=ReconnectConfig, description="Live source reconnect backoff."
    )
    smoothing: SmoothingConfig = Field(
        default_factory=SmoothingConfig, description="How the retained state follows results."
    )
    type: Literal["video", "images", "v4l2", "rtsp", "http", "gstreamer"] | None = Field(
        None,
        description="Source kind; default chosen from `source` (URL scheme, /dev/, folder, "
        "glob, ' ! ' for a GStreamer pipeline, else a video file).",
    )
    watch: bool = Field(
        False, description="Image folders: keep watching for new images (a hot folder)."
    )
    done_dir: str | None = Field(
        None,
        description="Hot folder: move each file here once its result is handed to MQTT "
        "(relative to the watched folder).",
    )
    settle_s: float = Field(
        0.5, ge=0, description="Hot folder: a file is read once its size and time are unchanged "
        "this long (so half-written files are not read).",
    )
    failed_dir: str | None = Field(
        None,
        description="Hot folder: move files that are empty, too large or cannot be decoded "
        "here (relative to the watched folder); default `failed` beside done_dir, or inside "
        "the watched folder without done_dir.",
    )
    max_frame_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="HTTP cameras: the largest MJPEG part or JPEG "
        "snapshot body; a larger one is refused (decode) without being buffered.",
    )
    max_pixels: int = Field(
        50_000_000, ge=1, description="Images (files, hot folders, HTTP snapshots and MJPEG "
        "parts) declaring more pixels than this in their header are dropped as too_large, "
        "never decoded.",
    )
    max_age_ms: float = Field(
        0, ge=0, description="Drop frames older than this before inference; 0 = never."
    )
    roi: list[int] | None = Field(
        None, description="[x, y, w, h] region of the (rotated, flipped) frame to classify."
    )
    rotate: Literal[0, 90, 180, 270] = Field(0, description="Clockwise rotation in degrees.")
    flip: Literal["none", "horizontal", "vertical", "both"] = Field(
        "none", description="Mirror the frame (after rotation)."
    )
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")
    decode: Literal["auto", "all", "keyframes"] = Field(
        "auto",
        description="Live video (RTSP, HTTP video, realtime files): which frames to decode. "
        "keyframes: only keyframes (results come from keyframes only); all: every frame; "
        "auto: keyframes when `fps` is at or below the stream's keyframe rate (learnt from the "
        "stream), else all.",
    )
    max_lag_s: float = Field(
        2.0, gt=0, description="Live video: when edged is this far behind the stream, it drops "
        "what is queued and jumps back to live (counted as reason=lag).",
    )
    ffmpeg_options: dict[str, str] = Field(
        default_factory=dict,
        description="Live video: FFmpeg options for this camera's stream (e.g. "
        "{rtsp_flags: prefer_tcp, buffer_size: '1048576'}); they win over edged's own.",
    )
    decoder_threads: int = Field(
        1, ge=0, le=16, description="Live video: decoder threads for this camera (slice "
        "threads, no added delay); 0 = FFmpeg's choice.",
    )
    decode_scale: Literal["auto", "off"] = Field(
        "auto",
        description="JPEG images (folders, hot folders, HTTP snapshots, MJPEG): auto decodes "
        "at 1/2, 1/4 or 1/8 scale when the image is at least that many times the model input "
        "on both sides (libjpeg DCT scaling); off decodes at full size.",
    )
    v4l2: V4l2Config = Field(
        default_factory=lambda: V4l2Config(), description="V4L2 device settings."
    )
    snapshot: SnapshotConfig = Field(
        default_factory=SnapshotConfig, description="JPEG snapshots over MQTT on state changes."
    )
    capture: CaptureRulesConfig = Field(
        default_factory=CaptureRulesConfig, description="Evidence captures: which frames are "
        "written to the capture folder (top-level `capture` says where and how much)."
    )


    regions: dict[RegionName, RegionConfig] = Field(
        default_factory=dict, description="Named rectangles of the frame, each classified on "
        "its own with its own results, seq and state; empty = the whole frame (or roi)."
    )

    def models_used(self) -> set[str]:
        """Every model this camera needs: its own (commands and health read it), and its
        regions' overrides."""
        return {self.model} | {r.model for r in self.regions.values() if r.model is not None}

    def known_size(self) -> tuple[int, int] | None:
        """(width, height) of the upright frame when the config fixes it (V4L2 width and
        height), else None: the stream's first frame tells."""
        if self.v4l2.width is None or self.v4l2.height is None:
            return None
        w, h = self.v4l2.width, self.v4l2.height
        return (h, w) if self.rotate in (90, 270) else (w, h)

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 4 or v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("expected [x, y, w, h] with x, y >= 0 and w, h > 0")
        return v

    @model_validator(mode="after")
    def _hot_folder(self) -> CameraConfig:
        if self.done_dir is not None and not self.watch:
            raise ValueError("done_dir needs watch: true")
        if self.failed_dir is not None and not self.watch:
            raise ValueError("failed_dir needs watch: true")
        if self.watch and self.type not in (None, "images"):
            raise ValueError(f"watch: true is for image folders, not type {self.type}")
        if self.regions and self.roi is not None:
            raise ValueError("give roi or regions, not both (a region is a named roi)")
        return self


class V4l2Config(_Strict):
    pixel_format: str | None = Field(
        None, min_length=4, max_length=4, description="FOURCC to ask for, e.g. MJPG or YUYV."
    )
    width: int | None = Field(None, gt=0, description="Width to ask the device for.")
    height: int | None = Field(None, gt=0, description="Height to ask the device for.")
    fps: float | None = Field(None, gt=0, description="Frame rate to ask the device for.")


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
    models: dict[Name, ModelConfig] = Field(..., description="Models by name.")
    cameras: dict[Name, CameraConfig] = Field(..., description="Cameras by name.")
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


def is_path_source(source: str | int) -> bool:
    """A source that names a file, folder or glob (not a device, index or URL)."""
    return (isinstance(source, str) and "://" not in source and not source.startswith("/dev/")
            and " ! " not in source)  # a GStreamer pipeline is not a path


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
        cfg = Config.model_validate(data, context={"cross_checks": False})
    except ValidationError as exc:
        raise ConfigError(_format_errors(path, lines, exc)) from None
    except (RecursionError, ValueError, TypeError) as exc:  # a last resort, never a traceback
        raise ConfigError([f"{path}:1: cannot validate the config: {type(exc).__name__}: "
                           f"{str(exc)[:200]}"]) from None
    return _resolve(cfg, path, lines)


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
        if model.cpu_path is not None:
            model.cpu_path = fix(model.cpu_path)
            if not os.path.isfile(model.cpu_path):
                error(("models", name, "cpu_path"), f"model file not found: {model.cpu_path}")
        if model.labels is not None:
            model.labels = fix(model.labels)
            if not os.path.isfile(model.labels):
                error(("models", name, "labels"), f"labels file not found: {model.labels}")
    for name, cam in cfg.cameras.items():
        if is_path_source(cam.source) and cam.type in (None, "video", "images"):
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
