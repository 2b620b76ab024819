"""The durable outbox: results on disk (SQLite, WAL) from before they are handed to the MQTT
client until the broker acknowledges them, and each camera's next seq.

Rows are numbered by an autoincrement id in the order they were accepted, which per camera
is seq order; the sender replays by id, so a backlog and the live results after it leave in
one order. When full (max_messages or max_bytes), the oldest rows are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from edged.config import OutboxConfig
from edged.errors import EdgedError
from edged.mqtt.contract import Message

log = logging.getLogger(__name__)

DEFAULT_DIR = "/var/lib/edged"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    seq INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    created REAL NOT NULL,
    model_sha256 TEXT,
    props TEXT
);
CREATE TABLE IF NOT EXISTS seqs (
    camera TEXT PRIMARY KEY,
    next INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    id: int
    message: Message
    created: float

    @property
    def camera(self) -> str:
        return self.message.camera or ""

    @property
    def seq(self) -> int:
        return self.message.seq if self.message.seq is not None else -1


def _props_json(msg: Message) -> str | None:
    return json.dumps([list(p) for p in msg.user_properties]) if msg.user_properties else None


def _message(camera: str, seq: int, topic: str, payload: bytes, qos: int, retain: int,
             created: float, model_sha256: str | None, props: str | None) -> Message:
    """A stored row as the message it was. Rows written before 0.2 have no `props` column
    value, only the model hash."""
    if props:
        user = tuple((str(k), str(v)) for k, v in json.loads(props))
    else:
        user = (("model_sha256", model_sha256),) if model_sha256 else ()
    return Message(topic, bytes(payload), qos, bool(retain), "result", camera=camera, seq=seq,
                   user_properties=user, created=created)


def outbox_path(cfg: OutboxConfig, environ: dict[str, str] | None = None) -> str:
    """The configured path, else $STATE_DIRECTORY/outbox.db (systemd), else /var/lib/edged."""
    if cfg.path:
        return cfg.path
    env = os.environ if environ is None else environ
    state_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
    return os.path.join(state_dir or DEFAULT_DIR, "outbox.db")


class Outbox:
    """Thread-safe; every method takes the one lock around its SQLite work."""

    def __init__(self, path: str, max_messages: int, max_bytes: int,
                 synchronous: str = "normal",
                 on_drop: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._synchronous = synchronous
        self._on_drop = on_drop
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._count = 0
        self._bytes = 0
        self._seqs: dict[str, int] = {}
        self._dropping = False  # inside a "full" episode: log once until there is room again

    def open(self) -> None:
        """Create or reopen the store; EdgedError naming mqtt.outbox.path when impossible."""
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "props" not in columns:  # an outbox from before the column: keep its rows
                db.execute("ALTER TABLE messages ADD COLUMN props TEXT")
            count, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()
            seqs = dict(db.execute("SELECT camera, next FROM seqs").fetchall())
        except (OSError, sqlite3.Error) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise EdgedError(f"mqtt.outbox.path: cannot open the outbox {self.path}: "
                             f"{reason}") from None
        self._db, self._count, self._bytes, self._seqs = db, count, size, seqs
        if count:
            log.info("outbox %s: %d unacknowledged results from before; replaying them",
                     self.path, count)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def next_seq(self, camera: str) -> int:
        """Where this camera's seq continues (0 for a new camera)."""
        with self._lock:
            return self._seqs.get(camera, 0)

    def put(self, msg: Message) -> int:
        """Store one result whole (and the camera's next seq) durably; returns its row id."""
        camera, seq, payload = msg.camera, msg.seq, msg.payload
        if camera is None or seq is None:
            raise ValueError("only results (with a camera and a seq) go to the outbox")
        created = msg.created if msg.created is not None else self._clock()
        with self._lock:
            db = self._require()
            db.execute("BEGIN")
            try:
                cur = db.execute(
                    "INSERT INTO messages (camera, seq, topic, payload, qos, retain, created, "
                    "props) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (camera, seq, msg.topic, payload, msg.qos, int(msg.retain), created,
                     _props_json(msg)))
                db.execute("INSERT INTO seqs (camera, next) VALUES (?, ?) ON CONFLICT(camera) "
                           "DO UPDATE SET next = excluded.next", (camera, seq + 1))
                self._count += 1
                self._bytes += len(payload)
                dropped = self._trim(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._recount(db)
                raise
            self._seqs[camera] = seq + 1
            row_id = int(cur.lastrowid)
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return row_id

    def _over(self) -> bool:
        return self._count > self._max_messages or self._bytes > self._max_bytes

    def _trim(self, db: sqlite3.Connection) -> int:
        """Drop the oldest rows until within bounds; log once per episode."""
        dropped = 0
        while self._over():
            rows = db.execute("SELECT id, LENGTH(payload) FROM messages ORDER BY id LIMIT 64"
                              ).fetchall()
            if not rows:
                break
            last = None
            for row_id, size in rows:
                if not self._over():
                    break
                last = row_id
                self._count -= 1
                self._bytes -= size
                dropped += 1
            db.execute("DELETE FROM messages WHERE id <= ?", (last,))
        if dropped and not self._dropping:
            log.warning("outbox %s is full (at most %d messages, %d bytes): dropping the oldest "
                        "results until the broker takes them again", self.path,
                        self._max_messages, self._max_bytes)
        if dropped:
            self._dropping = True
        return dropped

    def after(self, last_id: int, limit: int) -> list[Row]:
        """Up to `limit` rows with id > last_id, oldest first."""
        with self._lock:
            rows = self._require().execute(
                "SELECT id, camera, seq, topic, payload, qos, retain, created, model_sha256, "
                "props FROM messages WHERE id > ? ORDER BY id LIMIT ?", (last_id, limit)
            ).fetchall()
        return [Row(r[0], _message(*r[1:]), r[7]) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows (ids already gone, e.g. dropped, are ignored)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            db = self._require()
            removed = 0
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                size = db.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM "
                                  f"messages WHERE id IN ({marks})", chunk).fetchone()
                db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
                removed += size[0]
                self._count -= size[0]
                self._bytes -= size[1]
            if self._count < self._max_messages and self._bytes < self._max_bytes:
                self._dropping = False
            return removed

    def _recount(self, db: sqlite3.Connection) -> None:
        self._count, self._bytes = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages").fetchone()

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def oldest_created(self) -> float | None:
        """Wall time the oldest waiting result was made, None when empty."""
        with self._lock:
            if self._db is None or not self._count:
                return None
            row = self._db.execute("SELECT MIN(created) FROM messages").fetchone()
        return row[0] if row else None
