"""Live video read through PyAV (FFmpeg's libraries, carried by the `av` wheel).

Why not OpenCV's VideoCapture for streams: it takes FFmpeg options only from one process-wide
environment variable, decodes and converts to BGR every frame (even the ~90 % that `fps` then
drops), and hides packet flags and timestamps. Here each stream gets its own options, decoder
threads and `skip_frame`; packets are looked at before they are decoded, so a camera classified
at 1 fps can decode only its keyframes (about a tenth of the cost); a decoded frame is converted
to a BGR array only if the camera takes it; and every frame has its presentation time (pts) in
the stream's own time base, from which edged knows how far behind the stream it is.

Lag = (wall time since the stream's baseline) - (pts since the first packet), where the
baseline is the earliest arrival seen (wall - pts at its minimum), so a burst of buffered
packets at connect does not read as lag. When the lag at a packet exceeds `max_lag_s`, the
stream jumps back to live: packets are read and dropped without decoding until a keyframe
arrives less than `max_lag_s / 2` behind, and the dropped count rides on the next Picture.
Demuxing without decoding drains a network buffer far faster than real time; a stream that
cannot be caught up within `catch_up_s` raises, and the camera reopens it.

PyAV releases the GIL while it reads packets and decodes, so many cameras use every core.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Literal

import numpy as np

from pydantic import Field

from edged.config.base import _Strict
from edged.capture.sources.failures import SourceFailure
from edged.capture.sources.url import redact


class LiveVideoSettings(_Strict):
    """Settings of the kinds decoded through PyAV: RTSP, HTTP video, realtime video files."""

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


class Picture:
    """A decoded frame, not yet converted: `bgr()` makes the array only for frames taken."""

    __slots__ = ("_frame", "pts", "key", "lag", "lag_dropped", "not_decoded", "spacing",
                 "shape")

    def __init__(self, frame, pts: float, key: bool, lag: float, lag_dropped: int,  # noqa: ANN001
                 not_decoded: int, spacing: float) -> None:
        self._frame = frame
        self.pts = pts  # seconds since the first packet of this open (stream time)
        self.key = key
        self.lag = lag  # seconds behind the stream when its packet was read
        self.lag_dropped = lag_dropped  # packets dropped to catch up, just before this one
        self.not_decoded = not_decoded  # packets skipped by the keyframe policy before it
        self.spacing = spacing  # expected stream time between pictures (for fps sampling)
        self.shape = (frame.height, frame.width, 3)

    def bgr(self) -> np.ndarray:
        frame = self._frame
        if frame.format.name == "yuv420p" and not (frame.width % 2 or frame.height % 2):
            # OpenCV's SIMD conversion: about 0.7 ms at 720p where swscale takes 1.2 ms (both
            # BT.601, as OpenCV's VideoCapture gives; they differ by rounding, <= 3 levels).
            import cv2

            return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
        return frame.to_ndarray(format="bgr24")


class KeyframeRate:
    """The stream's keyframe rate, learnt from keyframe packet times (no decoding needed)."""

    def __init__(self, window: int = 6) -> None:
        self._times: deque[float] = deque(maxlen=window + 1)

    def add(self, t: float) -> None:
        if self._times and t <= self._times[-1]:
            self._times.clear()  # time went back (a loop, a reopen): learn again
        self._times.append(t)

    @property
    def interval(self) -> float:
        """The longest recent keyframe interval in seconds (0 until two keyframes are seen):
        the longest, so that `auto` never promises more keyframes than the stream has."""
        if len(self._times) < 2:
            return 0.0
        ts = list(self._times)
        return max(b - a for a, b in zip(ts, ts[1:]))

    @property
    def rate(self) -> float:
        interval = self.interval
        return 1.0 / interval if interval > 0 else 0.0


def keyframes_only(mode: str, fps: float, keyframe_rate: float) -> bool:
    """Whether to decode only keyframes: always for `keyframes`, never for `all`; for `auto`
    when the camera's fps (0 = every frame) is at or below the learnt keyframe rate."""
    if mode == "keyframes":
        return True
    if mode == "all" or fps <= 0 or keyframe_rate <= 0:
        return False
    return fps <= keyframe_rate * 1.01  # timestamps in 1/90000 s: allow rounding


def av_error_kind(exc: BaseException) -> str:
    """A failure kind for an exception from PyAV (its errors subclass the OS ones)."""
    import av.error

    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return "auth"
    if isinstance(exc, av.error.HTTPNotFoundError):
        return "not_found"
    if isinstance(exc, ConnectionRefusedError):
        return "unreachable"
    if isinstance(exc, TimeoutError | av.error.ExitError):  # ExitError: our read timeout
        return "timeout"
    if isinstance(exc, EOFError | ConnectionResetError | BrokenPipeError):
        return "ended"
    if isinstance(exc, av.error.InvalidDataError | av.error.DecoderNotFoundError):
        return "decode"
    if isinstance(exc, FileNotFoundError):
        return "not_found"
    return "error"


