"""One camera: a named capture thread feeding its model's scheduler."""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from edged.config import CameraConfig
from edged.errors import SourceError
from edged.capture.imagedecode import ImageRejected
from edged.capture.decode import target_for
from edged.capture.pacing import FpsGate, LagEpisodes
from edged.capture.regions import Placed, place
from edged.capture.roi import clip_box, upright
from edged.service.metrics import Metrics
from edged.service.ratelimit import EpisodeLog
from edged.inference.scheduler import Part, Scheduler
from edged.capture.sources import Source, make_source
from edged.capture.sources.avstream import Picture
from edged.frame import Frame, subject
from edged.capture.sources.base import IDLE
from edged.capture.sources.failures import KINDS, kind_of
from edged.capture.sources.url import redact

log = logging.getLogger(__name__)
_MAX_TOLD = 1024  # (region, frame size) pairs remembered as reported


def model_input_hw(model) -> tuple[int, int]:  # noqa: ANN001 - a LoadedModel
    """(height, width) of a model's input: what a reduced JPEG decode must keep."""
    return model.spec.height, model.spec.width


def backoff_delays(initial: float, maximum: float, rng: random.Random):  # noqa: ANN201
    """Exponential backoff with full jitter in the upper half: initial, 2x, ... up to max."""
    delay = initial
    while True:
        yield delay * (0.5 + 0.5 * rng.random())
        delay = min(delay * 2, maximum)


# Capture threads of one camera left stuck in a read at once, at most: each holds a source (a
# decoder, a socket). Beyond this the camera is not recovered; the watchdog takes over.
MAX_ABANDONED = 2


class _Countdown:
    """Calls `action` once the last of `n` parts of a frame is handed on (hot folders)."""

    def __init__(self, n: int, action: Callable[[], None]) -> None:
        self._left = n
        self._lock = threading.Lock()
        self._action = action

    def __call__(self) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._action()


