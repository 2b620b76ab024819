"""Evidence captures: the frames that matter (rejects, alarms, uncertain ones, a sample) kept on
the box as JPEG + JSON sidecar in class folders, bounded by size, age and free space.

Layout under the capture folder (default captures/ under the state directory):

    {camera}/{label}/{time}_{seq}.jpg        what the model classified (the ROI when one is set)
    {camera}/{label}/{time}_{seq}.json       the sidecar: the result and why it was kept
    .full/{camera}/{label}/{time}_{seq}.jpg  the whole frame, only when the camera has a ROI

Class folders hold only classified images, so `edged classify --eval`, Keras'
image_dataset_from_directory and torchvision's ImageFolder (which walk subfolders too) read
`{camera}/` as it is. `{time}` is the frame's capture time in UTC, `YYYYmmddTHHMMSS.mmmZ`.

An extension: it joins "result published" and "state changed" (both on the publisher
thread), and `on_result` does only rule checks, rate caps and a hand-over of references to a
bounded queue. Encoding, writing, retention and the announcement on
`{prefix}/{node_id}/{camera}/capture` happen on the writer thread, within a CPU budget
(`capture.writer_cpu`); a frame that does not fit the queue is dropped and counted. Each
camera's rules are read from the camera set at each result, so a reload's new rules apply at
once.
"""

from __future__ import annotations

import bisect
import calendar
import json
import logging
import os
import random
import re
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from edged.app.events import Events, ResultPublished, StateChanged
from edged.config import CaptureConfig, CaptureRulesConfig
from edged.frame import Frame, split_subject
from edged.mqtt.contract import capture_message, capture_payload, object_id
from edged.service.ratelimit import EpisodeLog

log = logging.getLogger(__name__)

DEFAULT_DIR = "/var/lib/edged"
FULL_DIR = ".full"  # whole frames of ROI cameras, outside the class folders
RULES = ("labels", "states", "below_score", "sample")  # also the order rules are charged in
DROP_REASONS = ("rate", "queue_full", "paused", "error", "stopping")
LATEST = 5  # captures per camera kept for the live view
_STEM = re.compile(r"^(\d{8}T\d{6})\.(\d{3})Z_(\d+)$")
_AGE_CHECK_S = 60.0  # how often the writer applies retention by age while idle


# --- pure functions --------------------------------------------------------------------------

def capture_root(cfg: CaptureConfig, environ: Mapping[str, str] | None = None) -> str:
    """The configured folder, else $STATE_DIRECTORY/captures (systemd), else /var/lib/edged."""
    if cfg.dir:
        return cfg.dir
    env = os.environ if environ is None else environ
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    return os.path.join(state_dir or DEFAULT_DIR, "captures")


def active_rules(rules: CaptureRulesConfig) -> list[str]:
    """The rules that are switched on, in charging order."""
    on = {"labels": bool(rules.labels), "states": bool(rules.states),
          "below_score": rules.below_score > 0, "sample": rules.sample > 0}
    return [rule for rule in RULES if on[rule]]


def matched_rules(rules: CaptureRulesConfig, label: str, score: float, state: str | None,
                  draw: float) -> tuple[str, ...]:
    """The rules a result meets, in charging order. `state` is the state this result changed
    the camera to (None: no change); `draw` a uniform random number in [0, 1)."""
    out = []
    if label in rules.labels:
        out.append("labels")
    if state is not None and state in rules.states:
        out.append("states")
    if rules.below_score > 0 and score < rules.below_score:
        out.append("below_score")
    if rules.sample > 0 and draw < rules.sample:
        out.append("sample")
    return tuple(out)


BURST_S = 10.0  # a rule's cap lets this many seconds' worth through at once


@dataclass
class TokenBucket:
    """A rate cap: `per_minute` a minute, up to `BURST_S` seconds' worth (at least one) at
    once, so that a burst of matching frames (a run of rejects, the start) stays small."""

    per_minute: float
    tokens: float = -1.0  # < 0: full on first use
    last: float | None = None

    @property
    def capacity(self) -> float:
        return max(1.0, self.per_minute * BURST_S / 60.0)

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens = self.capacity
        elif self.last is not None:
            self.tokens = min(self.capacity,
                              self.tokens + (now - self.last) * self.per_minute / 60.0)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def charge(buckets: Mapping[str, TokenBucket], rules: Sequence[str], now: float) -> str | None:
    """The first of `rules` whose cap still has room (that one is charged), else None."""
    for rule in rules:
        if buckets[rule].take(now):
            return rule
    return None


