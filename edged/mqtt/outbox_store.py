"""The SQLite file behind the outbox: plain operations that raise on any disk problem.

The resilient part (fallback to memory, retries, accounting) lives in outbox.py; this class
only keeps its counts equal to what is committed in the file: they change after a COMMIT
succeeded, never before.
"""

from __future__ import annotations

import errno
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from edged.mqtt.contract import Message

SCHEMA = """
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

_COLUMNS = "id, camera, seq, topic, payload, qos, retain, created, model_sha256, props"
_OLD_COLUMNS = _COLUMNS.replace(", props", ", NULL AS props")
_INSERT = "id, camera, seq, topic, payload, qos, retain, created, props"


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

    @property
    def size(self) -> int:
        return len(self.message.payload)


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


def _has_props(db: sqlite3.Connection) -> bool:
    return "props" in {row[1] for row in db.execute("PRAGMA table_info(messages)")}


def row_of(r: tuple) -> Row:
    return Row(int(r[0]), _message(str(r[1]), int(r[2]), str(r[3]), bytes(r[4]), int(r[5]),
                                   int(r[6]), float(r[7]), r[8], r[9]), float(r[7]))


def _values(r: Row) -> tuple:
    m = r.message
    return (r.id, m.camera, m.seq, m.topic, m.payload, m.qos, int(m.retain), r.created,
            _props_json(m))


def error_kind(exc: BaseException) -> str:
    """A short name for why the store failed: full, readonly, io, corrupt, cantopen, other."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    code = getattr(exc, "errno", None) if isinstance(exc, OSError) else None
    text = str(exc).lower()
    if name.startswith("SQLITE_FULL") or code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) \
            or "disk is full" in text:
        return "full"
    if (name.startswith("SQLITE_READONLY") or code in (errno.EROFS, errno.EACCES, errno.EPERM)
            or "readonly" in text or "read-only" in text):
        return "readonly"
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR, errno.ENOENT):
        return "cantopen"  # e.g. a file where the folder should be
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text \
            or "not a database" in text:
        return "corrupt"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return "cantopen"
    if name.startswith("SQLITE_IOERR") or isinstance(exc, OSError) or "i/o error" in text:
        return "io"
    return "other"


