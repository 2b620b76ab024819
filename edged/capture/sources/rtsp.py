"""RTSP cameras, read through PyAV (TCP transport unless `transport: udp`), with the camera's
own FFmpeg options, decoder threads and decode policy (see avstream.py).

FFmpeg's errors say little ("could not open"); to say why, a failed open or read is followed by a short
RTSP DESCRIBE of our own (with the camera's credentials, Basic or Digest), whose answer
classifies the failure: refused -> unreachable, 401 -> auth, 404 -> not_found, and a camera
that answers 200 but cannot be decoded -> decode.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import time

from typing import Literal

import numpy as np
from pydantic import Field

from edged.config.camera import CameraConfig
from edged.capture.sources.avstream import (
    AvStream,
    LiveVideoSettings,
    Picture,
    av_error_kind,
    stream_for,
)
from edged.capture.sources.base import Source
from edged.capture.sources.failures import SourceFailure, describe_os_error, kind_of, status_kind
from edged.capture.sources.url import credentials, host_port, redact, without_credentials


def _digest(user: str, password: str, method: str, uri: str, challenge: str) -> str:
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    ha1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()  # noqa: S324 - RFC 2617
    ha2 = hashlib.md5(f"{method}:{uri}".encode()).hexdigest()  # noqa: S324
    response = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()  # noqa: S324
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{response}"')


def _describe(host: str, port: int, uri: str, auth: str | None, timeout: float) -> tuple[int, str]:
    """Send one DESCRIBE; (status code, WWW-Authenticate header)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        lines = [f"DESCRIBE {uri} RTSP/1.0", "CSeq: 1", "Accept: application/sdp",
                 "User-Agent: edged"]
        if auth:
            lines.append(f"Authorization: {auth}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    match = re.match(r"RTSP/\d\.\d (\d{3})", head)
    if not match:
        raise SourceFailure("the server does not speak RTSP", "error")
    challenge = ""
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "www-authenticate" and not challenge.startswith("Digest"):
            challenge = value.strip()
    return int(match.group(1)), challenge


def probe_rtsp(url: str, timeout: float) -> tuple[str | None, str]:
    """(failure kind or None if the stream is there, reason) from a DESCRIBE of our own."""
    host, port = host_port(url, 554)
    uri = without_credentials(url)
    user, password = credentials(url)
    try:
        code, challenge = _describe(host, port, uri, None, timeout)
        if code == 401 and user is not None:
            if challenge.lower().startswith("digest"):
                auth = _digest(user, password or "", "DESCRIBE", uri, challenge)
            else:
                auth = "Basic " + base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            code, _ = _describe(host, port, uri, auth, timeout)
    except SourceFailure as exc:
        return exc.kind, str(exc)
    except OSError as exc:
        return kind_of(exc), describe_os_error(exc)
    kind = status_kind(code)
    if kind == "auth":
        return kind, f"credentials refused (RTSP {code})" if user else f"needs credentials (RTSP {code})"
    if kind == "not_found":
        return kind, f"no such stream (RTSP {code})"
    return kind, f"RTSP {code}"


class RtspCameraConfig(CameraConfig, LiveVideoSettings):
    type: Literal["rtsp"] = "rtsp"
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport.")


class RtspSource(Source):
    key = "rtsp"
    config_model = RtspCameraConfig
    priority = 10

    cfg: RtspCameraConfig
    live = True
    timed = True

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._av: AvStream | None = None

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return isinstance(source, str) and source.lower().startswith(("rtsp://", "rtsps://"))

    @property
    def stream(self) -> AvStream | None:
        return self._av

    def open(self) -> None:
        self.close()
        av = stream_for(self.cfg, str(self.cfg.source), {"rtsp_transport": self.cfg.transport})
        try:
            av.open()
        except SourceFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV's errors: classify by asking the server
            self._fail("cannot open", exc=exc)
        self._av = av

    def _fail(self, what: str, waited: float = 0.0, exc: BaseException | None = None) -> None:
        kind, reason = probe_rtsp(str(self.cfg.source), min(self.cfg.timeout_s, 5.0))
        if kind is None:  # the server offers the stream, yet FFmpeg got nothing from it
            if what == "cannot open":
                if exc is not None and av_error_kind(exc) == "timeout":
                    kind, reason = "timeout", f"no stream within {self.cfg.timeout_s:.1f}s"
                else:
                    kind, reason = ("decode",
                                    "the server offers the stream but it cannot be decoded")
            elif waited >= 0.9 * self.cfg.timeout_s:
                kind, reason = "timeout", f"no frame for {waited:.1f}s"
            else:
                kind, reason = "ended", "the stream stopped"
        raise SourceFailure(f"{self.describe()}: {what}: {reason}", kind)

    def read_picture(self) -> Picture:
        if self._av is None:
            raise SourceFailure("not open")
        t0 = time.monotonic()
        try:
            picture = self._av.next()
        except SourceFailure:
            raise
        except Exception as exc:  # noqa: BLE001 - PyAV read errors
            self._fail("read failed", time.monotonic() - t0, exc)
        if picture is None:
            self._fail("read failed", time.monotonic() - t0)
        return picture

    def read(self) -> tuple[np.ndarray, str | None] | None:
        return self.read_picture().bgr(), None

    @property
    def fps(self) -> float:
        return self._av.fps if self._av is not None else 0.0

    def close(self) -> None:
        if self._av is not None:
            av, self._av = self._av, None
            av.close()

    def describe(self) -> str:
        return redact(str(self.cfg.source))