def unknown_labels(rules: CaptureRulesConfig, labels: Sequence[str]) -> list[str]:
    """Labels and states of the rules that the model cannot give (they never match)."""
    known = set(labels)
    out = [label for label in rules.labels if label not in known]
    out += [s for s in rules.states if s not in known | {"unknown"} and s not in out]
    return out


def folder_name(label: str) -> str:
    """A label as one safe folder name: no path separators, not hidden, never empty."""
    name = label.replace("/", "_").replace("\\", "_").replace("\0", "_").strip()
    return name if name and not name.startswith(".") else f"_{name}"


def capture_stem(ts: float, seq: int) -> str:
    """`{time}_{seq}`: the capture time in UTC to the millisecond, then the result's seq."""
    ms = int(round(ts * 1000))
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z_{seq}"


def stem_time(stem: str) -> float | None:
    """The capture time in a stem made by capture_stem, else None."""
    m = _STEM.match(stem)
    if m is None:
        return None
    return calendar.timegm(time.strptime(m.group(1), "%Y%m%dT%H%M%S")) + int(m.group(2)) / 1000


@dataclass(frozen=True)
class Entry:
    """One capture on disk: its files (image, sidecar, maybe the whole frame) and their size."""

    ts: float
    camera: str
    label: str
    stem: str
    paths: tuple[str, ...]
    bytes: int

    @property
    def image(self) -> str:
        return self.paths[0]


def retention_plan(entries: Sequence[Entry], max_bytes: int, max_age_s: float, now: float,
                   reserve: int = 0, total: int | None = None) -> list[tuple[Entry, str]]:
    """What to delete, oldest first, with why: everything older than `max_age_s` ("age"),
    then the oldest while the rest plus `reserve` bytes (about to be written) exceed
    `max_bytes` ("size"). `entries` must be sorted by time; `total` is their bytes (given, it
    saves a pass: the writer keeps it)."""
    plan: list[tuple[Entry, str]] = []
    total = sum(e.bytes for e in entries) if total is None else total
    for e in entries:
        if e.ts < now - max_age_s:
            reason = "age"
        elif total + reserve > max_bytes:
            reason = "size"
        else:
            break
        plan.append((e, reason))
        total -= e.bytes
    return plan


def scan(root: str) -> tuple[list[Entry], list[str]]:
    """Captures under `root` sorted by time, and leftover temporary files of an interrupted
    write. Anything that is not a capture is left alone (and not counted). Files that vanish
    while scanning (the daemon's retention) are skipped."""
    entries: list[Entry] = []
    temps: list[str] = []
    for cam in _dirs(root):
        for lab in _dirs(cam.path):
            files: dict[str, list[tuple[str, int]]] = {}
            for f in _listing(lab.path):
                if f.name.startswith(".") and f.name.endswith(".tmp"):
                    temps.append(f.path)
                    continue
                stem, ext = os.path.splitext(f.name)
                size = _size(f.path) if ext in (".jpg", ".json") else None
                if size is not None:
                    files.setdefault(stem, []).append((f.path, size))
            for stem, found in files.items():
                ts = stem_time(stem)
                if ts is None:
                    continue
                found.sort(key=lambda f: f[0].endswith(".json"))  # the image first
                full = os.path.join(root, FULL_DIR, cam.name, lab.name, stem + ".jpg")
                full_size = _size(full)
                if full_size is not None:
                    found.append((full, full_size))
                entries.append(Entry(ts, cam.name, lab.name, stem, tuple(p for p, _ in found),
                                     sum(n for _, n in found)))
    for dirpath, _dirs_, names in os.walk(os.path.join(root, FULL_DIR)):
        temps += [os.path.join(dirpath, n) for n in names
                  if n.startswith(".") and n.endswith(".tmp")]
    entries.sort(key=lambda e: (e.ts, e.camera, e.stem))
    return entries, temps


def _listing(path: str) -> list[os.DirEntry]:
    try:
        return sorted(os.scandir(path), key=lambda d: d.name)
    except OSError:
        return []


