"""The `metrics`, `web` and `capture` sections: what edged serves and keeps besides MQTT."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edged.config.base import _PasswordSources, _Strict


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


def split_listen(listen: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9108")
    return host.strip("[]"), int(port)
