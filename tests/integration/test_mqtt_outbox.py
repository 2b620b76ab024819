"""The durable outbox: unit behaviour of the store, then broker outages, SIGKILL and a full
outbox against a real mosquitto that the tests stop and restart."""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time

from prometheus_client import CollectorRegistry

from edged.config import OutboxConfig, load_config
from edged.app.daemon import Daemon
from edged.mqtt.contract import Message
from edged.mqtt.outbox import Outbox, outbox_path
from tests.conftest import demo_config, start_edged, wait_until, write_config
from tests.helpers.durable import DurableSubscriber, first_seen, persistent_broker

# --- the store ---------------------------------------------------------------------------------

def result(camera: str, seq: int, topic: str, payload: bytes, sha: str | None = None) -> Message:
    props = (("model_sha256", sha),) if sha else ()
    return Message(topic, payload, 1, False, "result", camera=camera, seq=seq,
                   user_properties=props)


def test_rows_come_back_in_order_and_seq_survives_reopen(tmp_path):
    box = Outbox(str(tmp_path / "o.db"), 100, 10**6)
    box.open()
    for seq in range(5):
        box.put(result("a", seq, "t/a", b"x%d" % seq, "abc"))
    box.put(result("b", 0, "t/b", b"y"))
    rows = box.after(0, 100)
    assert [(r.camera, r.seq) for r in rows] == [("a", 0), ("a", 1), ("a", 2), ("a", 3),
                                                   ("a", 4), ("b", 0)]
    assert rows[0].message == result("a", 0, "t/a", b"x0", "abc")  # kept whole
    assert [r.seq for r in box.after(rows[2].id, 2)] == [3, 4]
    assert box.delete([rows[0].id, rows[1].id, 999999]) == 2
    box.close()
    again = Outbox(str(tmp_path / "o.db"), 100, 10**6)
    again.open()
    assert again.next_seq("a") == 5 and again.next_seq("b") == 1 and again.next_seq("c") == 0
    assert again.count == 4 and again.size_bytes == 3 * 2 + 1
    mode = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    again.close()
    again.close()  # idempotent


def test_full_outbox_drops_oldest_by_count_and_by_bytes(tmp_path, caplog):
    dropped: list[int] = []
    box = Outbox(str(tmp_path / "o.db"), 10, 10**6, on_drop=dropped.append)
    box.open()
    with caplog.at_level(logging.WARNING, "edged.mqtt.outbox"):
        for seq in range(25):
            box.put(result("a", seq, "t", b"p"))
    assert [r.seq for r in box.after(0, 100)] == list(range(15, 25))
    assert sum(dropped) == 15 and box.count == 10
    assert len([r for r in caplog.records if "is full" in r.message]) == 1  # once per episode
    box.close()
    by_bytes = Outbox(str(tmp_path / "b.db"), 1000, 1024)
    by_bytes.open()
    for seq in range(10):
        by_bytes.put(result("a", seq, "t", b"z" * 300))
    assert by_bytes.size_bytes <= 1024 and [r.seq for r in by_bytes.after(0, 99)] == [7, 8, 9]
    by_bytes.close()


def test_outbox_from_before_the_props_column_replays_with_its_model_hash(tmp_path):
    """Users upgrade in place: rows an older edged wrote keep their model hash."""
    db = sqlite3.connect(tmp_path / "old.db")
    db.executescript("""
        CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL,
            seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
            qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL,
            model_sha256 TEXT);
        CREATE TABLE seqs (camera TEXT PRIMARY KEY, next INTEGER NOT NULL);
        INSERT INTO messages (camera, seq, topic, payload, qos, retain, created, model_sha256)
            VALUES ('a', 7, 't/a', x'7b7d', 1, 0, 1.0, 'feed');
        INSERT INTO seqs VALUES ('a', 8);""")
    db.close()
    box = Outbox(str(tmp_path / "old.db"), 100, 10**6)
    box.open()
    [row] = box.after(0, 10)
    assert row.message == result("a", 7, "t/a", b"{}", "feed") and box.next_seq("a") == 8
    box.put(result("a", 8, "t/a", b"{}", "beef"))
    assert box.after(row.id, 10)[0].message.user_properties == (("model_sha256", "beef"),)
    box.close()


def test_outbox_path_default_and_state_directory(tmp_path):
    assert outbox_path(OutboxConfig(), {}) == "/var/lib/edged/outbox.db"
    assert outbox_path(OutboxConfig(), {"STATE_DIRECTORY": "/s/edged"}) == "/s/edged/outbox.db"
    assert outbox_path(OutboxConfig(path="/x/o.db"), {"STATE_DIRECTORY": "/s"}) == "/x/o.db"


def test_outbox_that_cannot_be_created_degrades_instead_of_failing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    box = Outbox(str(blocker / "sub" / "outbox.db"), 1, 1024)
    box.open()  # edged never refuses to start because of its outbox
    assert not box.healthy
    assert "outbox.db" in box.problems()[0] and "degraded" in box.problems()[0]
    box.close()