class SqliteStore:
    """Not thread-safe by itself: the outbox calls it under its own lock."""

    def __init__(self, path: str, synchronous: str = "normal") -> None:
        self.path = path
        self._synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self.count = 0
        self.bytes = 0
        self.max_id = 0
        self.seqs: dict[str, int] = {}
        self._cols = _COLUMNS

    def open(self, check: bool = False) -> None:
        """Open (creating folder and file); `check` runs a quick integrity check first.
        Raises sqlite3.Error or OSError; error_kind() names the cause."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=2.0)
        try:
            if check:
                verdict = db.execute("PRAGMA quick_check(1)").fetchone()
                if not verdict or verdict[0] != "ok":
                    raise sqlite3.DatabaseError(
                        f"database disk image is malformed ({verdict[0] if verdict else '?'})")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous.upper()}")
            db.executescript(SCHEMA)
            cols = _COLUMNS
            if not _has_props(db):  # an outbox from before the column: keep its rows
                try:
                    db.execute("ALTER TABLE messages ADD COLUMN props TEXT")
                except sqlite3.OperationalError:  # e.g. read-only: read it as it is
                    cols = _OLD_COLUMNS
            count, size, max_id = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(id), 0) "
                "FROM messages").fetchone()
            seq_row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'"
                                 ).fetchone()
            seqs = dict(db.execute("SELECT camera, next FROM seqs").fetchall())
            # seq must continue past any row, even if the seqs table is behind (defensive).
            for camera, top in db.execute("SELECT camera, MAX(seq) FROM messages GROUP BY "
                                          "camera").fetchall():
                seqs[camera] = max(seqs.get(camera, 0), int(top) + 1)
        except BaseException:
            db.close()
            raise
        self._db = db
        self._cols = cols
        self.count, self.bytes, self.seqs = int(count), int(size), seqs
        self.max_id = max(int(max_id), int(seq_row[0]) if seq_row else 0)

    def probe(self) -> None:
        """A real write (and its rollback-free commit) to see that the file takes writes."""
        db = self._require()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("CREATE TABLE IF NOT EXISTS probe (x INTEGER)")
            db.execute("DELETE FROM probe")
            db.execute("INSERT INTO probe VALUES (1)")
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
            raise

    def close(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def insert(self, rows: list[Row], seqs: dict[str, int], trim_after: int,
               max_messages: int, max_bytes: int) -> list[Row]:
        """Insert rows (with their ids) and the cameras' next seqs in one transaction; then
        drop the oldest rows with id > trim_after while over the bounds. Returns the dropped
        rows. Counts change only when the COMMIT succeeded."""
        db = self._require()
        count = self.count + len(rows)
        size = self.bytes + sum(r.size for r in rows)
        dropped: list[Row] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(f"INSERT INTO messages ({_INSERT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [_values(r) for r in rows])
            db.executemany("INSERT INTO seqs (camera, next) VALUES (?, ?) ON CONFLICT(camera) "
                           "DO UPDATE SET next = MAX(next, excluded.next)", list(seqs.items()))
            after = trim_after
            while count > max_messages or size > max_bytes:
                batch = db.execute(f"SELECT {self._cols} FROM messages WHERE id > ? ORDER BY "
                                   "id LIMIT 64", (after,)).fetchall()
                if not batch:
                    break  # only rows the sender already holds are left; they stay
                last = None
                for r in batch:
                    if count <= max_messages and size <= max_bytes:
                        break
                    row = row_of(r)
                    dropped.append(row)
                    last = row.id
                    count -= 1
                    size -= row.size
                db.execute("DELETE FROM messages WHERE id > ? AND id <= ?", (after, last))
                after = last
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
            raise
        self.count, self.bytes = count, size
        if rows:
            self.max_id = max(self.max_id, rows[-1].id)
        for camera, nxt in seqs.items():
            self.seqs[camera] = max(self.seqs.get(camera, 0), nxt)
        return dropped

    def after(self, last_id: int, limit: int) -> list[Row]:
        rows = self._require().execute(
            f"SELECT {self._cols} FROM messages WHERE id > ? ORDER BY id LIMIT ?",
            (last_id, limit)).fetchall()
        return [row_of(r) for r in rows]

    def delete(self, ids: list[int]) -> int:
        """Remove rows by id in one transaction; returns how many were there."""
        db = self._require()
        count, size = 0, 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                n, b = db.execute(f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM "
                                  f"messages WHERE id IN ({marks})", chunk).fetchone()
                db.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
                count += n
                size += b
            db.execute("COMMIT")
        except BaseException:
            self._rollback(db)
            raise
        self.count -= count
        self.bytes -= size
        return count

    def oldest_created(self) -> float | None:
        row = self._require().execute("SELECT MIN(created) FROM messages").fetchone()
        return row[0] if row else None

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # e.g. SQLITE_FULL already rolled it back

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("outbox store is not open")
        return self._db


def rescue_rows(path: str, limit: int, max_probes: int = 2000) -> tuple[list[Row], int | None]:
    """Read whatever rows a damaged file still gives, oldest first (at most `limit`), and the
    number of rows it claims to hold (None when even that is unreadable). Never raises."""
    rows: list[Row] = []
    claimed: int | None = None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error:
        return rows, None
    try:
        try:
            claimed = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        except sqlite3.Error:
            claimed = None
        try:
            cols = _COLUMNS if _has_props(db) else _OLD_COLUMNS
        except sqlite3.Error:
            cols = _COLUMNS
        last, probes, step = 0, 0, 1
        while len(rows) < limit and probes < max_probes:
            probes += 1
            try:
                batch = db.execute(f"SELECT {cols} FROM messages WHERE id > ? ORDER BY id "
                                   "LIMIT 32", (last,)).fetchall()
            except sqlite3.Error:
                try:  # up to the damage one row at a time
                    batch = db.execute(f"SELECT {cols} FROM messages WHERE id > ? ORDER BY "
                                       "id LIMIT 1", (last,)).fetchall()
                except sqlite3.Error:
                    last += step  # a damaged page: step over its ids, faster and faster
                    step = min(step * 2, 4096)
                    continue
            if not batch:
                break
            step = 1
            for r in batch:
                try:
                    rows.append(row_of(r))
                except (TypeError, ValueError):
                    pass
            last = int(batch[-1][0])
    finally:
        db.close()
    return rows[:limit], claimed


def rescue_seqs(path: str) -> dict[str, int]:
    """The seqs table of a damaged file, as far as it reads; never raises."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    except sqlite3.Error:
        return {}
    try:
        return {str(c): int(n) for c, n in db.execute("SELECT camera, next FROM seqs")}
    except (sqlite3.Error, TypeError, ValueError):
        return {}
    finally:
        db.close()

