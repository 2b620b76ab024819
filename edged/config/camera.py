"""A camera's config: what every source kind shares, and the choice of the kind's own model.

Each source kind carries its own config model in its own file, beside its implementation
(`edged/capture/sources/rtsp.py` has `RtspCameraConfig`, and so on); they are subclasses of
`CameraConfig` and the `Source` registry knows them. Validating `CameraConfig` picks the
kind (`type`, else inferred from `source`) and validates with that kind's model: a
discriminated union built from the registry, so a new source kind is one new file.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from edged.config.base import ReconnectConfig, Variants, _Strict, _topic_safe


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



class CameraConfig(Variants):
    """The settings of every camera, whatever its source kind."""

    source: str | int = Field(
        ...,
        description="Video file, image folder or glob, /dev/videoN or index, rtsp:// or http(s):// URL.",
    )
    type: str | None = Field(
        None,
        description="Source kind: video, images, v4l2, rtsp, http or gstreamer; default chosen "
        "from `source` (URL scheme, /dev/, folder, glob, ' ! ' for a GStreamer pipeline, else "
        "a video file). Each kind has settings of its own (README: Sources).",
    )
    model: str = Field("default", description="Name of the entry under `models` to run.")
    enabled: bool = Field(True, description="Whether this camera runs.")
    fps: float = Field(0, ge=0, description="Max processing rate; 0 = as fast as frames come.")
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

    @classmethod
    def variants(cls) -> dict[str, type[CameraConfig]]:  # type: ignore[override]
        return source_kinds()

    @classmethod
    def variant_of(cls, data: dict[str, Any], base_dir: str | None) -> str | None:
        return kind_of(data, base_dir)

    def models_used(self) -> set[str]:
        """Every model this camera needs: its own (commands and health read it), and its
        regions' overrides."""
        return {self.model} | {r.model for r in self.regions.values() if r.model is not None}

    def known_size(self) -> tuple[int, int] | None:
        """(width, height) of the upright frame when the config fixes it (a V4L2 device's
        width and height), else None: the stream's first frame tells."""
        return None

    def upright(self, w: int, h: int) -> tuple[int, int]:
        """(w, h) of a frame of w x h after `rotate`."""
        return (h, w) if self.rotate in (90, 270) else (w, h)

    @field_validator("type", mode="before")
    @classmethod
    def _type_from_source(cls, v: Any) -> Any:  # noqa: ANN401
        # `type: null` means "from the source", which chose this kind's model.
        if v is None and cls is not CameraConfig:
            return cls.model_fields["type"].default
        return v

    @model_validator(mode="before")
    @classmethod
    def _watch_is_for_folders(cls, data: Any) -> Any:  # noqa: ANN401
        if (cls is not CameraConfig and isinstance(data, dict) and data.get("watch") is True
                and "watch" not in cls.model_fields):
            raise ValueError(f"watch: true is for image folders, not type "
                             f"{cls.model_fields['type'].default}")
        return data

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        kinds = source_kinds()
        if v is not None and v not in kinds:
            raise ValueError(f"expected one of {', '.join(kinds)}")
        return v

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 4 or v[0] < 0 or v[1] < 0 or v[2] <= 0 or v[3] <= 0):
            raise ValueError("expected [x, y, w, h] with x, y >= 0 and w, h > 0")
        return v

    @model_validator(mode="after")
    def _some_kind(self) -> CameraConfig:
        if type(self) is CameraConfig:  # no kind took the source (a URL scheme, a bool)
            raise ValueError(f"source: no source kind handles {self.source!r}: give a video "
                             "file, an image folder or glob, /dev/videoN or an index, an "
                             "rtsp:// or http(s):// URL, or a GStreamer pipeline, or set type")
        return self

    @model_validator(mode="after")
    def _regions(self) -> CameraConfig:
        if self.regions and self.roi is not None:
            raise ValueError("give roi or regions, not both (a region is a named roi)")
        return self


def source_kinds() -> dict[str, type[CameraConfig]]:
    """type -> the kind's config model, from the Source registry."""
    from edged.capture.sources.registry import config_models

    return config_models()


def kind_of(data: dict[str, Any], base_dir: str | None = None) -> str | None:
    """The source kind of a camera's raw settings: `type`, else inferred from `source`
    (a relative path is looked up from `base_dir`, the config file's folder)."""
    from edged.capture.sources.registry import infer_kind

    kind = data.get("type")
    if kind is not None:
        return kind if isinstance(kind, str) else None
    source = data.get("source")
    if data.get("watch") is True and isinstance(source, str) and is_path_source(source):
        return "images"  # a hot folder, even before its folder exists
    if not isinstance(source, (str, int)) or isinstance(source, bool):
        return None
    if isinstance(source, str) and base_dir is not None and is_path_source(source):
        source = source if os.path.isabs(source) else os.path.join(base_dir, source)
    return infer_kind(source)


def is_path_source(source: str | int) -> bool:
    """A source that names a file, folder or glob (not a device, index or URL)."""
    return (isinstance(source, str) and "://" not in source and not source.startswith("/dev/")
            and " ! " not in source)  # a GStreamer pipeline is not a path