def _dirs(path: str) -> list[os.DirEntry]:
    out = []
    for d in _listing(path):
        try:
            if not d.name.startswith(".") and d.is_dir():
                out.append(d)
        except OSError:
            pass
    return out


def _size(path: str) -> int | None:
    """A regular file's size, else None (absent, vanished, or not a file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def delete_entry(entry: Entry) -> int:
    """Remove a capture's files (and folders left empty); returns the bytes freed."""
    for path in entry.paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    for path in entry.paths:
        try:
            os.rmdir(os.path.dirname(path))  # only succeeds when empty
        except OSError:
            pass
    return entry.bytes


def rest_after(spent_s: float, cpu_share: float, longest_s: float = 1.0) -> float:
    """How long the writer rests after work that took `spent_s` of CPU, to use at most
    `cpu_share` of one core (1 or more: no rest)."""
    if not 0 < cpu_share < 1 or spent_s <= 0:
        return 0.0
    return min(spent_s * (1.0 / cpu_share - 1.0), longest_s)


def free_bytes(path: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of `path`."""
    return free_space(path)[0]


def free_space(path: str) -> tuple[int, int]:
    """(free bytes for an unprivileged writer, block size) of the filesystem of `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize, st.f_frsize or 4096


def disk_need(sizes: Iterable[int], block: int, new_dirs: int = 3) -> int:
    """Space files of these sizes take: whole blocks each, plus a block per folder that may
    have to be made (camera, label, and the .full one)."""
    return sum(-(-n // block) * block for n in sizes) + new_dirs * block


def _write_atomic(path: str, data: bytes) -> None:
    """Readers never see half a file: write a hidden temporary, then rename it."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


# --- metrics -----------------------------------------------------------------------------------

class CaptureMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.written = Counter("edged_captures_total", "Captures written, by camera and the "
                               "rule charged (labels, states, below_score, sample).",
                               ["camera", "rule"], registry=r)
        self.dropped = Counter(
            "edged_captures_dropped_total", "Frames a capture rule matched that were not "
            "written, by reason (rate: over max_per_minute; queue_full: the writer fell "
            "behind; paused: free space below min_free_bytes; error: encoding or writing "
            "failed; stopping: still queued at shutdown).", ["camera", "rule", "reason"],
            registry=r)
        self.pruned = Counter("edged_captures_pruned_total", "Captures deleted by retention, by "
                              "reason (size, age).", ["reason"], registry=r)
        self.stored = Gauge("edged_captures_stored", "Captures on disk.", registry=r)
        self.bytes = Gauge("edged_capture_bytes", "Bytes of the captures on disk.", registry=r)
        self.queue_bytes = Gauge("edged_capture_queue_bytes", "Bytes of frames waiting for the "
                                 "capture writer.", registry=r)
        self.paused = Gauge("edged_capture_paused", "1 while capturing is paused: writing would "
                            "leave less than min_free_bytes free.", registry=r)
        self.unknown_labels = Gauge("edged_capture_unknown_labels", "Labels and states in a "
                                    "camera's capture rules that its model does not have (they "
                                    "never match).", ["camera"], registry=r)
        for reason in ("size", "age"):
            self.pruned.labels(reason)


# --- the component -------------------------------------------------------------------------------

@dataclass
class _Camera:
    rules: CaptureRulesConfig
    buckets: dict[str, TokenBucket]
    latest: deque = field(default_factory=lambda: deque(maxlen=LATEST))


@dataclass
class _Item:
    camera: str
    rule: str
    rules: tuple[str, ...]
    state: str | None
    frame: Frame
    result: dict
    nbytes: int


class Capturer:
    """Rules and caps on the publisher thread (`on_result`); one named writer thread does the
    rest. start()/stop() are the extension lifecycle; stop() leaves the events, then writes
    what is queued until `drain_timeout_s` and drops (and counts) the rest.

    `rules_of(camera)` gives a camera's current rules (None: not capturing), `labels_of` its
    model's labels (rules naming others are reported once and never match)."""

    def __init__(self, cfg: CaptureConfig,
                 rules_of: Callable[[str], CaptureRulesConfig | None],
                 metrics: CaptureMetrics, link=None,  # noqa: ANN001 - MqttLink; None: silent
                 events: Events | None = None,
                 labels_of: Callable[[str], Sequence[str]] = lambda _camera: (),
                 root: str | None = None, environ: Mapping[str, str] | None = None,
                 drain_timeout_s: float = 10.0, cpu_share: float | None = None,
                 clock: Callable[[], float] = time.time,
                 rand: Callable[[], float] | None = None) -> None:
        self._cfg = cfg
        self.root = root if root is not None else capture_root(cfg, environ)
        self._rules_of = rules_of
        self._labels_of = labels_of
        self.metrics = metrics
        self._link = link
        self._events = events
        self._drain_timeout = drain_timeout_s
        self._cpu_share = cfg.writer_cpu if cpu_share is None else cpu_share
        self._clock = clock
        self._rand = rand if rand is not None else random.Random().random
        self._cameras: dict[str, _Camera] = {}
        self._changed: dict[str, tuple[object, str]] = {}  # camera -> (seq, state it changed to)
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._queued = 0
        self._busy = False  # the writer holds an item it took off the queue
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Writer-thread state.
        self._entries: list[Entry] = []
        self._keys: list[tuple[float, str, str]] = []  # sort keys of _entries, for bisect
        self._total = 0
        self._next_age_check = 0.0
        self._ready = False  # the root exists and is writable
        self._paused = False  # below the free-space floor
        self._disk_log = EpisodeLog(log)
        self._pause_log = EpisodeLog(log, every_s=600.0)

    # --- events (publisher thread) ---------------------------------------------------------------

    def _on_state(self, event: StateChanged) -> None:
        # Emitted by the state tracker while it handles the same ResultPublished, which reaches
        # this extension after it (it subscribed first); the seq makes sure they belong together.
        # Keyed by subject: a camera, or camera/region (each region has its own rules).
        self._changed[event.subject] = (event.result.get("seq"), event.state)

    def _on_published(self, event: ResultPublished) -> None:
        change = self._changed.pop(event.subject, None)
        state = change[1] if change is not None and change[0] == event.result.get("seq") \
            else None
        self.on_result(event.subject, event.frame, event.result, state)

    def _camera(self, camera: str) -> _Camera | None:
        rules = self._rules_of(camera)
        if rules is None or not rules.enabled:
            return None
        cam = self._cameras.get(camera)
        if cam is None or cam.rules is not rules:  # new, or new rules from a reload
            labels = list(self._labels_of(camera))
            unknown = unknown_labels(rules, labels) if labels else []
            self.metrics.unknown_labels.labels(camera).set(len(unknown))
            if unknown:
                log.warning("capture: camera %s: %s not a label of its model; such rules "
                            "never match (labels: %s)", camera, ", ".join(map(repr, unknown)),
                            ", ".join(labels))
            cam = _Camera(rules, {rule: TokenBucket(rules.max_per_minute) for rule in RULES},
                          cam.latest if cam is not None else deque(maxlen=LATEST))
            for rule in active_rules(rules):  # known label values exported at 0
                self.metrics.written.labels(camera, rule)
                for reason in DROP_REASONS:
                    self.metrics.dropped.labels(camera, rule, reason)
            self._cameras[camera] = cam
        return cam

    def on_result(self, camera: str, frame: Frame | None, result: dict,
                  state_changed_to: str | None = None) -> str | None:
        """One published result and its frame (and the state it changed the camera to, if
        any); returns the rule charged when the frame was queued for writing (None: no rule
        matched, or it was dropped and counted). Quick: the frame is not copied."""
        cam = self._camera(camera)
        if cam is None or frame is None:
            return None
        rules = cam.rules
        draw = self._rand() if rules.sample > 0 else 1.0
        matched = matched_rules(rules, result["label"], result["score"], state_changed_to, draw)
        if not matched:
            return None
        rule = charge(cam.buckets, matched, self._clock())
        if rule is None:
            self.metrics.dropped.labels(camera, matched[0], "rate").inc()
            return None
        item = _Item(camera, rule, matched, state_changed_to, frame, result,
                     int(frame.image.nbytes))
        with self._cond:
            if self._stop.is_set():
                why = "stopping"
            elif self._queued + item.nbytes > self._cfg.queue_bytes:
                why = "queue_full"
            else:
                why = ""
                self._queue.append(item)
                self._queued += item.nbytes
                self._cond.notify()
        if why:
            self.metrics.dropped.labels(camera, rule, why).inc()
            return None
        return rule

    def latest(self, camera: str) -> list[dict]:
        """The camera's newest captures, newest first: label, score, rule, ts, seq, image."""
        cam = self._cameras.get(camera)
        return list(reversed(cam.latest)) if cam is not None else []

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)
        self._thread.start()
        if self._events is not None:
            self._events.subscribe(StateChanged, self._on_state)
            self._events.subscribe(ResultPublished, self._on_published)
        log.info("capture: into %s", self.root)

    def stop(self) -> None:
        if self._events is not None:
            self._events.unsubscribe(ResultPublished, self._on_published)
            self._events.unsubscribe(StateChanged, self._on_state)
        if self._thread is None:
            return
        with self._cond:
            self._stop.set()
            self._cond.notify_all()
        self._thread.join(self._drain_timeout + 2.0)
        if self._thread.is_alive():
            log.warning("capture: writer did not stop within %.1fs", self._drain_timeout + 2.0)
        self._thread = None
        with self._cond:  # whatever the writer did not get to
            left, self._queue = list(self._queue), deque()
            self._queued = 0
        for item in left:
            self.metrics.dropped.labels(item.camera, item.rule, "stopping").inc()
        if left:
            log.warning("capture: %d queued frame(s) not written at stop", len(left))
        self.metrics.queue_bytes.set(0)

    def idle(self, timeout: float) -> bool:
        """Wait (bounded) until the queue is empty and nothing is being written."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        # Not a lower OS priority: a thread at nice +10 that is preempted while it holds the
        # GIL stalls every thread of the daemon. A CPU budget instead (capture.writer_cpu):
        # after each capture the writer rests long enough to stay within that share of one
        # core, so classification keeps the CPU and what the writer cannot take is dropped
        # and counted.
        self._open()
        deadline: float | None = None
        while True:
            with self._cond:
                while not self._queue and not self._stop.is_set():
                    self._cond.wait(1.0)
                    if time.monotonic() >= self._next_age_check:
                        break
                if self._stop.is_set():
                    if deadline is None:
                        deadline = time.monotonic() + self._drain_timeout
                    if not self._queue or time.monotonic() >= deadline:
                        return  # stop() counts what is left
                item = self._queue.popleft() if self._queue else None
                if item is not None:
                    self._queued -= item.nbytes
                    self._busy = True
                self.metrics.queue_bytes.set(self._queued)
            spent = time.thread_time()
            try:
                if time.monotonic() >= self._next_age_check:
                    self._prune(0)
                if item is not None:
                    self._write(item)
            except Exception:  # noqa: BLE001 - one bad capture must not end capturing
                log.exception("capture: camera %s: capture failed",
                              item.camera if item else "-")
                if item is not None:
                    self.metrics.dropped.labels(item.camera, item.rule, "error").inc()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            rest = rest_after(time.thread_time() - spent, self._cpu_share)
            if rest > 0:
                self._stop.wait(rest)  # at stop: no rest, the queue is drained at once

    def _open(self) -> bool:
        """Make the folder and read what is already there (once it works)."""
        if self._ready:
            return True
        try:
            os.makedirs(self.root, exist_ok=True)
            if not os.access(self.root, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            self._disk_log.failure("capture: cannot write to %s: %s; matching frames are "
                                   "dropped and counted", self.root, exc.strerror or exc)
            return False
        entries, temps = scan(self.root)
        for path in temps:
            try:
                os.remove(path)
            except OSError:
                pass
        self._entries = entries
        self._keys = [(e.ts, e.camera, e.stem) for e in entries]
        self._total = sum(e.bytes for e in entries)
        self._ready = True
        self._publish_totals()
        self._prune(0)
        return True

    def _prune(self, reserve: int) -> None:
        self._next_age_check = time.monotonic() + _AGE_CHECK_S
        if not self._ready:
            return
        plan = retention_plan(self._entries, self._cfg.max_bytes,
                              self._cfg.max_age_days * 86400.0, self._clock(), reserve,
                              self._total)
        for entry, reason in plan:
            self._total -= delete_entry(entry)
            self.metrics.pruned.labels(reason).inc()
        if plan:
            del self._entries[:len(plan)]
            del self._keys[:len(plan)]
            self._publish_totals()

    def _publish_totals(self) -> None:
        self.metrics.stored.set(len(self._entries))
        self.metrics.bytes.set(self._total)

    def _write(self, item: _Item) -> None:
        # Imported here: OpenCV is only needed once something is captured.
        from edged.web.imaging import as_bgr, encode_jpeg, outlined

        camera, result, frame = item.camera, item.result, item.frame
        name, region = split_subject(camera)
        folder = object_id(name, region)  # a region's captures: {camera}__{region}/{label}/
        if not self._open():
            self.metrics.dropped.labels(camera, item.rule, "error").inc()
            return
        label = folder_name(str(result["label"]))
        stem = capture_stem(float(result.get("ts", frame.ts)), int(result.get("seq", 0)))
        image = as_bgr(frame.region())  # the pixels the model classified
        jpeg = encode_jpeg(image, self._cfg.jpeg_quality)
        whole = frame.image
        if region is not None and frame.box is not None:  # the region outlined on the frame
            whole = outlined(frame.image, [(frame.box, region)])
        full = (encode_jpeg(as_bgr(whole), self._cfg.jpeg_quality)
                if frame.box is not None else None)
        rel = f"{folder}/{label}/{stem}.jpg"
        rel_full = f"{FULL_DIR}/{folder}/{label}/{stem}.jpg" if full is not None else None
        doc = capture_payload(result, name, item.rule, item.rules, item.state, rel, rel_full,
                              int(image.shape[1]), int(image.shape[0]),
                              len(jpeg) + len(full or b""), self._clock(), region)
        side = json.dumps(doc, separators=(",", ":")).encode()
        need = len(jpeg) + len(full or b"") + len(side)
        self._prune(need)  # retention by size makes room first
        try:
            free, block = free_space(self.root)
            on_disk = disk_need((len(jpeg), len(full or b""), len(side)), block)
        except OSError as exc:
            free, on_disk = None, need
            self._disk_log.failure("capture: cannot stat %s: %s", self.root, exc.strerror or exc)
        if free is not None and free - on_disk < self._cfg.min_free_bytes:
            self._paused = True
            self.metrics.paused.set(1)
            self.metrics.dropped.labels(camera, item.rule, "paused").inc()
            self._pause_log.failure("capture: paused: %d bytes free on %s, below "
                                    "capture.min_free_bytes (%d)", free, self.root,
                                    self._cfg.min_free_bytes)
            return
        if self._paused:
            self._paused = False
            self.metrics.paused.set(0)
            self._pause_log.recovered("capture: resumed: %d bytes free on %s", free, self.root)
        paths = [os.path.join(self.root, rel), os.path.join(self.root, rel[:-4] + ".json")]
        blobs = [jpeg, side]
        if rel_full is not None and full is not None:
            paths.append(os.path.join(self.root, rel_full))
            blobs.append(full)
        written: list[str] = []
        try:
            for path, data in zip(paths, blobs):
                try:
                    _write_atomic(path, data)
                except FileNotFoundError:  # a new class folder (or one retention emptied)
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    _write_atomic(path, data)
                written.append(path)
        except OSError as exc:
            for path in written:  # never half a capture
                try:
                    os.remove(path)
                except OSError:
                    pass
            self.metrics.dropped.labels(camera, item.rule, "error").inc()
            self._disk_log.failure("capture: camera %s: cannot write %s: %s", camera, rel,
                                   exc.strerror or exc)
            return
        self._disk_log.recovered("capture: writing to %s again", self.root)
        entry = Entry(doc["ts"], folder, label, stem, tuple(paths), need)
        key = (entry.ts, folder, stem)
        at = bisect.bisect(self._keys, key)
        self._keys.insert(at, key)
        self._entries.insert(at, entry)
        self._total += need
        self._publish_totals()
        self.metrics.written.labels(camera, item.rule).inc()
        self._cameras_latest(camera, doc)
        self._announce(camera, side)

    def _cameras_latest(self, camera: str, doc: dict) -> None:
        cam = self._cameras.get(camera)
        if cam is not None:
            cam.latest.append({k: doc[k] for k in ("label", "score", "rule", "ts", "seq",
                                                   "image")})

    def _announce(self, camera: str, payload: bytes) -> None:
        link = self._link
        if link is None:
            return
        try:
            link.publish_now(capture_message(link.topics, camera, payload, self._cfg.qos))
        except Exception:  # noqa: BLE001 - the capture is on disk; only the news is lost
            log.exception("capture: camera %s: announcement failed", camera)
