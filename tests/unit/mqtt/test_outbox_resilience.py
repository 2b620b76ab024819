"""The outbox never raises because of its file and never loses a result silently: real SQLite
files made unusable in real ways (a folder that is a file, garbage bytes, a lost WAL tail)."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3

from prometheus_client import CollectorRegistry

from edged.mqtt.contract import Message
from edged.mqtt.outbox import Outbox
from edged.mqtt.seqledger import SeqLedger
from edged.service.metrics import LOST_REASONS, Metrics


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _msg(seq: int, payload: bytes) -> Message:
    return Message("t", payload, 1, False, "result", camera="cam", seq=seq)


def _box(path, metrics=None, clock=None, boot="boot-a", **kw) -> Outbox:  # noqa: ANN001, ANN003
    return Outbox(str(path), kw.pop("max_messages", 1000), 10**7, metrics=metrics,
                  monotonic=clock or Clock(), boot_id=boot, **kw)


def _lost(metrics: Metrics, reason: str) -> float:
    return metrics.registry.get_sample_value("edged_results_lost_total", {"reason": reason})


def test_every_lost_reason_is_exported_at_zero():
    m = Metrics(CollectorRegistry())
    assert all(_lost(m, r) == 0 for r in LOST_REASONS)
    assert m.registry.get_sample_value("edged_outbox_healthy") == 1


def test_unusable_folder_runs_on_memory_then_recovers_into_the_file(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the folder should be")
    m = Metrics(CollectorRegistry())
    clock = Clock()
    box = _box(blocker / "outbox.db", m, clock)
    with caplog.at_level(logging.INFO, "edged.mqtt.outbox"):
        box.open()  # does not raise
        assert not box.healthy and box.problems()
        assert m.registry.get_sample_value("edged_outbox_healthy") == 0
        for seq in range(5):
            box.put(_msg(seq, b"p%d" % seq))
        assert box.memory_count == 5 and box.count == 0 and box.waiting == 5
        rows = box.after(0, 3)
        assert [r.seq for r in rows] == [0, 1, 2]
        assert box.delete([rows[0].id]) == 1 and box.waiting == 4
        blocker.unlink()
        box.put(_msg(5, b"p5"))  # retry not due yet: still memory
        assert box.memory_count == 5
        clock.t += 2
        box.put(_msg(6, b"p6"))
        assert box.healthy and box.memory_count == 0 and not box.problems()
    db = sqlite3.connect(blocker / "outbox.db")
    assert [s for (s,) in db.execute("SELECT seq FROM messages ORDER BY id")] == [1, 2, 3, 4,
                                                                                 5, 6]
    assert box.count == 6 == db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    assert [r.seq for r in box.after(rows[-1].id, 10)] == [3, 4, 5, 6]  # order kept
    episodes = [r for r in caplog.records if "kept in memory" in r.getMessage()]
    assert len(episodes) == 1, "one log line per episode"
    assert any("usable again" in r.getMessage() for r in caplog.records)
    box.close()


def test_memory_fallback_overflow_is_counted_and_leaves_exact_gaps(tmp_path):
    blocker = tmp_path / "state"
    blocker.write_text("x")
    m = Metrics(CollectorRegistry())
    box = _box(blocker / "outbox.db", m, fallback_max_messages=10)
    box.open()
    handed = box.after(0, 3)  # in flight: never dropped
    for seq in range(40):
        box.put(_msg(seq, b"p"))
    kept = [r.seq for r in box.after(0, 100)]
    assert len(kept) == 10 and kept == list(range(30, 40)) and not handed
    assert _lost(m, "fallback_full") == 30 == 40 - len(kept)
    box.close()  # what is only in memory at exit is lost and counted
    assert _lost(m, "shutdown") == 10


def test_corrupt_file_is_moved_aside_rescued_and_replaced(tmp_path):
    path = tmp_path / "outbox.db"
    first = _box(path)
    first.open()
    for seq in range(50):
        first.put(_msg(seq, b"x" * 100))
    first.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # wreck the last page
        f.seek(size - 4096)
        f.write(os.urandom(4096))
    m = Metrics(CollectorRegistry())
    again = _box(path, m)
    again.open()
    aside = [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert aside and aside[0].startswith("outbox.db.corrupt-20"), aside
    assert again.healthy
    rescued = [r.seq for r in again.after(0, 100)]
    assert rescued == sorted(rescued) and len(rescued) < 50
    assert _lost(m, "store_damaged") == 50 - len(rescued)
    assert again.next_seq("cam") == 50  # exact: the ledger was written by a clean stop
    assert m.registry.get_sample_value("edged_outbox_moved_aside_total") == 1
    again.close()


def test_garbage_file_starts_fresh(tmp_path):
    path = tmp_path / "outbox.db"
    path.write_bytes(os.urandom(10000))
    box = _box(path)
    box.open()
    assert box.healthy and box.count == 0
    box.put(_msg(0, b"p"))
    assert box.count == 1
    box.close()


def _killed_run(path, boot: str, n: int, wal: bool = True) -> None:  # noqa: ANN001
    """What a run leaves when killed (its files copied while it still has them open); without
    `wal`, what a power cut leaves: the newest commits (the WAL) never reached the disk."""
    live = path.parent / "live"
    live.mkdir()
    box = _box(live / path.name, boot=boot, seq_margin=100)
    box.open()
    for seq in range(n):
        box.put(_msg(seq, b"p"))
    for suffix in ("", "-wal", ".seq") if wal else ("", ".seq"):
        shutil.copyfile(f"{live / path.name}{suffix}", f"{path}{suffix}")
    box.close()


def test_unclean_stop_same_boot_continues_exactly(tmp_path):
    _killed_run(tmp_path / "outbox.db", "boot-a", 30)
    m = Metrics(CollectorRegistry())
    box = _box(tmp_path / "outbox.db", m, boot="boot-a")
    box.open()
    assert box.next_seq("cam") == 30 and _lost(m, "crash") == 0
    box.close()


def test_lost_tail_after_a_reboot_skips_the_reserved_range_and_counts_it(tmp_path, caplog):
    path = tmp_path / "outbox.db"
    _killed_run(path, "boot-a", 30, wal=False)
    m = Metrics(CollectorRegistry())
    reserved = SeqLedger(str(path) + ".seq").load().next["cam"]
    assert reserved >= 30
    box = _box(path, m, boot="boot-b")
    with caplog.at_level(logging.WARNING):
        box.open()
    replayed = [r.seq for r in box.after(0, 1000)]
    base = max(replayed) + 1 if replayed else 0
    assert box.next_seq("cam") == reserved, "seq never repeats"
    assert _lost(m, "crash") == reserved - base
    assert any("did not stop cleanly" in r.getMessage() for r in caplog.records)
    box.close()


def test_file_damaged_while_running_is_set_aside_and_the_queue_goes_on(tmp_path):
    path = tmp_path / "outbox.db"
    m = Metrics(CollectorRegistry())
    clock = Clock()
    box = _box(path, m, clock)
    box.open()
    for seq in range(20):
        box.put(_msg(seq, b"x" * 100))
    box._store.close()  # the file is replaced by garbage under the running daemon
    path.write_bytes(os.urandom(20000))
    for ext in ("-wal", "-shm"):
        if os.path.exists(f"{path}{ext}"):
            os.remove(f"{path}{ext}")
    box._degrade("read", sqlite3.DatabaseError("database disk image is malformed"))
    box.put(_msg(20, b"y"))  # into memory
    clock.t += 5
    box.put(_msg(21, b"y"))  # the retry sets the file aside, starts fresh
    assert box.healthy and box.memory_count == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("outbox.db.corrupt-")]
    assert [r.seq for r in box.after(0, 100)] == [20, 21]
    assert _lost(m, "store_damaged") == 20  # the rows it held, as last counted
    box.close()


def test_ledger_survives_a_torn_write_and_stays_ahead_of_every_seq(tmp_path):
    path = tmp_path / "outbox.db"
    box = _box(path, seq_margin=10)
    box.open()
    for seq in range(95):
        box.put(_msg(seq, b"p"))
        # Every seq taken is below what the ledger has on disk.
        assert SeqLedger(f"{path}.seq").load().next["cam"] > seq
    box.close()
    ledger = SeqLedger(f"{path}.seq")
    newest = ledger.load()
    assert newest.clean and newest.next == {"cam": 95}
    with open(f"{path}.seq", "r+b") as f:  # a torn write of the newest slot
        f.seek((newest.gen % 2) * 16384 + 30)
        f.write(b"garbage")
    older = SeqLedger(f"{path}.seq").load()
    assert older is not None and older.gen == newest.gen - 1
