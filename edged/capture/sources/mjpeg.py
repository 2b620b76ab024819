"""HTTP(S) cameras: an MJPEG stream (multipart/x-mixed-replace) or a JPEG snapshot URL.

Read with the standard library instead of FFmpeg so that every failure has its reason: the
HTTP status (401 -> auth, 404 -> not_found), socket errors (refused -> unreachable), and a
deadline of `timeout_s` for each whole operation: opening (connect, request, headers), each
MJPEG frame (its boundary, part headers and body), each snapshot (request to last byte). A
server that keeps the connection open but stops sending, or trickles bytes, is a `timeout`
however its bytes are spread. A part or snapshot body over `max_frame_bytes` (32 MiB) is
refused without being buffered. Images are decoded within the camera's max_pixels (edged.capture.imagedecode); a bad
one is a dropped frame and the stream stays open. Any other content type (an MP4 or HLS
stream) goes to FFmpeg.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from urllib.parse import urlsplit

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from edged.capture.imagedecode import JpegSettings, decode_image
from edged.config.camera import CameraConfig
from edged.capture.sources.base import Source
from edged.capture.sources.deadline import Deadline, DeadlineExceeded, DeadlineHTTPConnection
from edged.capture.sources.failures import SourceFailure, describe_os_error, kind_of, status_kind
from edged.capture.sources.avstream import LiveVideoSettings, open_http_video, read_http_video
from edged.capture.sources.url import credentials, redact

_MAX_PART_HEADERS = 64 * 1024  # the headers of one multipart part
_CHUNK = 1 << 16


class HttpCameraConfig(CameraConfig, LiveVideoSettings, JpegSettings):
    """An HTTP camera: MJPEG, a JPEG snapshot URL, or a video stream (through PyAV)."""

    type: Literal["http"] = "http"
    max_frame_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="HTTP cameras: the largest MJPEG part or JPEG "
        "snapshot body; a larger one is refused (decode) without being buffered.",
    )


class HttpSource(Source):
    key = "http"
    config_model = HttpCameraConfig
    priority = 20
    live = True

    cfg: HttpCameraConfig

    def __init__(self, cfg) -> None:  # noqa: ANN001
        super().__init__(cfg)
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._boundary: bytes | None = None
        self._snapshot = False
        self._cap = None  # an AvStream, for a video over HTTP
        self._pending: bytes | None = None  # a snapshot body fetched by open()
        self._deadline = Deadline()
        self._in_part = False  # the boundary line of the next part was already consumed

    @classmethod
    def accepts(cls, source: str | int) -> bool:
        return isinstance(source, str) and source.lower().startswith(("http://", "https://"))

    def describe(self) -> str:
        return redact(str(self.cfg.source))

    def _request(self) -> http.client.HTTPResponse:
        """Connect, send the request and read the response head, within the deadline that
        the caller started."""
        url = str(self.cfg.source)
        parts = urlsplit(url)
        context = ssl.create_default_context() if parts.scheme.lower() == "https" else None
        conn = DeadlineHTTPConnection(parts.hostname or "", parts.port, self._deadline, context)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"User-Agent": "edged", "Accept": "*/*"}
        user, password = credentials(url)
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self._conn = conn
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
        except DeadlineExceeded:
            self.close()
            raise SourceFailure(f"{self.describe()}: no answer within {self.cfg.timeout_s:.1f}s",
                                "timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SourceFailure(f"{self.describe()}: cannot connect: {describe_os_error(exc)}",
                                kind_of(exc)) from None
        kind = status_kind(resp.status)
        if kind is not None:
            self.close()
            what = "credentials refused" if kind == "auth" and user else resp.reason
            raise SourceFailure(f"{self.describe()}: HTTP {resp.status} {what}", kind)
        return resp

    def open(self) -> None:
        self._deadline.start(self.cfg.timeout_s)
        resp = self._request()
        ctype = resp.getheader("Content-Type", "")
        if ctype.lower().startswith("multipart/"):
            boundary = ""
            for param in ctype.split(";")[1:]:
                name, _, value = param.strip().partition("=")
                if name.lower() == "boundary":
                    boundary = value.strip('"')
            if not boundary:
                self.close()
                raise SourceFailure(f"{self.describe()}: multipart stream without a boundary",
                                    "decode")
            self._boundary = b"--" + boundary.removeprefix("--").encode()
            self._resp = resp
        elif ctype.lower().startswith("image/"):
            self._snapshot = True
            try:
                self._pending = self._body(resp)
            finally:
                self.close_connection()
        else:
            # Not MJPEG: a video over HTTP; PyAV (FFmpeg) can demux it.
            self.close()
            self._cap = open_http_video(self.cfg, self.describe(), ctype)

    def _decode(self, data: bytes) -> np.ndarray:
        return decode_image(data, self.cfg.max_pixels, f"{self.describe()}: a frame",
                            self.decode_target, self.cfg.decode_scale)

    def _body(self, resp: http.client.HTTPResponse) -> bytes:
        """A snapshot's whole body, at most max_frame_bytes, within the deadline."""
        cap = self.cfg.max_frame_bytes
        if resp.length is not None and resp.length > cap:
            raise SourceFailure(f"{self.describe()}: an image of {resp.length} bytes is larger "
                                f"than max_frame_bytes ({cap})", "decode")
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := resp.read(_CHUNK):
                chunks.append(chunk)
                size += len(chunk)
                if size > cap:
                    raise SourceFailure(f"{self.describe()}: an image body is larger than "
                                        f"max_frame_bytes ({cap})", "decode")
        except DeadlineExceeded:
            raise SourceFailure(f"{self.describe()}: no whole image within "
                                f"{self.cfg.timeout_s:.1f}s", "timeout") from None
        except http.client.IncompleteRead:
            raise SourceFailure(f"{self.describe()}: the server closed the connection inside "
                                "an image", "ended") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SourceFailure(f"{self.describe()}: read failed: {describe_os_error(exc)}",
                                kind_of(exc)) from None
        return b"".join(chunks)

    def read(self) -> tuple[np.ndarray, str | None] | None:
        if self._cap is not None:
            return self.read_picture().bgr(), None
        if self._snapshot:
            if self._pending is None:
                self._deadline.start(self.cfg.timeout_s)  # request to last byte
                resp = self._request()
                try:
                    self._pending = self._body(resp)
                finally:
                    self.close_connection()
            data, self._pending = self._pending, None
            return self._decode(data), None
        if self._resp is None:
            raise SourceFailure("not open")
        self._deadline.start(self.cfg.timeout_s)  # the whole frame, however it trickles
        try:
            data = self._next_part()
        except DeadlineExceeded:
            raise SourceFailure(f"{self.describe()}: no whole frame within "
                                f"{self.cfg.timeout_s:.1f}s", "timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SourceFailure(f"{self.describe()}: read failed: {describe_os_error(exc)}",
                                kind_of(exc)) from None
        return self._decode(data), None

    def _next_part(self) -> bytes:
        """The body of the next multipart part (bounded by Content-Length or the boundary);
        every read is bounded by the frame's deadline."""
        resp, boundary = self._resp, self._boundary
        assert resp is not None and boundary is not None
        cap = self.cfg.max_frame_bytes
        if not self._in_part:  # skip to the boundary line
            skipped = 0
            while True:
                line = self._line(resp)
                if line.strip().startswith(boundary):
                    break
                skipped += len(line)
                if skipped > cap:
                    raise SourceFailure(f"{self.describe()}: no part boundary in "
                                        f"max_frame_bytes ({cap})", "decode")
        self._in_part = False
        length = -1
        head = 0
        while True:  # the part's headers
            line = self._line(resp)
            if not line.strip():
                break
            head += len(line)
            if head > _MAX_PART_HEADERS:
                raise SourceFailure(f"{self.describe()}: part headers longer than 64 KiB",
                                    "decode")
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length > cap:
            raise SourceFailure(f"{self.describe()}: a part of {length} bytes is larger than "
                                f"max_frame_bytes ({cap})", "decode")
        if length >= 0:
            data = resp.read(length)
            if len(data) < length:
                raise SourceFailure(f"{self.describe()}: the server closed the stream", "ended")
            return data
        # No length: the body runs up to the next boundary line (the trailing CRLF is harmless
        # to the JPEG decoder).
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._line(resp)
            if line.strip().startswith(boundary):
                self._in_part = True
                return b"".join(chunks)
            chunks.append(line)
            size += len(line)
            if size > cap:
                raise SourceFailure(f"{self.describe()}: a part is larger than max_frame_bytes "
                                    f"({cap})", "decode")

    def _line(self, resp: http.client.HTTPResponse) -> bytes:
        line = resp.readline(_CHUNK)
        if not line:
            raise SourceFailure(f"{self.describe()}: the server closed the stream", "ended")
        return line

    @property
    def fps(self) -> float:
        return self._cap.fps if self._cap is not None else 0.0

    @property
    def timed(self) -> bool:  # type: ignore[override]
        return self._cap is not None  # a video over HTTP, through PyAV

    @property
    def stream(self):  # noqa: ANN201 - the AvStream of a video over HTTP
        return self._cap

    def read_picture(self):  # noqa: ANN201
        return read_http_video(self._cap, self.describe())

    def close_connection(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self.close_connection()
        if self._cap is not None:
            self._cap.close()
            self._cap = None
        self._snapshot = False
        self._pending = None
        self._boundary = None
        self._in_part = False
