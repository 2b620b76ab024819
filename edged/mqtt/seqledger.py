"""Each camera's seq high-water mark, kept outside the SQLite file so that a database that
lost its tail (power cut), was damaged or was replaced never makes seq repeat.

The file holds two fixed-size slots written in place, alternately, each with a generation
number and a checksum, then fsync'd: a torn write leaves the other slot valid, and writing in
place needs no new disk blocks, so it still works on a full filesystem. While running, the
ledger reserves `margin` seqs ahead (one write per `margin` results per camera); a clean stop
writes the exact next seqs and marks the file clean.

The fsync stays off the publishing path: halfway through a reservation the next one is
written by a single named writer thread (`write_ahead`), and a seq past what is known to be
on disk waits for that write (`settle`), which has long finished at any real result rate.
"""

from __future__ import annotations

import json
import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout  # not TimeoutError on 3.10
from dataclasses import dataclass, field
from pathlib import Path

SLOT = 16384
_MAGIC = b"EDGEDSEQ1\n"


def read_boot_id(path: str = "/proc/sys/kernel/random/boot_id") -> str:
    """The kernel's id of this boot ('' when unknown): a different one means a reboot."""
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


@dataclass
class LedgerState:
    gen: int = 0
    boot: str = ""
    clean: bool = False  # written by a clean stop: `next` is exact
    degraded: bool = False  # the outbox file was unusable when this was written
    next: dict[str, int] = field(default_factory=dict)  # reserved (or exact when clean)
    kept: int | None = None  # rows left in the outbox file at a clean stop

    def encode(self) -> bytes:
        body = json.dumps({"gen": self.gen, "boot": self.boot, "clean": self.clean,
                           "degraded": self.degraded, "next": self.next, "kept": self.kept},
                          separators=(",", ":"), sort_keys=True).encode()
        crc = b"%08x" % zlib.crc32(body)
        data = _MAGIC + crc + b"\n" + body + b"\n"
        if len(data) > SLOT:
            raise ValueError(f"seq ledger record too large ({len(data)} bytes)")
        return data.ljust(SLOT, b"\0")

    @classmethod
    def decode(cls, slot: bytes) -> LedgerState | None:
        if not slot.startswith(_MAGIC):
            return None
        rest = slot[len(_MAGIC):].rstrip(b"\0")
        try:
            crc, body = rest.split(b"\n", 1)
            body = body.rstrip(b"\n")
            if b"%08x" % zlib.crc32(body) != crc:
                return None
            d = json.loads(body)
            return cls(int(d["gen"]), str(d["boot"]), bool(d["clean"]), bool(d["degraded"]),
                       {str(k): int(v) for k, v in d["next"].items()},
                       None if d.get("kept") is None else int(d["kept"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class SeqLedger:
    """Not thread-safe: the outbox calls it under its lock. Writes raise OSError/ValueError;
    the caller decides what a failure means."""

    def __init__(self, path: str, margin: int = 100) -> None:
        self.path = path
        self.margin = margin
        self.state = LedgerState()
        self.loaded: LedgerState | None = None  # what the previous run left, if readable
        self.durable: dict[str, int] = {}  # reservations known to be on disk
        self._writer: ThreadPoolExecutor | None = None  # one thread: writes stay in order
        self._last: tuple[Future[None], dict[str, int]] | None = None

    def start(self) -> None:
        """The writer thread for write_ahead(); without it every write is synchronous."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="outbox-ledger")

    def stop(self, timeout: float = 10.0) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                self.settle(timeout)
            except (OSError, ValueError, FutureTimeout):
                pass
            writer.shutdown(wait=False, cancel_futures=True)

    def load(self) -> LedgerState | None:
        """The newest valid slot, or None (no file, unreadable, or both slots torn)."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(2 * SLOT)
        except OSError:
            return None
        found = [s for s in (LedgerState.decode(data[:SLOT]), LedgerState.decode(data[SLOT:]))
                 if s is not None]
        self.loaded = max(found, key=lambda s: s.gen) if found else None
        if self.loaded is not None:
            self.state.gen = self.loaded.gen
        return self.loaded

    def _encode(self) -> tuple[int, bytes, dict[str, int]]:
        self.state.gen += 1
        return self.state.gen, self.state.encode(), dict(self.state.next)

    def _put(self, gen: int, data: bytes) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size < 2 * SLOT:
                os.pwrite(fd, b"\0" * (2 * SLOT), 0)  # allocate both slots once
            os.pwrite(fd, data, (gen % 2) * SLOT)
            os.fsync(fd)
        finally:
            os.close(fd)

    def write(self, timeout: float = 10.0) -> None:
        """Write the current state (into the slot not holding the newest record), fsync,
        and return once it is on disk. Raises OSError/ValueError/TimeoutError."""
        gen, data, snap = self._encode()
        if self._writer is None:
            self._put(gen, data)
        else:
            future = self._writer.submit(self._put, gen, data)
            self._last = (future, snap)
            future.result(timeout)
        self.durable = snap

    def write_ahead(self) -> None:
        """Start writing the current state; settle() waits for it. Raises ValueError."""
        if self._writer is None:
            self.write()
            return
        gen, data, snap = self._encode()
        self._last = (self._writer.submit(self._put, gen, data), snap)

    def settle(self, timeout: float = 10.0) -> None:
        """Wait for the last write; raises its error (OSError, TimeoutError)."""
        if self._last is None:
            return
        future, snap = self._last
        future.result(timeout)
        self.durable = snap

    def ahead_due(self, camera: str, next_seq: int) -> bool:
        """Halfway through this camera's reservation: time to write the next one."""
        return next_seq + self.margin // 2 > self.state.next.get(camera, -1)

    def needs(self, camera: str, next_seq: int) -> bool:
        """True when `next_seq` passes this camera's reservation (a write is due)."""
        return next_seq > self.state.next.get(camera, -1)

    def reserve(self, nexts: dict[str, int]) -> None:
        """Reserve `margin` seqs past each camera's next (in memory; write() persists)."""
        for camera, nxt in nexts.items():
            self.state.next[camera] = max(self.state.next.get(camera, 0), nxt + self.margin)
