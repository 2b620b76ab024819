"""The live view: a small page, per-camera MJPEG streams and snapshots on the metrics listener.

Costs nothing while nobody watches: the view keeps only references (each camera's newest frame
lives on the Camera, read through the camera set; the newest result comes with the "result
published" event the view joins while it runs) and encodes a JPEG
only when a viewer asks, at most `stream_fps` times a second per camera, one encoding shared by
every viewer of that camera.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from urllib.parse import unquote

from edged.app.events import Events, ResultPublished
from edged.capture.regions import place
from edged.config import WebConfig
from edged.frame import Box, Frame, subject
from edged.web.imaging import encode_jpeg, view_image

log = logging.getLogger(__name__)

BOUNDARY = b"edgedframe"
_STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
           "/index.html": ("index.html", "text/html; charset=utf-8"),
           "/static/view.js": ("view.js", "text/javascript; charset=utf-8"),
           "/static/view.css": ("view.css", "text/css; charset=utf-8")}
_KEEPALIVE_S = 2.0  # resend the last frame this often so a gone viewer is noticed
_FPS_WINDOW = 32  # results kept per camera for the fps figure

StartResponse = Callable[..., object]


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (every interface)


def exposure_warning(host: str, port: int, auth: bool) -> str | None:
    """The warning to log when the view is reachable beyond loopback without auth."""
    if auth or is_loopback(host):
        return None
    return (f"web: the live view on {host or '*'}:{port} is reachable beyond this machine "
            "WITHOUT authentication: anyone on the network can watch the cameras; set "
            "web.auth or bind metrics.listen to 127.0.0.1")


def check_basic_auth(header: str | None, username: str, password: str) -> bool:
    """Whether an Authorization header carries these credentials (constant-time compare)."""
    if not header or not header.startswith("Basic "):
        return False
    try:
        user, sep, given = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    ok_user = hmac.compare_digest(user.encode(), username.encode())
    ok_password = hmac.compare_digest(given.encode(), password.encode())
    return bool(sep) and ok_user and ok_password


@dataclass
class Encoded:
    jpeg: bytes
    key: tuple[int, float]  # (frame index, frame capture time): which frame it shows
    at: float  # when it was encoded (monotonic)


class JpegCache:
    """One camera's newest view JPEG. Viewers share it; a new frame is encoded at most once
    per `min_interval` seconds, under a lock so concurrent viewers wait for one encoding."""

    def __init__(self, max_width: int, quality: int, min_interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._max_width = max_width
        self._quality = quality
        self._min_interval = min_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: Encoded | None = None
        self.encodings = 0

    def get(self, frame: Frame | None,
            overlays: Callable[[Frame], list[tuple[Box, str | None]]] | None = None
            ) -> Encoded | None:
        """`overlays(frame)`: the regions to draw, asked only when a JPEG is encoded."""
        if frame is None:
            return None
        key = (frame.index, frame.mono)
        with self._lock:
            cached = self._cached
            now = self._clock()
            if cached is not None and (cached.key == key
                                       or now - cached.at < self._min_interval):
                return cached
            image = view_image(frame.image, frame.box, self._max_width,
                               overlays(frame) if overlays is not None else ())
            self._cached = Encoded(encode_jpeg(image, self._quality), key, now)
            self.encodings += 1
            return self._cached


class _Stream:
    """An MJPEG response body. A class, not a generator, so that close() releases the stream
    slot even when the server never started iterating (client gone before the first write)."""

    def __init__(self, frames: Iterator[bytes], release: Callable[[], None]) -> None:
        self._frames = frames
        self._release: Callable[[], None] | None = release

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
        if self._release is not None:
            self._release()
            self._release = None


class LiveView:
    """The WSGI app mounted on the metrics listener, and an extension that joins "result
    published" to keep each camera's newest result. start()/stop() are the component
    lifecycle: stop() ends every stream within about one frame interval."""

    def __init__(self, cfg: WebConfig, node_id: str, cameras, registry,  # noqa: ANN001
                 events: Events, state=None, password: str | None = None,  # noqa: ANN001
                 listen: Callable[[], tuple[str, int]] = lambda: ("127.0.0.1", 0),
                 clock: Callable[[], float] = time.monotonic,
                 captures: Callable[[str], list[dict]] | None = None) -> None:
        self._cfg = cfg
        self._node_id = node_id
        self._cameras = cameras  # the camera set: names, get(name) -> Camera, last_frame
        self._registry = registry  # prometheus CollectorRegistry, for camera up
        self._events = events
        self._state = state  # StateTracker or None
        self._password = password
        self._listen = listen  # (host, port) once the listener is up
        self._clock = clock
        self._lock = threading.Lock()
        self._captures = captures  # camera -> its newest evidence captures (label, score, ...)
        self._results: dict[str, dict] = {}
        self._result_times: dict[str, deque[float]] = {}
        self._frame_seen: dict[str, int] = {}  # cameras with regions: last frame counted
        self._caches: dict[str, JpegCache] = {}  # made on first view of a camera
        self._stop = threading.Event()
        self._streams = 0
        self._streams_cond = threading.Condition()
        self._pages: dict[str, bytes] = {}

    def _cache(self, camera: str) -> JpegCache:
        with self._lock:
            cache = self._caches.get(camera)
            if cache is None:
                cache = self._caches[camera] = JpegCache(
                    self._cfg.max_width, self._cfg.jpeg_quality, 1.0 / self._cfg.stream_fps,
                    self._clock)
            return cache

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._events.subscribe(ResultPublished, self.on_result)
        host, port = self._listen()
        warning = exposure_warning(host, port, self._password is not None)
        if warning:
            log.warning("%s", warning)
        log.info("web: live view at http://%s:%d/%s", f"[{host}]" if ":" in host else host,
                 port, " (basic auth)" if self._password is not None else "")

    def stop(self, timeout: float = 2.0) -> None:
        """End every stream (their threads notice within a frame interval) and wait briefly."""
        self._events.unsubscribe(ResultPublished, self.on_result)
        self._stop.set()
        deadline = self._clock() + timeout
        with self._streams_cond:
            while self._streams and self._clock() < deadline:
                self._streams_cond.wait(0.05)
            if self._streams:
                log.warning("web: %d streams still open at stop", self._streams)

    # --- fed by the publisher thread ----------------------------------------------------------

    def on_result(self, event: ResultPublished) -> None:
        """Keeps a reference and a time stamp, nothing else."""
        self._results[event.subject] = event.result
        if event.region is not None:
            # The camera's fps counts its frames, not its regions' results: one per frame.
            if self._frame_seen.get(event.camera) == event.frame.index:
                return
            self._frame_seen[event.camera] = event.frame.index
        with self._lock:
            times = self._result_times.setdefault(event.camera, deque(maxlen=_FPS_WINDOW))
        times.append(self._clock())

    # --- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def handles(path: str) -> bool:
        return path in _STATIC or path == "/api/status" or path.startswith("/cameras/")

    def app(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _plain(start_response, "405 Method Not Allowed", "only GET and HEAD\n",
                          [("Allow", "GET, HEAD")])
        if self._password is not None and self._cfg.auth is not None and not check_basic_auth(
                environ.get("HTTP_AUTHORIZATION"), self._cfg.auth.username, self._password):
            return _plain(start_response, "401 Unauthorized", "authentication required\n",
                          [("WWW-Authenticate", 'Basic realm="edged", charset="UTF-8"')])
        if path in _STATIC:
            name, content_type = _STATIC[path]
            return _send(start_response, "200 OK", content_type, self._page(name), method)
        if path == "/api/status":
            body = json.dumps(self.status(), separators=(",", ":")).encode()
            return _send(start_response, "200 OK", "application/json", body, method)
        parts = path.split("/")  # "", "cameras", name, file
        if len(parts) == 4 and unquote(parts[2]) in self._cameras:
            camera = unquote(parts[2])
            if parts[3] == "snapshot.jpg":
                return self._snapshot(camera, start_response, method)
            if parts[3] == "stream.mjpg":
                return self._stream(camera, start_response, method)
        return _plain(start_response, "404 Not Found", "no such camera or page\n")

    def _page(self, name: str) -> bytes:
        page = self._pages.get(name)
        if page is None:
            page = resources.files("edged").joinpath("web/static", name).read_bytes()
            self._pages[name] = page
        return page

    def _snapshot(self, camera: str, start_response: StartResponse,
                  method: str) -> Iterable[bytes]:
        encoded = self._cache(camera).get(self._cameras.last_frame(camera),
                                          self._overlays(camera))
        if encoded is None:
            return _plain(start_response, "503 Service Unavailable", "no frame yet\n",
                          [("Retry-After", "1")])
        return _send(start_response, "200 OK", "image/jpeg", encoded.jpeg, method,
                     [("X-Frame-Index", str(encoded.key[0]))])

    def _stream(self, camera: str, start_response: StartResponse,
                method: str) -> Iterable[bytes]:
        headers = [("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}"),
                   ("Cache-Control", "no-store"), ("X-Accel-Buffering", "no")]
        if method == "HEAD":
            start_response("200 OK", headers)
            return []
        with self._streams_cond:
            if self._stop.is_set() or self._streams >= self._cfg.max_streams:
                full = True
            else:
                full = False
                self._streams += 1
        if full:
            return _plain(start_response, "503 Service Unavailable",
                          f"at most {self._cfg.max_streams} streams at once (web.max_streams); "
                          "use snapshot.jpg\n", [("Retry-After", "5")])
        start_response("200 OK", headers)
        return _Stream(self._frames(camera), self._release_stream)

    def _release_stream(self) -> None:
        with self._streams_cond:
            self._streams -= 1
            self._streams_cond.notify_all()

    def _frames(self, camera: str) -> Iterator[bytes]:
        """MJPEG parts: a new frame at most every 1/stream_fps s; the same one again every
        couple of seconds so a viewer that left is noticed; ends when the view stops."""
        cache = self._cache(camera)
        interval = 1.0 / self._cfg.stream_fps
        last_key: tuple[int, float] | None = None
        last_sent = -1e9
        yield b"--" + BOUNDARY + b"\r\n"
        while not self._stop.is_set():
            encoded = cache.get(self._cameras.last_frame(camera), self._overlays(camera))
            now = self._clock()
            if encoded is not None and (encoded.key != last_key or now - last_sent > _KEEPALIVE_S):
                last_key, last_sent = encoded.key, now
                # The boundary follows the part at once, so browsers show it without waiting.
                yield (b"Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                       % len(encoded.jpeg) + encoded.jpeg + b"\r\n--" + BOUNDARY + b"\r\n")
            if self._stop.wait(interval):
                break

    # --- regions ------------------------------------------------------------------------------

    def _regions(self, camera: str, frame: Frame | None) -> list[dict]:
        """Each region of a camera: its box on the newest frame, its newest result and state."""
        cam = self._cameras.get(camera)
        if cam is None or not getattr(cam.cfg, "regions", None):
            return []
        placed = None
        if frame is not None:
            placed = place(cam.cfg.regions, frame.image.shape[1], frame.image.shape[0])
        out = []
        for name in cam.cfg.regions:
            key = subject(camera, name)
            result = self._results.get(key) or {}
            box = placed.boxes.get(name) if placed is not None else None
            entry = {"name": name, "box": list(box) if box is not None else None,
                     "label": result.get("label"), "score": result.get("score"),
                     "seq": result.get("seq"), "state": None, "state_score": None}
            st = self._state.payload(key) if self._state is not None else None
            if st is not None:
                entry.update(state=st["state"], state_score=st["score"])
            out.append(entry)
        return out

    def _overlays(self, camera: str) -> Callable[[Frame], list[tuple[Box, str | None]]] | None:
        cam = self._cameras.get(camera)
        if cam is None or not getattr(cam.cfg, "regions", None):
            return None

        def overlays(frame: Frame) -> list[tuple[Box, str | None]]:
            out: list[tuple[Box, str | None]] = []
            for r in self._regions(camera, frame):
                if r["box"] is None:
                    continue
                text = r["name"]
                if r["label"] is not None:
                    text += f" {r['label']} {r['score']:.2f}"
                out.append((tuple(r["box"]), text))  # type: ignore[arg-type]
            return out

        return overlays

    # --- status -------------------------------------------------------------------------------

    @property
    def streams(self) -> int:
        with self._streams_cond:
            return self._streams

    def status(self) -> dict:
        now = self._clock()
        cameras = []
        for cam in self._cameras:
            name = cam.name
            result = self._results.get(name) or {}
            times = list(self._result_times.get(name, ()))
            fps = 0.0
            if len(times) >= 2 and now - times[-1] < 2.0:
                fps = (len(times) - 1) / max(times[-1] - times[0], 1e-6)
            frame = cam.last_frame
            up = self._registry.get_sample_value("edged_camera_up", {"camera": name})
            entry = {"name": name, "up": bool(up), "fps": round(fps, 2),
                     "frame_age_s": None if frame is None else round(now - frame.mono, 3),
                     "frame": None if frame is None else frame.index,
                     "label": result.get("label"), "score": result.get("score"),
                     "state": None, "state_score": None, "state_since": None,
                     "roi": None if frame is None or frame.box is None else list(frame.box),
                     "captures": self._captures(name) if self._captures is not None else []}
            st = self._state.payload(name) if self._state is not None else None
            if st is not None:
                entry.update(state=st["state"], state_score=st["score"], state_since=st["since"])
            regions = self._regions(name, frame)
            if regions:
                entry["regions"] = regions
                if self._captures is not None:  # the regions' captures, newest first
                    found = [c for r in regions for c in self._captures(subject(name, r["name"]))]
                    entry["captures"] = sorted(found, key=lambda c: c.get("ts") or 0,
                                               reverse=True)[:5]
                if frame is not None:
                    entry["size"] = [frame.image.shape[1], frame.image.shape[0]]
            cameras.append(entry)
        return {"node_id": self._node_id, "stream_fps": self._cfg.stream_fps,
                "streams": self.streams, "max_streams": self._cfg.max_streams,
                "ts": round(time.time(), 3), "cameras": cameras}


def _send(start_response: StartResponse, status: str, content_type: str, body: bytes,
          method: str, extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *(extra or [])])
    return [] if method == "HEAD" else [body]


def _plain(start_response: StartResponse, status: str, text: str,
           extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    return _send(start_response, status, "text/plain; charset=utf-8", text.encode(), "GET",
                 extra)