class AvStream:
    """One video stream: open, then `next()` Pictures until it ends (None) or fails (raises).

    `paced` (files in realtime mode) waits until each decoded frame's time comes, as a camera
    would send it; `loop` starts a paced file over at its end with pts still increasing.
    """

    def __init__(self, url: str, *, options: dict[str, str], timeout_s: float, threads: int,
                 decode: str, fps: float, max_lag_s: float, paced: bool = False,
                 loop: bool = False, catch_up_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self._name = redact(url)  # for messages: never the credentials
        self._options = dict(options)
        self._timeout = timeout_s
        self._threads = threads
        self._mode = decode
        self._fps = fps
        self._max_lag = max_lag_s
        self._paced, self._loop = paced, loop
        self._catch_up = catch_up_s if catch_up_s is not None else max(10.0, 3 * max_lag_s)
        self._clock, self._sleep = clock, sleep
        self._container = None
        self._stream = None
        self._packets: Iterator | None = None
        self._pending: deque = deque()  # decoded frames not handed out yet
        self.keyframes = KeyframeRate()
        self._reset_times()

    def _reset_times(self) -> None:
        self._t0: float | None = None  # pts (s) of the first packet
        self._base: float | None = None  # min(wall - rel) seen: the arrival baseline
        self._rel = 0.0  # rel time of the newest packet read
        self._offset = 0.0  # added to rel after a loop, so pts keeps increasing
        self._resync_since: float | None = None
        self._lag_dropped = 0
        self._not_decoded = 0
        # `auto` with an fps starts on keyframes until it knows the keyframe rate: many
        # cameras opening at once must not all decode every frame meanwhile. It switches
        # (either way) only at a keyframe, so no frame is decoded without its references.
        self.skip_nonkey = self._mode == "keyframes" or (self._mode == "auto" and self._fps > 0)
        self.lag = 0.0
        self.episodes = 0  # jumps back to live since open
        self.lag_at_jump = 0.0

    # --- open / close ------------------------------------------------------------------------

    def open(self) -> None:
        import av

        self.close()
        self._reset_times()
        container = av.open(self.url, options=self._options,
                            timeout=(self._timeout, self._timeout))
        try:
            if not container.streams.video:
                raise SourceFailure(f"{self._name}: no video stream", "decode")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            ctx.thread_count = self._threads
            ctx.thread_type = "SLICE"  # frame threads would delay every frame by a frame each
            if self.skip_nonkey:
                ctx.skip_frame = "NONKEY"
        except BaseException:
            container.close()
            raise
        self._container, self._stream = container, stream
        self._packets = container.demux(stream)

    def close(self) -> None:
        self._packets = None
        self._pending.clear()
        if self._container is not None:
            container, self._container, self._stream = self._container, None, None
            container.close()

    # --- properties for stream info ------------------------------------------------------------

    @property
    def fps(self) -> float:
        if self._stream is None:
            return 0.0
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        return float(rate) if rate else 0.0

    @property
    def mode(self) -> str:
        """What is decoded now: keyframes or all."""
        return "keyframes" if self.skip_nonkey else "all"

    @property
    def max_lag_s(self) -> float:
        return self._max_lag

    def lag_now(self) -> float:
        """How far behind the stream edged is at this moment (grows while no packet is read)."""
        if self._base is None:
            return 0.0
        return max(0.0, self._clock() - self._base - self._rel)

    # --- reading -----------------------------------------------------------------------------

    def _seconds(self, ticks: int | None, tb: Fraction) -> float | None:
        return None if ticks is None else float(ticks * tb)

    def next(self) -> Picture | None:
        """The next decoded frame; None at the end of a file (never for a network stream:
        its end raises, so the camera reopens)."""
        while True:
            if self._pending:
                return self._picture(*self._pending.popleft())
            if self._packets is None or self._stream is None:
                raise SourceFailure(f"{self._name}: not open")
            try:
                packet = next(self._packets)
            except StopIteration:
                packet = None
            if packet is None or packet.size == 0:  # the demuxer's end-of-stream packet
                if self._loop and self._paced and self._restart():
                    continue
                return None
            self._take(packet)

    def _take(self, packet) -> None:  # noqa: ANN001
        stream = self._stream
        tb = packet.time_base or stream.time_base
        t = self._seconds(packet.pts if packet.pts is not None else packet.dts, tb)
        if t is None:
            return  # no time: nothing to place it by (parameter sets between frames)
        if self._t0 is None:
            self._t0 = t
        rel = t - self._t0 + self._offset
        if rel < self._rel - 1.0:
            # Time went back (a camera's clock reset, a wrapped timestamp): carry on from the
            # last time instead, so neither pts nor the lag jumps.
            self._offset += self._rel - rel
            rel = self._rel
        key = bool(packet.is_keyframe)
        if key:
            self.keyframes.add(rel)
            if self._mode == "auto":
                self._set_skip(keyframes_only("auto", self._fps, self.keyframes.rate))
        now = self._clock()
        if self._base is None or (not self._paced and now - rel < self._base):
            self._base = now - rel
        self._rel = rel
        lag = max(0.0, now - self._base - rel)
        self.lag = lag
        if self._resync_since is not None:
            if key and lag <= self._max_lag / 2:
                self._resync_since = None  # caught up: decode from this keyframe on
                self._stream.codec_context.flush_buffers()
            else:
                self._lag_dropped += 1
                if now - self._resync_since > self._catch_up:
                    raise SourceFailure(f"{self._name}: cannot catch up with the stream "
                                        f"({lag:.1f}s behind)", "timeout")
                return
        elif lag > self._max_lag:
            self._resync_since = now
            self.lag_at_jump = lag
            self.episodes += 1
            self._lag_dropped += 1 + len(self._pending)
            self._pending.clear()
            return
        if self.skip_nonkey and not key:
            self._not_decoded += 1
            return
        if self._paced:
            self._wait_until(self._base + rel)
        ctx = stream.codec_context
        frames = ctx.decode(packet)
        if not frames and self.skip_nonkey:
            # A decoder that reorders (B-frames) holds a keyframe back until the next packet,
            # a whole GOP late here: drain it now, then let it take packets again.
            frames = ctx.decode(None)
            ctx.flush_buffers()
        for frame in frames:
            ft = self._seconds(frame.pts, frame.time_base or tb)
            frel = rel if ft is None else ft - self._t0 + self._offset
            self._pending.append((frame, frel, key or bool(frame.key_frame), lag))

    def _picture(self, frame, rel: float, key: bool, lag: float) -> Picture:  # noqa: ANN001
        if self.skip_nonkey:
            spacing = self.keyframes.interval or 1.0
        else:
            spacing = 1.0 / self.fps if self.fps > 0 else 0.0
        pic = Picture(frame, rel, key, lag, self._lag_dropped, self._not_decoded, spacing)
        self._lag_dropped = self._not_decoded = 0
        return pic

    def _set_skip(self, skip: bool) -> None:
        if skip != self.skip_nonkey and self._stream is not None:
            self.skip_nonkey = skip
            self._stream.codec_context.skip_frame = "NONKEY" if skip else "DEFAULT"

    def _wait_until(self, due: float) -> None:
        # Bounded by one frame interval in practice; a file's pts gap is at most a few frames.
        delay = due - self._clock()
        if delay > 0:
            self._sleep(min(delay, 1.0))

    def _restart(self) -> bool:
        """A looped file: seek to its start; pts continues from the last one."""
        assert self._container is not None and self._stream is not None
        spacing = 1.0 / self.fps if self.fps > 0 else 0.04
        self._offset = self._rel + spacing
        self._t0 = None
        try:
            self._container.seek(0, stream=self._stream)
        except Exception:  # noqa: BLE001 - an unseekable file just ends
            return False
        self._stream.codec_context.flush_buffers()
        self._packets = self._container.demux(self._stream)
        return True


def stream_for(cfg, url: str, options: dict[str, str], paced: bool = False) -> AvStream:  # noqa: ANN001
    """An AvStream for a camera: edged's `options` with the camera's `ffmpeg_options` over them."""
    return AvStream(url, options={**options, **cfg.ffmpeg_options}, timeout_s=cfg.timeout_s,
                    threads=cfg.decoder_threads, decode=cfg.decode, fps=cfg.fps,
                    max_lag_s=cfg.max_lag_s, paced=paced, loop=paced and cfg.loop)


def open_http_video(cfg, name: str, content_type: str) -> AvStream:  # noqa: ANN001
    """A video over HTTP (not MJPEG), opened through PyAV; `name` is the redacted URL."""
    av = stream_for(cfg, str(cfg.source), {})
    try:
        av.open()
    except SourceFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - PyAV's errors: one line with a kind
        kind = av_error_kind(exc)
        raise SourceFailure(f"{name}: cannot decode content type {content_type or 'unknown'}",
                            kind if kind != "error" else "decode") from None
    return av


def read_http_video(av: AvStream | None, name: str) -> Picture:
    if av is None:
        raise SourceFailure("not open")
    try:
        picture = av.next()
    except SourceFailure:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SourceFailure(f"{name}: read failed", av_error_kind(exc)) from None
    if picture is None:
        raise SourceFailure(f"{name}: stream ended or no frame in time", "ended")
    return picture
