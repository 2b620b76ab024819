"""The durable outbox: results on disk (SQLite, WAL) from before they are handed to the MQTT
client until the broker acknowledges them, and each camera's next seq.

Rows are numbered by an id in the order they were accepted, which per camera is seq order;
the sender replays by id, so a backlog and the live results after it leave in one order.

The outbox never stops the pipeline and never loses a result silently:
- when full (max_messages or max_bytes), the oldest rows not yet handed to the client are
  dropped; each is counted in edged_results_lost_total{reason="outbox_full"} and leaves a gap;
- when the file is unusable (disk full, read-only, I/O error, damaged), results are kept in a
  bounded memory fallback and published from there; the file is retried with backoff; the
  state is in edged_outbox_healthy, /readyz and one log line per episode; what overflows the
  fallback, or is still only in memory at exit, is counted lost;
- a damaged file at start is moved aside (kept, with a timestamp in its name), what can still
  be read from it is replayed, and a fresh file is started;
- seq never repeats: a ledger next to the file (seqledger.py) keeps a high-water mark that
  survives the database losing its tail; the seqs skipped after such a loss are counted
  (reason "crash").
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout  # not TimeoutError on 3.10
from datetime import datetime, timezone

from edged.config import OutboxConfig
from edged.mqtt.contract import Message
from edged.mqtt.outbox_store import Row, SqliteStore, error_kind, rescue_rows, rescue_seqs
from edged.mqtt.seqledger import LedgerState, SeqLedger, read_boot_id
from edged.service.metrics import LOST_REASONS, Metrics

__all__ = ["DEFAULT_DIR", "Outbox", "Row", "outbox_path"]

log = logging.getLogger(__name__)

DEFAULT_DIR = "/var/lib/edged"
_KEEP_ASIDE = 5  # damaged files kept; older ones are removed so a crash loop cannot fill a disk
_WHAT = {"full": "the disk is full", "readonly": "it is read-only",
         "io": "I/O error", "corrupt": "it is damaged", "cantopen": "it cannot be opened",
         "other": "error"}


def outbox_path(cfg: OutboxConfig, environ: dict[str, str] | None = None) -> str:
    """The configured path, else $STATE_DIRECTORY/outbox.db (systemd), else /var/lib/edged."""
    if cfg.path:
        return cfg.path
    env = os.environ if environ is None else environ
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    return os.path.join(state_dir or DEFAULT_DIR, "outbox.db")


def seq_ranges(rows: Iterable[Row]) -> str:
    """'cam 3-7, 9; other 0' for log lines (at most a few ranges per camera)."""
    by_cam: dict[str, list[int]] = {}
    for r in rows:
        by_cam.setdefault(r.camera, []).append(r.seq)
    parts = []
    for cam, seqs in sorted(by_cam.items()):
        seqs.sort()
        spans: list[str] = []
        start = prev = seqs[0]
        for s in seqs[1:] + [None]:  # type: ignore[list-item]
            if s is not None and s == prev + 1:
                prev = s
                continue
            spans.append(f"{start}" if start == prev else f"{start}-{prev}")
            if s is not None:
                start = prev = s
        shown = ", ".join(spans[:5]) + (f" (+{len(spans) - 5} more)" if len(spans) > 5 else "")
        parts.append(f"{cam} seq {shown}")
    return "; ".join(parts)


class Outbox:
    """Thread-safe; every method takes the one lock. No method raises because of the disk."""

    def __init__(self, path: str, max_messages: int, max_bytes: int,
                 synchronous: str = "normal",
                 on_drop: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None,
                 fallback_max_messages: int = 10_000,
                 fallback_max_bytes: int = 16 * 1024 * 1024,
                 retry_initial_s: float = 1.0, retry_max_s: float = 60.0,
                 seq_margin: int = 100, boot_id: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._synchronous = synchronous
        self._on_drop = on_drop
        self._clock = clock
        self._mono = monotonic
        self._metrics = metrics
        self._fb_max_messages = fallback_max_messages
        self._fb_max_bytes = fallback_max_bytes
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._boot_id = boot_id
        self._store = SqliteStore(path, synchronous)
        self._ledger = SeqLedger(path + ".seq", seq_margin)
        self._lock = threading.RLock()
        self._memory: OrderedDict[int, Row] = OrderedDict()  # the fallback, by id
        self._memory_bytes = 0
        self._undeleted: set[int] = set()  # acknowledged rows the file would not let go
        self._nexts: dict[str, int] = {}  # each camera's next seq
        self._last_id = 0  # ids are given here, for disk and memory rows alike
        self._handed = 0  # the highest id given to the sender (rows up to it may be in flight)
        self._healthy = False
        self._opened = False
        self._reason = "not opened"
        self._kind = ""
        self._retry_at = 0.0
        self._delay = retry_initial_s
        self._healthy_since = 0.0
        self._full_episode = False  # dropping oldest on disk: log once until there is room
        self._fallback_episode = False  # dropping oldest in memory: likewise
        self._ledger_failing = False
        self._ledger_retry_at = 0.0
        self._ledger_ready = False  # set up by open(): from then on state changes are written
        self._in_episode = False  # degraded and logged: one line per episode
        self.lost: dict[str, int] = dict.fromkeys(LOST_REASONS, 0)

    # --- start and stop ---------------------------------------------------------------------

    def open(self) -> None:
        """Open the file, or move a damaged one aside and start fresh, or run on memory.
        Never raises; the state shows in `healthy`, `problems()` and the metrics."""
        with self._lock:
            if self._opened:
                return
            self._opened = True
            boot = self._boot_id if self._boot_id is not None else read_boot_id()
            previous = self._ledger.load()
            intact = True
            rescued: list[Row] = []
            try:
                self._store.open(check=os.path.exists(self.path))
                self._store.probe()
                self._mark_healthy()
            except (sqlite3.Error, OSError) as exc:
                if error_kind(exc) == "corrupt":
                    intact = False
                    rescued = self._replace_damaged(exc, previous)
                else:
                    self._degrade("open", exc)
            if not self._store.is_open and os.path.exists(self.path):
                # Not writable, but maybe readable: what it holds can still be delivered.
                self._open_read_only()
            self._last_id = max(self._store.max_id, self._last_id)
            self._set_start_seqs(previous, boot, intact, rescued)
            self._ledger.state.boot = boot
            self._ledger.state.clean = False
            self._ledger.state.degraded = not self._healthy
            self._ledger.reserve(self._nexts)
            self._ledger.start()
            self._write_ledger()
            self._ledger_ready = True
            waiting = self._store.count + len(self._memory)
            if waiting:
                log.info("outbox %s: %d unacknowledged results from before; replaying them",
                         self.path, waiting)
            self._update_gauges()

    def _open_read_only(self) -> None:
        try:
            self._store.close()
            self._store.open(check=False)
        except (sqlite3.Error, OSError):
            self._store.close()

    def _replace_damaged(self, exc: BaseException, previous: LedgerState | None,
                         known: int | None = None) -> list[Row]:
        """Rescue what reads, move the file aside, start fresh; returns the rescued rows.
        At start the rescued rows get ids 1..n; when the file breaks while running they get
        ids after every id given so far (some may already be delivered: duplicates, which
        consumers dedupe by seq)."""
        self._store.close()
        rows, claimed = rescue_rows(self.path, self._max_messages)
        seqs = rescue_seqs(self.path)
        for camera, nxt in seqs.items():
            self._nexts[camera] = max(self._nexts.get(camera, 0), nxt)
        unreadable: int | None = None
        if claimed is not None:
            unreadable = max(0, claimed - len(rows))
        elif known is not None:  # damaged while running: the rows it held, as last counted
            unreadable = max(0, known - len(rows))
        elif previous is not None and previous.clean and previous.kept is not None:
            unreadable = max(0, previous.kept - len(rows))
        aside = self._move_aside()
        if self._metrics is not None:
            self._metrics.outbox_store_failures.labels("corrupt").inc()
        log.warning("outbox %s is damaged (%s): %s; %d results rescued and replayed, %s "
                    "unreadable (counted lost)", self.path, exc,
                    f"moved aside to {aside}" if aside else "could not move it aside",
                    len(rows), unreadable if unreadable is not None else "an unknown number of")
        if unreadable:
            self._count_lost("store_damaged", unreadable)
        if self._metrics is not None and aside:
            self._metrics.outbox_moved_aside.inc()
        # Fresh ids, in the rescued order.
        first = self._last_id
        fresh = [Row(first + i + 1, r.message, r.created) for i, r in enumerate(rows)]
        for r in fresh:
            self._nexts[r.camera] = max(self._nexts.get(r.camera, 0), r.seq + 1)
        self._last_id = first + len(fresh)
        if aside:
            try:
                self._store.open(check=False)
                self._store.probe()
                moving = sorted(list(self._memory.values()) + fresh, key=lambda r: r.id)
                dropped = self._store.insert(moving, dict(self._nexts), self._handed,
                                             self._max_messages, self._max_bytes)
                self._memory.clear()
                self._memory_bytes = 0
                self._lost_rows("outbox_full", dropped)
                self._mark_healthy()
                self._update_gauges()
                return fresh
            except (sqlite3.Error, OSError) as exc2:
                self._store.close()
                self._degrade("start a fresh file", exc2)
        else:
            self._degrade("replace the damaged file", exc)
        for r in fresh:
            self._memory_add(r)
        return fresh

    def _move_aside(self) -> str | None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        aside = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = f"{self.path}.corrupt-{stamp}-{n}"
        try:
            os.rename(self.path, aside)
        except OSError:
            return None
        for suffix in ("-wal", "-shm"):
            try:
                os.rename(self.path + suffix, aside + suffix)
            except OSError:
                pass
        self._prune_aside()
        return aside

    def _prune_aside(self) -> None:
        folder, base = os.path.split(self.path)
        try:
            names = sorted(n for n in os.listdir(folder or ".")
                           if n.startswith(base + ".corrupt-") and not n.endswith(("-wal",
                                                                                  "-shm")))
        except OSError:
            return
        for name in names[:-_KEEP_ASIDE]:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(os.path.join(folder, name + suffix))
                except OSError:
                    pass

    def _set_start_seqs(self, previous: LedgerState | None, boot: str, intact: bool,
                        rescued: list[Row]) -> None:
        """Where each camera's seq continues, and the seqs skipped because the file may have
        lost results (counted: reason "crash")."""
        for camera, nxt in self._store.seqs.items():
            self._nexts[camera] = max(self._nexts.get(camera, 0), nxt)
        for r in list(self._memory.values()) + rescued:
            self._nexts[r.camera] = max(self._nexts.get(r.camera, 0), r.seq + 1)
        if previous is None:
            return
        if previous.clean:  # exact: nothing skipped
            for camera, nxt in previous.next.items():
                self._nexts[camera] = max(self._nexts.get(camera, 0), nxt)
            return
        # An unclean stop. The file is exact if it is intact, was in use (not degraded), and
        # its last commits are on disk: same boot (the page cache survived) or synchronous=full.
        exact = intact and self._store.is_open and not previous.degraded and (
            (boot and previous.boot == boot) or self._synchronous == "full")
        if exact:
            return
        skipped = []
        for camera, reserved in previous.next.items():
            base = self._nexts.get(camera, 0)
            if reserved > base:
                skipped.append(f"{camera} seq {base}-{reserved - 1}")
                self._count_lost("crash", reserved - base)
                self._nexts[camera] = reserved
        if skipped:
            log.warning("outbox %s: edged did not stop cleanly and the file may have lost its "
                        "newest results (%s); seq continues after the reserved range: %s "
                        "(counted lost, reason crash)", self.path,
                        "damaged" if not intact else "degraded" if previous.degraded
                        else "power loss", "; ".join(skipped))

    def close(self) -> None:
        """Last try to save what is only in memory, count what cannot be, mark the ledger."""
        with self._lock:
            if not self._opened:
                return
            self._opened = False
            self._ledger_ready = False
            if self._memory:  # last chance for what is only in memory
                self._try_recover(force=True)
            if self._memory:
                rows = list(self._memory.values())
                self._count_lost("shutdown", len(rows))
                log.warning("outbox %s: %d results held only in memory were lost at exit (the "
                            "file was unusable: %s): %s", self.path, len(rows), self._reason,
                            seq_ranges(rows))
                self._memory.clear()
                self._memory_bytes = 0
            self._ledger.state.clean = True
            self._ledger.state.degraded = not self._healthy
            self._ledger.state.next = dict(self._nexts)
            self._ledger.state.kept = self._store.count - len(self._undeleted) \
                if self._store.is_open else None
            self._write_ledger(quiet=True)
            self._ledger.stop()
            self._store.close()
            self._healthy = False
            self._update_gauges()

    # --- the queue --------------------------------------------------------------------------

    def next_seq(self, camera: str) -> int:
        """Where this camera's seq continues (0 for a new camera)."""
        with self._lock:
            return self._nexts.get(camera, 0)

    def put(self, msg: Message) -> int:
        """Accept one result whole (its seq is taken); on disk if the file works, else in
        memory. Returns its row id."""
        camera, seq = msg.camera, msg.seq
        if camera is None or seq is None:
            raise ValueError("only results (with a camera and a seq) go to the outbox")
        with self._lock:
            self._last_id += 1
            created = msg.created if msg.created is not None else self._clock()
            row = Row(self._last_id, msg, created)  # the sink reads the time from the row
            self._nexts[camera] = max(self._nexts.get(camera, 0), seq + 1)
            self._take_seq(camera, seq + 1)
            if not self._healthy:
                self._try_recover()
            if self._healthy:
                try:
                    dropped = self._store.insert([row], {camera: seq + 1}, self._handed,
                                                 self._max_messages, self._max_bytes)
                    self._lost_rows("outbox_full", dropped)
                    self._update_gauges()
                    return row.id
                except (sqlite3.Error, OSError) as exc:
                    self._degrade("write", exc)
            self._memory_add(row)
            self._update_gauges()
            return row.id

    def after(self, last_id: int, limit: int) -> list[Row]:
        """Up to `limit` rows with id > last_id, oldest first, from the file and memory."""
        with self._lock:
            if not self._healthy:
                self._try_recover()
            rows: list[Row] = []
            if self._store.is_open:
                try:
                    rows = [r for r in self._store.after(last_id, limit)
                            if r.id not in self._undeleted]
                except (sqlite3.Error, OSError) as exc:
                    if self._healthy:
                        self._degrade("read", exc)
            if self._memory:
                more = []
                for row_id, row in self._memory.items():  # ids ascending
                    if row_id > last_id:
                        more.append(row)
                        if len(more) >= limit:
                            break
                rows = sorted(rows + more, key=lambda r: r.id)[:limit]
            if rows:
                self._handed = max(self._handed, rows[-1].id)
            return rows

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows (ids already gone, e.g. dropped, are ignored)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            removed = 0
            on_disk = []
            for i in ids:
                row = self._memory.pop(i, None)
                if row is None:
                    on_disk.append(i)
                else:
                    self._memory_bytes -= row.size
                    removed += 1
            if on_disk and self._store.is_open:
                try:
                    removed += self._store.delete(on_disk)
                    self._undeleted.difference_update(on_disk)
                except (sqlite3.Error, OSError) as exc:
                    self._undeleted.update(on_disk)  # delivered; the file keeps them for now
                    if self._healthy:
                        self._degrade("delete", exc)
            if self._store.count < self._max_messages and self._store.bytes < self._max_bytes:
                self._full_episode = False
            if not self._memory:
                self._fallback_episode = False
            self._update_gauges()
            return removed

    # --- degraded mode ----------------------------------------------------------------------

    def _degrade(self, op: str, exc: BaseException) -> None:
        kind = error_kind(exc)
        if kind == "cantopen" and self._read_only_fs():
            kind = "readonly"
        self._healthy = False
        self._kind = kind
        self._reason = f"cannot {op} {self.path}: {_WHAT.get(kind, kind)} ({exc})"
        now = self._mono()
        # A file that failed again soon after recovering backs off further.
        if self._healthy_since and now - self._healthy_since < self._retry_max:
            self._delay = min(self._retry_max, self._delay * 2)
        else:
            self._delay = self._retry_initial
        self._retry_at = now + self._delay
        if kind == "corrupt":
            self._store.close()
        if self._in_episode:  # already degraded (e.g. a retry failed): no second line
            log.debug("outbox: %s", self._reason)
            self._update_gauges()
            return
        self._in_episode = True
        if self._metrics is not None:
            self._metrics.outbox_store_failures.labels(kind).inc()
        log.warning("outbox: %s; results are kept in memory (at most %d) and published from "
                    "there; retrying the file with backoff (up to every %.0fs)", self._reason,
                    self._fb_max_messages, self._retry_max)
        if self._ledger_ready:
            self._ledger.state.degraded = True
            self._write_ledger()
        self._update_gauges()

    def _read_only_fs(self) -> bool:
        """The folder takes no new file (read-only mount or no write permission)."""
        folder = os.path.dirname(self.path) or "."
        try:
            return bool(os.statvfs(folder).f_flag & os.ST_RDONLY) or (
                os.path.isdir(folder) and not os.access(folder, os.W_OK))
        except OSError:
            return False

    def _try_recover(self, force: bool = False) -> bool:
        """Reopen the file, take back what is in memory; backoff on failure."""
        now = self._mono()
        if not force and now < self._retry_at:
            return False
        try:
            # Reopen: a file opened while read-only stays read-only on its old connection.
            self._store.close()
            self._store.open(check=self._kind == "corrupt")
            self._store.probe()
            if self._undeleted:
                self._store.delete(sorted(self._undeleted))
                self._undeleted.clear()
            moved = list(self._memory.values())
            dropped = self._store.insert(moved, dict(self._nexts), self._handed,
                                         self._max_messages, self._max_bytes)
        except (sqlite3.Error, OSError) as exc:
            if error_kind(exc) == "corrupt":
                # Damaged while running: set it aside like at start, keep what reads.
                self._kind = "corrupt"
                self._store.close()
                self._replace_damaged(exc, None, max(0, self._store.count - len(self._undeleted)))
                self._undeleted.clear()
                if self._healthy:
                    self._last_id = max(self._last_id, self._store.max_id)
                    if self._ledger_ready:
                        self._ledger.state.degraded = False
                        self._write_ledger()
                    return True
            self._delay = min(self._retry_max, self._delay * 2)
            self._retry_at = now + self._delay
            if not self._store.is_open and self._kind != "corrupt" and os.path.exists(self.path):
                self._open_read_only()  # what it holds can still be delivered
            log.debug("outbox: still unusable: %s", exc)
            return False
        self._memory.clear()
        self._memory_bytes = 0
        self._fallback_episode = False
        self._lost_rows("outbox_full", dropped)
        self._last_id = max(self._last_id, self._store.max_id)
        self._mark_healthy()
        log.info("outbox %s usable again; %d results moved from memory to the file", self.path,
                 len(moved))
        if self._ledger_ready:
            self._ledger.state.degraded = False
            self._write_ledger()
        self._update_gauges()
        return True

    def _mark_healthy(self) -> None:
        self._in_episode = False
        self._healthy = True
        self._reason = ""
        self._kind = ""
        self._healthy_since = self._mono()

    def _memory_add(self, row: Row) -> None:
        self._memory[row.id] = row
        self._memory_bytes += row.size
        dropped = []
        while (len(self._memory) > self._fb_max_messages
               or self._memory_bytes > self._fb_max_bytes):
            victim = next((r for i, r in self._memory.items() if i > self._handed), None)
            if victim is None or victim.id == row.id and len(self._memory) == 1:
                break  # only rows in flight are left: they stay until acknowledged
            del self._memory[victim.id]
            self._memory_bytes -= victim.size
            dropped.append(victim)
        if dropped:
            if not self._fallback_episode:
                log.warning("outbox: the memory fallback is full (at most %d results, %d "
                            "bytes) while the file is unusable: dropping the oldest (seq gaps, "
                            "counted in edged_results_lost_total{reason=\"fallback_full\"})",
                            self._fb_max_messages, self._fb_max_bytes)
                self._fallback_episode = True
            self._count_lost("fallback_full", len(dropped))

    # --- accounting -------------------------------------------------------------------------

    def _lost_rows(self, reason: str, rows: list[Row]) -> None:
        if not rows:
            return
        if reason == "outbox_full":
            if not self._full_episode:
                log.warning("outbox %s is full (at most %d messages, %d bytes): dropping the "
                            "oldest results until the broker takes them again (seq gaps, "
                            "counted in edged_results_lost_total{reason=\"outbox_full\"})",
                            self.path, self._max_messages, self._max_bytes)
                self._full_episode = True
            if self._metrics is not None:
                self._metrics.outbox_dropped.labels("full").inc(len(rows))
            if self._on_drop is not None:
                self._on_drop(len(rows))
        self._count_lost(reason, len(rows))

    def _count_lost(self, reason: str, n: int) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + n
        if self._metrics is not None:
            self._metrics.results_lost.labels(reason).inc(n)

    def _take_seq(self, camera: str, nxt: int) -> None:
        """Keep the ledger's reservation ahead of `nxt` (the camera's next seq): written
        ahead in the background, waited for only if this seq is not yet covered on disk."""
        ledger = self._ledger
        if ledger.ahead_due(camera, nxt):
            ledger.reserve({camera: nxt})
            try:
                ledger.write_ahead()
            except ValueError as exc:  # a record too large: cannot be written at all
                self._ledger_failed(exc, quiet=False)
        if nxt > ledger.durable.get(camera, -1):
            if self._ledger_failing and self._mono() < self._ledger_retry_at:
                return  # known not to work: said once, retried later
            try:
                ledger.settle()
            except (OSError, FutureTimeout) as exc:
                self._ledger_failed(exc, quiet=False)
                if self._mono() >= self._ledger_retry_at:
                    self._write_ledger()
                return
            if nxt > ledger.durable.get(camera, -1):
                self._write_ledger()  # an older write settled: write this reservation now
            elif self._ledger_failing:
                self._ledger_ok()

    def _write_ledger(self, quiet: bool = False) -> None:
        try:
            self._ledger.write()
        except (OSError, ValueError, FutureTimeout) as exc:
            self._ledger_failed(exc, quiet)
            return
        self._ledger_ok()

    def _ledger_failed(self, exc: BaseException, quiet: bool) -> None:
        self._ledger_retry_at = self._mono() + self._retry_max
        if not self._ledger_failing and not quiet:
            log.warning("outbox: cannot write the seq ledger %s (%s): seq may repeat after "
                        "a power loss until it can", self._ledger.path, exc)
        self._ledger_failing = True

    def _ledger_ok(self) -> None:
        if self._ledger_failing:
            log.info("outbox: seq ledger %s written again", self._ledger.path)
        self._ledger_failing = False

    def _update_gauges(self) -> None:
        m = self._metrics
        if m is None:
            return
        m.outbox_healthy.set(1 if self._healthy else 0)
        m.outbox_fallback_messages.set(len(self._memory))

    # --- state ------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        with self._lock:
            return self._healthy

    def degraded_reason(self) -> str | None:
        """Why the outbox is degraded (None when healthy), for /readyz."""
        with self._lock:
            if self._healthy or not self._opened:
                return None
            return f"degraded, {self._reason}; {len(self._memory)} results in memory"

    def problems(self) -> list[str]:
        why = self.degraded_reason()
        return [f"outbox: {why}"] if why else []

    @property
    def count(self) -> int:
        """Rows in the file (what `SELECT COUNT(*)` shows), for the gauges."""
        with self._lock:
            return self._store.count

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._store.bytes

    @property
    def memory_count(self) -> int:
        with self._lock:
            return len(self._memory)

    @property
    def waiting(self) -> int:
        """Results not yet acknowledged: in the file and in memory."""
        with self._lock:
            return max(0, self._store.count - len(self._undeleted)) + len(self._memory)

    def exit_note(self) -> str:
        """What happens to the unacknowledged results at exit, for the exit log line."""
        with self._lock:
            on_disk = max(0, self._store.count - len(self._undeleted))
            parts = []
            if on_disk:
                parts.append(f"{on_disk} kept in the outbox for the next start")
            if self._memory:
                parts.append(f"{len(self._memory)} held only in memory (the outbox file is "
                             "unusable) are lost unless the file takes them now")
            return ("; " + ", ".join(parts)) if parts else ""

    def oldest_created(self) -> float | None:
        """Wall time the oldest waiting result was made, None when empty."""
        with self._lock:
            times = []
            if self._store.is_open and self._store.count:
                try:
                    t = self._store.oldest_created()
                    if t is not None:
                        times.append(t)
                except (sqlite3.Error, OSError):
                    pass
            if self._memory:
                times.append(next(iter(self._memory.values())).created)
            return min(times) if times else None