# --- against a real broker ----------------------------------------------------------------------

def _paced(port: int, **extra) -> dict:  # noqa: ANN003
    """The demo video looped at 20 results/s."""
    cfg = demo_config(port, loop=True, fps=20)
    cfg["mqtt"].update(extra)
    return cfg


def _assert_complete_and_ordered(results: list[dict]) -> list[int]:
    seqs = [m["seq"] for m in results]
    firsts = first_seen(seqs)
    assert firsts == sorted(firsts), "a result overtook an earlier one"
    assert firsts == list(range(max(seqs) + 1)), "a seq is missing"
    return seqs


def test_broker_down_20s_at_20_per_s_every_seq_arrives_in_order(tmp_path):
    broker = persistent_broker(tmp_path).start()
    sub = DurableSubscriber(broker.port, "edged/+/+/result").start()
    proc = start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", _paced(broker.port))))
    try:
        assert sub.wait_for(lambda: len(sub.results()) >= 20, 30)
        broker.stop()
        outage_start = max(m["seq"] for m in sub.results())
        time.sleep(20)
        assert proc.poll() is None, "the daemon must survive the outage"
        broker.start()
        # 20 s at 20/s is ~400 results made during the outage; wait for them and some live ones.
        assert sub.wait_for(lambda: max(m["seq"] for m in sub.results()) > outage_start + 450,
                            40)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        time.sleep(0.5)
        seqs = _assert_complete_and_ordered(sub.results())
        assert max(seqs) > outage_start + 450
    finally:
        proc.kill()
        sub.stop()
        broker.stop()


def test_sigkill_during_outage_then_restart_replays_and_seq_continues(tmp_path):
    broker = persistent_broker(tmp_path).start()
    sub = DurableSubscriber(broker.port, "edged/+/+/result").start()
    cfg = write_config(tmp_path / "c.yaml", _paced(broker.port))
    first = start_edged("run", "-c", str(cfg))
    second = None
    try:
        assert sub.wait_for(lambda: len(sub.results()) >= 10, 30)
        broker.stop()
        time.sleep(3)  # ~60 results go to the outbox only
        first.send_signal(signal.SIGKILL)
        first.wait(5)
        restarted_at = time.time()
        second = start_edged("run", "-c", str(cfg))
        time.sleep(2)
        broker.start()
        assert sub.wait_for(lambda: any(m["ts"] > restarted_at + 2 for m in sub.results()), 30)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=20)
        assert second.returncode == 0, err
        time.sleep(0.5)
        results = sub.results()
        _assert_complete_and_ordered(results)
        before = [m["seq"] for m in results if m["ts"] < restarted_at]
        after = [m["seq"] for m in results if m["ts"] >= restarted_at]
        assert len(set(before)) > 20, "results made during the outage were replayed"
        assert min(after) == max(before) + 1, "seq continues across the restart"
        assert min(m["frame"] for m in results if m["ts"] >= restarted_at) == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
        sub.stop()
        broker.stop()


def test_full_outbox_drops_oldest_counts_them_and_keeps_running(tmp_path, caplog):
    # The subscriber's session is made first, then the broker goes down for the whole run.
    broker = persistent_broker(tmp_path).start()
    port = broker.port
    sub = DurableSubscriber(port, "edged/+/+/result").start()
    broker.stop()
    cfg_dict = demo_config(port)
    cfg_dict["mqtt"]["outbox"] = {"max_messages": 30}
    cfg = load_config(write_config(tmp_path / "c.yaml", cfg_dict))
    registry = CollectorRegistry()
    daemon = Daemon(cfg, registry)
    get = registry.get_sample_value
    with caplog.at_level(logging.INFO):
        daemon.start()
        try:
            deadline = time.monotonic() + 60
            while not daemon.finished:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            # The capture has ended; the last frames may still be in the workers, and their
            # results on their way through the publisher to the store.
            assert wait_until(
                lambda: get("edged_frames_processed_total", {"camera": "conveyor"}) == 600, 15)
            frames = 600
            ok = wait_until(
                lambda: get("edged_outbox_dropped_total", {"reason": "full"}) == frames - 30, 15)
            assert ok, [(s.name, s.labels, s.value) for m in registry.collect()
                        for s in m.samples if "lost" in s.name or "outbox" in s.name]
            assert get("edged_outbox_messages") == 30
            assert all(t.is_alive() for t in threading.enumerate() if t.name == "mqtt-sender")
            broker.start()
            assert sub.wait_for(lambda: len(sub.results()) >= 30, 20)
            time.sleep(0.5)
            assert [m["seq"] for m in sub.results()] == list(range(570, 600))
        finally:
            daemon.stop()
            sub.stop()
            broker.stop()
    full = [r for r in caplog.records if "is full" in r.getMessage()]
    assert len(full) == 1, [r.getMessage() for r in full]
    assert get("edged_outbox_messages") == 0
