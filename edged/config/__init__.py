"""The YAML configuration: pydantic models, loading, and errors mapped to file lines.

The sections live beside what they configure: the common camera settings in
`edged.config.camera`, each source kind's own in its file under `edged/capture/sources/`,
models in `edged.config.model`, the `mqtt` section in `edged.config.mqtt`, `metrics`, `web`
and `capture` in `edged.config.service`; this module holds the root `Config` and the loader.
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
)
from edged.config.model import ModelConfig
from edged.config.mqtt import (
    CommandsConfig,
    HomeAssistantConfig,
    MqttConfig,
    OutboxConfig,
    StateTopicConfig,
    StatusTopicConfig,
    TlsConfig,
    TopicClassConfig,
    split_server,
)
from edged.config.service import (
    CaptureConfig,
    MetricsConfig,
    WebAuthConfig,
    WebConfig,
    split_listen,
)
from edged.config.yamlpos import YamlError, line_for, load_with_lines

__all__ = [
    "NAME_RULE", "RESERVED_REGION_NAMES", "CameraConfig", "CaptureConfig", "CaptureRulesConfig",
    "CommandsConfig", "Config", "HomeAssistantConfig",
    "MetricsConfig", "ModelConfig", "MqttConfig", "TopicClassConfig", "Name", "OutboxConfig", "ReconnectConfig",
    "RegionConfig", "SmoothingConfig", "SnapshotConfig", "StateTopicConfig",
    "StatusTopicConfig", "TlsConfig", "WebAuthConfig", "WebConfig", "is_path_source",
    "load_config", "resolve_config_path", "safe_name", "split_listen", "split_server",
]

DEFAULT_CONFIG = "/etc/edged/config.yaml"
# Refused unread beyond this: a config is a few KiB; a bigger file is the wrong file (a log,
# a video) and parsing it would only take time and memory (README: Configuration).
MAX_CONFIG_BYTES = 1024 * 1024


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