class Camera:
    def __init__(self, name: str, cfg: CameraConfig, scheduler: Scheduler, metrics: Metrics,
                 tickets: Iterator[int] | None = None,
                 input_hw: tuple[int, int] | None = None,
                 schedulers: Mapping[str, Scheduler] | None = None,
                 tickets_for: Callable[[str], Iterator[int]] | None = None) -> None:
        """`scheduler` feeds the camera's own model; with regions, `schedulers` maps every
        model the regions use to its scheduler, and `tickets_for(subject)` gives each
        region's publish-order numbers (kept across reloads, like `tickets`); `input_hw` is
        the model's input (height, width), for the JPEG decode scale."""
        self.name = name
        self._input_hw = input_hw  # the model's input (height, width): JPEG decode scale
        self._tickets = tickets  # publish-order numbers, kept across reloads
        self.cfg = cfg
        self._scheduler = scheduler
        own: dict[str, Iterator[int]] = {}
        self._tickets_for = tickets_for or (lambda key: own.setdefault(key, itertools.count()))
        # (config, model -> scheduler), swapped as one by a reload of the regions only, so
        # the capture thread never sees a region without the scheduler it goes to.
        self._wiring: tuple[CameraConfig, dict[str, Scheduler]] = (
            cfg, dict(schedulers) if schedulers else {cfg.model: scheduler})
        self._placed: tuple[tuple, Placed] | None = None  # regions placed for a frame size
        # (region, width, height) already reported as not fitting: one line per region and
        # frame size (a folder of mixed sizes must not log every frame); bounded.
        self._region_told: set[tuple[str, int, int]] = set()
        self._metrics = metrics
        self._stop = threading.Event()
        self._stop_deadline = 0.0
        self._abandoned = False  # stop() gave up waiting for a thread stuck in a read
        self.finished = threading.Event()  # set when a finite source has ended
        self._thread: threading.Thread | None = None
        self._source: Source | None = None
        self._index = 0
        self._episodes = EpisodeLog(log)
        self._drops = EpisodeLog(log)  # images dropped by a live source that stays open
        self.last_frame_mono = 0.0
        # When the capture thread last showed life (or, while it sleeps through a backoff,
        # when it will again): the watchdog tells a wedged thread from a camera being retried.
        self.alive_mono = 0.0
        self.last_frame: Frame | None = None  # the newest frame, for on-demand commands
        self._stuck: list[threading.Thread] = []  # wedged threads left by recover_if_wedged
        self._recover_lock = threading.Lock()
        self._started_mono = 0.0
        self._gave_up = False
        self._lag = LagEpisodes()
        self._lag_log = EpisodeLog(log)
        self._first_mono: float | None = None  # untimed live sources: pts from arrival

    @property
    def live(self) -> bool:
        return self._source is not None and self._source.live

    @property
    def policy(self) -> str:
        if self.cfg.policy:
            return self.cfg.policy
        paced = self._source is not None and self._source.paced
        return "latest" if (self.live or paced) else "every"

    def open(self) -> None:
        """Choose the source kind and open finite sources now, so a file that cannot be read
        stops the daemon before anything else starts. Live sources open in the thread."""
        self._source = make_source(self.cfg)
        self._source.owned_by(self.name)
        self._aim_decode()
        self._source.check()
        if not self._source.live:
            self._source.open()
            log.info("camera %s: %s (%s, %.1f fps)", self.name, self._source.describe(),
                     self._source.key, self._source.fps)

    def start(self) -> None:
        if self._source is None:
            self.open()
        for scheduler in self._wiring[1].values():
            scheduler.add_camera(self.name, self.policy, self._tickets,
                                 max_age_s=self.cfg.max_age_ms / 1000)
        # So dashboards see 0, not "no data", before the first frame or failure.
        self._metrics.declare_camera(self.name, KINDS)
        started = time.monotonic()
        self._metrics.last_frame_age.labels(self.name).set_function(
            lambda: time.monotonic() - (self.last_frame_mono or started))
        self._metrics.camera_lag.labels(self.name).set_function(self.lag_s)
        self._started_mono = time.monotonic()
        self._spawn()

    def _spawn(self) -> None:
        # Each capture thread gets its source and its own stop event: an abandoned thread
        # that wakes up later sees its event set and leaves without touching the new one's.
        assert self._source is not None
        self._thread = threading.Thread(target=self._run, args=(self._source, self._stop),
                                        name=f"camera-{self.name}", daemon=True)
        self._thread.start()

    def recover_if_wedged(self, now: float | None = None) -> bool:
        """A live source stuck in one read for longer than timeout_s (its own timeouts did not
        fire): abandon that thread (it closes its source if the read ever returns) and reopen
        the source in a new one, instead of letting the watchdog restart the whole daemon.
        At most MAX_ABANDONED stuck threads per camera; True when it recovered now."""
        with self._recover_lock:
            thread = self._thread
            if thread is None or not thread.is_alive() or not self.live or self._stop.is_set():
                return False
            now = time.monotonic() if now is None else now
            stuck = now - max(self.alive_mono, self._started_mono)
            if stuck <= self.cfg.timeout_s:
                return False
            self._stuck = [t for t in self._stuck if t.is_alive()]
            if len(self._stuck) >= MAX_ABANDONED:
                if not self._gave_up:
                    log.error("camera %s: capture stuck for %.1fs and %d earlier capture threads "
                              "still are; not reopening again (the watchdog decides)",
                              self.name, stuck, len(self._stuck))
                self._gave_up = True
                return False
            self._gave_up = False
            self._stop.set()  # the old thread's own event: it leaves when its read returns
            self._stuck.append(thread)
            self._stop = threading.Event()
            self._metrics.camera_up.labels(self.name).set(0)
            self._metrics.source_failures.labels(self.name, "wedged").inc()
            self._metrics.camera_reconnects.labels(self.name, "wedged").inc()
            log.error("camera %s: capture stuck in one read for %.1fs (timeout %gs) [wedged]; "
                      "abandoning that thread and reopening the source (%d stuck of at most %d)",
                      self.name, stuck, self.cfg.timeout_s, len(self._stuck), MAX_ABANDONED)
            self._source = make_source(self.cfg)
            self._source.owned_by(self.name)
            self._aim_decode()
            self._beat()
            self._spawn()
            return True

    def use_scheduler(self, scheduler: Scheduler,
                      input_hw: tuple[int, int] | None = None) -> None:
        """Feed another model's workers from the next frame on (a reload swapped the model);
        the lane keeps every setting, max_age_ms included; `input_hw`: the new model's input
        (height, width), for the JPEG decode scale."""
        self.use_schedulers({self.cfg.model: scheduler})
        if input_hw is not None:
            self.use_input(input_hw)

    def use_input(self, input_hw: tuple[int, int]) -> None:
        """The (new) model's input (height, width): what a reduced JPEG decode must keep."""
        self._input_hw = input_hw
        self._aim_decode()

    def _aim_decode(self) -> None:
        if self._source is not None and self._input_hw is not None:
            # With regions, in full: their boxes are in full-size pixels, and each region is
            # a part of the frame that needs the headroom of the whole (as with a roi).
            self._source.decode_target.hw = None if self.cfg.regions else target_for(
                self._input_hw, self.cfg.rotate, self.cfg.roi)

    def lag_s(self) -> float:
        """How far behind its stream the camera is now (0 for sources without timestamps)."""
        src = self._source
        stream = src.stream if src is not None and src.timed else None
        return stream.lag_now() if stream is not None else 0.0

    def lagging(self) -> str | None:
        """Why the camera counts as degraded for lag, or None."""
        if not self._lag.active(time.monotonic()):
            return None
        src = self._source
        limit = (src.stream.max_lag_s if src is not None and src.stream is not None
                 else getattr(self.cfg, "max_lag_s", 0.0))  # between reconnects: no stream
        return (f"lagging: was {self._lag.worst:.1f}s behind the stream (max_lag_s "
                f"{limit:g}); jumped back to live")

    @property
    def schedulers(self) -> dict[str, Scheduler]:
        """Model name -> the scheduler this camera's frames (or regions) go to."""
        return dict(self._wiring[1])

    def use_schedulers(self, schedulers: Mapping[str, Scheduler],
                       cfg: CameraConfig | None = None) -> list[Scheduler]:
        """Feed these schedulers from the next frame on, with `cfg` when only its regions
        changed (a reload that keeps the capture running); returns the schedulers no longer
        fed, whose lanes the caller removes once they are drained."""
        cfg = cfg or self.cfg
        old = self._wiring[1]
        for scheduler in schedulers.values():
            if scheduler not in old.values():
                scheduler.add_camera(self.name, self.policy, self._tickets,
                                     max_age_s=cfg.max_age_ms / 1000)
        self._wiring = (cfg, dict(schedulers))
        self.cfg = cfg
        self._scheduler = schedulers.get(cfg.model, next(iter(schedulers.values())))
        self._aim_decode()  # regions added or removed change the decode scale
        return [s for s in old.values() if s not in schedulers.values()]

    def request_stop(self, timeout: float = 2.0) -> None:
        """Signal the capture thread; stop() then waits until `timeout` after this call, so
        many cameras signalled together are awaited together, not one after the other."""
        with self._recover_lock:  # not while recover_if_wedged swaps the thread
            if not self._stop.is_set():
                self._stop_deadline = time.monotonic() + timeout
            self._stop.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop capturing and close the source; idempotent."""
        self.request_stop(timeout)
        if self._abandoned:
            return  # the thread still owns the source and closes it when its read returns
        if self._thread is not None:
            self._thread.join(max(0.0, self._stop_deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("camera %s: capture thread did not stop within %.1fs", self.name,
                            timeout)
                # It is inside a read bounded by timeout_s; closing the capture under it could
                # crash the decoder. The thread closes its source itself when the read returns.
                self._thread = None
                self._abandoned = True
                return
            self._thread = None
        if self._source is not None:
            self._source.close()

    def _run(self, src: Source, stop: threading.Event) -> None:
        try:
            if src.live:
                self._run_live(src, stop)
            else:
                self._run_finite(src, stop)
        except Exception:  # a bug must not pass silently, nor kill the daemon unseen
            log.exception("camera %s: capture failed", self.name)
        finally:
            if stop is self._stop:  # not for a thread abandoned by recover_if_wedged
                self._metrics.camera_up.labels(self.name).set(0)
                self.finished.set()

    def _run_finite(self, src: Source, stop: threading.Event) -> None:
        if src.timed:  # a realtime file through PyAV: paced by its own timestamps
            self._metrics.camera_up.labels(self.name).set(1)
            gate = FpsGate(self.cfg.fps)
            errors = 0
            while not stop.is_set():
                self._beat()
                try:
                    picture = src.read_picture()
                except SourceError as exc:  # a corrupt packet: count it, read on
                    self._metrics.frames_dropped.labels(self.name, "decode").inc()
                    self._episodes.failure("camera %s: %s", self.name, exc)
                    self._index += 1
                    errors += 1
                    if errors >= 100:  # a file that only fails: end it, not a busy loop
                        log.error("camera %s: %d read errors in a row; ending", self.name,
                                  errors)
                        return
                    continue
                errors = 0
                if picture is None:
                    log.info("camera %s: end of source after %d frames", self.name,
                             self._index)
                    return
                if self._index == 0:
                    self._report_stream(src, picture)
                self._offer(src, stop, picture, gate)
            return
        interval = 0.0
        if src.paced and src.fps > 0:
            interval = 1.0 / src.fps
        if self.cfg.fps > 0:
            interval = max(interval, 1.0 / self.cfg.fps)
        self._metrics.camera_up.labels(self.name).set(1)
        due = time.monotonic()
        while not stop.is_set():
            self._beat()
            try:
                item = src.read()
            except SourceError as exc:
                reason = exc.reason if isinstance(exc, ImageRejected) else "decode"
                self._metrics.frames_dropped.labels(self.name, reason).inc()
                if not getattr(exc, "logged", False):
                    self._episodes.failure("camera %s: %s", self.name, exc)
                self._index += 1
                continue
            if item is IDLE:  # a hot folder with nothing new yet
                continue
            if item is None:
                log.info("camera %s: end of source after %d frames", self.name, self._index)
                return
            if self._index == 0:
                self._report_stream(src, item[0])
            if interval:
                # Pace like a camera; after a stall, restart the clock instead of bursting.
                due = max(due + interval, time.monotonic() - interval)
                self._beat(max(0.0, due - time.monotonic()))
                if stop.wait(max(0.0, due - time.monotonic())):
                    return
            self._submit(*item)

    def _run_live(self, src: Source, stop: threading.Event) -> None:
        """Open, drain the stream into the scheduler, and on any failure close, classify,
        back off (with jitter) and reopen, forever. One thread, one source object: nothing
        accumulates across reconnects."""
        delays = backoff_delays(self.cfg.reconnect.initial_s, self.cfg.reconnect.max_s,
                                random.Random())
        while not stop.is_set():
            try:
                self._beat()
                src.open()
                shape = None
                gate = FpsGate(self.cfg.fps)
                self._first_mono = None
                while not stop.is_set():
                    try:
                        if src.timed:  # video through PyAV: converted only if taken
                            image, name = src.read_picture(), None
                        else:
                            image, name = src.read()  # type: ignore[misc]
                    except ImageRejected as exc:  # one bad image: count it, keep the stream
                        if stop.is_set():
                            break
                        self._beat()
                        self._metrics.frames_dropped.labels(self.name, exc.reason).inc()
                        self._drops.failure("camera %s: %s [%s]", self.name, redact(str(exc)),
                                            exc.reason)
                        continue
                    if stop.is_set():  # stopped, or abandoned while this read was stuck
                        break
                    self._beat()
                    self._drops.recovered("camera %s: images decode again", self.name)
                    if image.shape != shape:  # first frame after (re)open, or a new size
                        if shape is None:
                            delays = backoff_delays(self.cfg.reconnect.initial_s,
                                                    self.cfg.reconnect.max_s, random.Random())
                            self._metrics.camera_up.labels(self.name).set(1)
                            self._episodes.recovered("camera %s: source is back", self.name)
                        shape = image.shape
                        self._report_stream(src, image)
                    if isinstance(image, Picture):
                        self._offer(src, stop, image, gate)
                        continue
                    now = time.monotonic()
                    if self._first_mono is None:
                        self._first_mono = now
                    if not gate.accept(now):
                        self._index += 1
                        self.last_frame_mono = now
                        self._metrics.frames_captured.labels(self.name).inc()
                        self._metrics.frames_dropped.labels(self.name, "fps").inc()
                        continue
                    self._submit(image, name, pts=now - self._first_mono)
            except Exception as exc:  # noqa: BLE001 - any failure: classify, back off, reopen
                if stop.is_set():
                    break
                kind = kind_of(exc)
                self._metrics.camera_up.labels(self.name).set(0)
                self._metrics.source_errors.labels(self.name).inc()
                self._metrics.source_failures.labels(self.name, kind).inc()
                self._metrics.camera_reconnects.labels(self.name, kind).inc()
                src.close()
                delay = next(delays)
                # Sources build messages from describe(); redact() again for foreign errors.
                reason = str(exc) if isinstance(exc, SourceError) else (
                    f"{src.describe()}: {type(exc).__name__}: {exc}")
                self._episodes.failure("camera %s: %s [%s]; retrying in %.1fs", self.name,
                                       redact(reason), kind, delay)
                self._beat(delay)
                stop.wait(delay)
        src.close()

    def _offer(self, src: Source, stop: threading.Event, picture: Picture,
               gate: FpsGate) -> None:
        """A decoded frame of a timed stream: count what was skipped before it, jump back to
        live if it was too late, sample by stream time, and only then convert it."""
        if stop.is_set():  # read while a stop came (a paced wait): not submitted
            return
        now = time.monotonic()
        captured = self._metrics.frames_captured.labels(self.name)
        skipped = picture.not_decoded  # keyframe policy: never decoded, as if sampled out
        if skipped:
            self._index += skipped
            captured.inc(skipped)
            self._metrics.frames_dropped.labels(self.name, "fps").inc(skipped)
        if picture.lag_dropped:
            queued = self._scheduler.drop(self.name)
            dropped = picture.lag_dropped + queued
            self._index += picture.lag_dropped
            captured.inc(picture.lag_dropped)
            self._metrics.frames_dropped.labels(self.name, "lag").inc(dropped)
            worst = getattr(src.stream, "lag_at_jump", src.stream.max_lag_s)
            if self._lag.jumped(now, worst):
                self._lag_log.failure("camera %s: %.1fs behind the stream (max_lag_s %g); "
                                      "dropped %d frames and jumped back to live", self.name,
                                      worst, src.stream.max_lag_s, dropped)
        elif self._lag.ended(now):
            self._lag_log.recovered("camera %s: keeping up with the stream again", self.name)
        if not gate.accept(picture.pts, picture.spacing):
            self._index += 1
            self.last_frame_mono = now
            captured.inc()
            self._metrics.frames_dropped.labels(self.name, "fps").inc()
            return
        self._submit(picture.bgr(), None, pts=picture.pts)

    def _beat(self, busy_s: float = 0.0) -> None:
        self.alive_mono = time.monotonic() + busy_s

    def _report_stream(self, src: Source, image) -> None:  # noqa: ANN001
        height, width = src.decode_target.full_hw or image.shape[:2]  # as sent, not as decoded
        fps = src.fps
        source = redact(src.describe())
        log.info("camera %s: %s up: %dx%d at %.1f fps (%s)", self.name, source, width,
                 height, fps, src.key)
        self._metrics.stream_info.labels(self.name).info({
            "kind": src.key, "source": source, "width": str(width),
            "height": str(height), "fps": f"{fps:.2f}"})

    def _submit(self, image, name: str | None, pts: float | None = None) -> None:  # noqa: ANN001
        now = time.monotonic()
        cfg, schedulers = self._wiring
        if cfg.regions:
            self._submit_regions(image, name, now, cfg, schedulers, pts)
            return
        box = None
        if cfg.rotate or cfg.flip != "none" or cfg.roi is not None:
            try:
                image = upright(image, cfg.rotate, cfg.flip)
                if cfg.roi is not None:
                    box = clip_box(cfg.roi, image.shape[1], image.shape[0])
            except ValueError as exc:
                self._index += 1
                self.last_frame_mono = now
                self._metrics.frames_captured.labels(self.name).inc()
                self._metrics.frames_dropped.labels(self.name, "bad_frame").inc()
                self._episodes.failure("camera %s: %s", self.name, exc)
                return
        done = getattr(self._source, "done", None)
        on_done = (lambda: done(name)) if done is not None and name is not None else None
        frame = Frame(image=image, index=self._index, ts=time.time(), mono=now, name=name,
                      on_done=on_done, box=box, pts=pts)
        self._index += 1
        self.last_frame_mono = now
        self.last_frame = frame
        self._metrics.frames_captured.labels(self.name).inc()
        replaced = self._scheduler.put(self.name, frame, self._stop.is_set)
        if replaced is not None and replaced is not frame:
            self._metrics.frames_dropped.labels(self.name, "replaced").inc()

    # --- regions ------------------------------------------------------------------------------

    def _placed_for(self, cfg: CameraConfig, width: int, height: int) -> Placed:
        """The regions' boxes for this frame size, computed once per size and config."""
        cached = self._placed
        if cached is None or cached[0][0] is not cfg or cached[0][1:] != (width, height):
            if cached is not None and cached[0][0] is not cfg:
                self._region_told.clear()  # new regions (a reload): tell afresh
            cached = self._placed = ((cfg, width, height), place(cfg.regions, width, height))
        return cached[1]

    def _submit_regions(self, image, name: str | None, now: float,  # noqa: ANN001
                        cfg: CameraConfig, schedulers: Mapping[str, Scheduler],
                        pts: float | None = None) -> None:
        """One decoded frame, one group per model: a Frame per region sharing the image
        (its own box, a view at inference), all with the same capture time."""
        if cfg.rotate or cfg.flip != "none":
            image = upright(image, cfg.rotate, cfg.flip)
        height, width = image.shape[:2]
        placed = self._placed_for(cfg, width, height)
        index, ts = self._index, time.time()
        self._index += 1
        self.last_frame_mono = now
        self._metrics.frames_captured.labels(self.name).inc()
        for region, reason in placed.errors.items():
            # Counted per frame; logged the first time a frame size shows it.
            self._metrics.frames_dropped.labels(self.name, "region_outside").inc()
            told = (region, width, height)
            if told not in self._region_told:
                if len(self._region_told) >= _MAX_TOLD:
                    self._region_told.clear()
                self._region_told.add(told)
                log.warning("camera %s: region %s: %s; skipped while frames have this size "
                            "(edged_frames_dropped_total{reason=\"region_outside\"})",
                            self.name, region, reason)
        done = getattr(self._source, "done", None)
        on_done = None
        if done is not None and name is not None and placed.boxes:
            on_done = _Countdown(len(placed.boxes), lambda: done(name))
        groups: dict[str, list[Part]] = {}
        for region, box in placed.boxes.items():
            rcfg = cfg.regions[region]
            key = subject(self.name, region)
            frame = Frame(image=image, index=index, ts=ts, mono=now, name=name,
                          on_done=on_done, box=box, pts=pts, region_name=region)
            groups.setdefault(rcfg.model or cfg.model, []).append(
                Part(frame, key, self._tickets_for(key), rcfg.top_k))
        self.last_frame = Frame(image=image, index=index, ts=ts, mono=now, name=name, pts=pts)
        replaced_any = False
        for model, parts in groups.items():
            scheduler = schedulers.get(model)
            if scheduler is None:
                continue  # cannot happen: the wiring holds every region's model
            replaced = scheduler.put(self.name, parts, self._stop.is_set)
            replaced_any |= replaced is not None and replaced is not parts
        if replaced_any:
            self._metrics.frames_dropped.labels(self.name, "replaced").inc()

