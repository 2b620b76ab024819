"""Fault injection on the outbox, with real parts: a really full filesystem (a tiny tmpfs), a
read-only outbox.db and a read-only folder (read-only bind mounts, which stop root too), a
damaged file and a file that lost its tail in a power cut. For each: the daemon stays up, live
results keep reaching a real mosquitto subscriber, memory stays bounded, and every seq is
accounted for: delivered, counted lost (a gap), or still kept in the outbox file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edged.app.daemon import Daemon
from edged.config import load_config
from edged.mqtt.seqledger import SeqLedger
from edged.service.metrics import LOST_REASONS
from tests.conftest import demo_config, start_edged, write_config
from tests.helpers.broker import free_port
from tests.helpers.durable import DurableSubscriber, persistent_broker
from tests.helpers.faultfs import FileSizeLimit, Mounts, fill, rss_mb

RSS_LIMIT_MB = 400
CAMERA = "conveyor"
NUMBERS: dict[str, dict] = {}  # per test: delivered / lost / kept, printed for docs/reliability


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_tracebacks():
    """In-process daemons: no log record may carry a traceback (one clear line per error)."""
    handler = _Tracebacks()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


@pytest.fixture
def mounts():
    m = Mounts()
    yield m
    m.close()


@pytest.fixture
def env(tmp_path):
    broker = persistent_broker(tmp_path).start()
    sub = DurableSubscriber(broker.port, "edged/+/+/result").start()
    yield broker, sub
    sub.stop()
    broker.stop()


def _need_root_mount(why: str | None, what: str) -> None:
    if why is not None:
        pytest.skip(f"{what} needs a mount, not permitted here: {why}")


def _config(tmp_path: Path, port: int, outbox: Path, **outbox_cfg):  # noqa: ANN003, ANN202
    cfg = demo_config(port, loop=True, fps=25)
    cfg["mqtt"]["outbox"] = {"path": str(outbox), "retry_max_s": 1, **outbox_cfg}
    return load_config(write_config(tmp_path / "c.yaml", cfg))


class InProcess:
    """The daemon in this process, so its registry is readable after it stopped."""

    def __init__(self, cfg) -> None:  # noqa: ANN001
        self.registry = CollectorRegistry()
        self.daemon = Daemon(cfg, self.registry)

    def __enter__(self) -> InProcess:
        self.daemon.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.daemon.stop()

    def value(self, name: str, labels: dict | None = None) -> float:
        return self.registry.get_sample_value(name, labels or {}) or 0.0

    def lost(self) -> dict[str, int]:
        return {r: int(self.value("edged_results_lost_total", {"reason": r}))
                for r in LOST_REASONS}

    def taken(self) -> int:
        """How many seqs the camera has taken (the next seq)."""
        lane = self.daemon.pipeline.publisher._lanes.get(CAMERA)
        return lane.seq if lane is not None else 0

    def wait(self, predicate, timeout: float, what: str) -> None:  # noqa: ANN001
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            assert rss_mb() < RSS_LIMIT_MB
            time.sleep(0.1)


def _seen(sub: DurableSubscriber) -> set[int]:
    return {m["seq"] for m in sub.results() if m["camera"] == CAMERA}


def _kept(path: Path) -> set[int]:
    if not path.exists():
        return set()
    db = sqlite3.connect(path)
    try:
        return {s for (s,) in db.execute("SELECT seq FROM messages WHERE camera = ?", (CAMERA,))}
    finally:
        db.close()


def _file_count(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        db.close()


def _account(name: str, run: InProcess, sub: DurableSubscriber, outbox: Path,
             first: int = 0) -> None:
    """Every seq from `first` up to the last taken: delivered, kept in the file, or lost and
    counted; the count of the gaps equals edged_results_lost_total exactly."""
    time.sleep(1.0)  # the last deliveries reach the subscriber
    taken = run.taken()
    seen, kept = _seen(sub), _kept(outbox)
    missing = set(range(first, taken)) - seen - kept
    lost = run.lost()
    NUMBERS[name] = {"taken": taken - first, "delivered": len(seen & set(range(first, taken))),
                     "kept": len(kept - seen), "lost_gaps": len(missing),
                     "counted": sum(lost.values()),
                     **{k: v for k, v in lost.items() if v}}
    print(f"\n{name}: {json.dumps(NUMBERS[name])}")
    assert not (seen - set(range(taken))), "a seq was delivered that was never taken"
    assert len(missing) == sum(lost.values()), (sorted(missing)[:20], lost)


def test_full_filesystem_keeps_publishing_from_memory_and_counts_what_overflows(
        tmp_path, env, mounts):
    broker, sub = env
    disk = tmp_path / "disk"
    why = mounts.tmpfs(disk, "2m")
    limit = None
    if why is not None:  # no mount here: another real way to make the writes fail
        disk.mkdir(exist_ok=True)
        limit = FileSizeLimit(96 * 1024)
    outbox = disk / "outbox.db"
    cfg = _config(tmp_path, broker.port, outbox, fallback_max_messages=40)
    with InProcess(cfg) as run:
        run.wait(lambda: len(_seen(sub)) >= 20, 30, "first results")
        if limit is None:
            filler = fill(disk, leave=48 * 1024)
        else:
            limit.__enter__()
        try:
            # The WAL grows with every result: the file soon cannot take writes.
            run.wait(lambda: run.value("edged_outbox_healthy") == 0, 60, "degraded")
            problems = run.daemon.readiness()["problems"]
            assert any("outbox: degraded" in p and "full" in p for p in problems), problems
            assert run.value("edged_outbox_store_failures_total", {"kind": "full"}) >= 1 or \
                run.value("edged_outbox_store_failures_total", {"kind": "io"}) >= 1
            at = run.taken()
            run.wait(lambda: max(_seen(sub)) > at + 50, 30, "live results while full")
            # Broker down too: the memory fallback (40) overflows; each drop is counted.
            broker.stop()
            run.wait(lambda: run.lost()["fallback_full"] > 20, 30, "fallback overflow")
            assert run.value("edged_outbox_fallback_messages") <= 40 + 100
            in_file = run.value("edged_outbox_messages")
            assert in_file == _file_count(outbox), "the gauge is what is on disk"
            broker.start()
            at = run.taken()
            run.wait(lambda: max(_seen(sub)) > at + 20, 30, "results after the outage")
        finally:
            if limit is None:
                filler.unlink()  # room again
            else:
                limit.lift()
        run.wait(lambda: run.value("edged_outbox_healthy") == 1, 30, "recovered")
        assert not [p for p in run.daemon.readiness()["problems"] if "outbox" in p]
        at = run.taken()
        run.wait(lambda: max(_seen(sub)) > at + 20, 30, "results after recovery")
        assert all(t.is_alive() for t in [run.daemon.pipeline.publisher._thread])
    assert run.value("edged_outbox_messages") == _file_count(outbox)
    _account("full filesystem", run, sub, outbox)
    assert run.lost()["fallback_full"] > 0


def test_read_only_outbox_file_replays_it_and_publishes_live_from_memory(
        tmp_path, env, mounts):
    broker, sub = env
    outbox = tmp_path / "state" / "outbox.db"
    cfg = _config(tmp_path, broker.port, outbox)
    # A first run while the broker is down leaves results in the file.
    broker.stop()
    with InProcess(cfg) as first:
        first.wait(lambda: first.taken() >= 60, 30, "results into the outbox")
    backlog = _kept(outbox)
    assert len(backlog) >= 60
    if os.geteuid() == 0:
        _need_root_mount(mounts.read_only(outbox), "a read-only outbox.db for root")
    else:
        outbox.chmod(0o444)
    broker.start()
    with InProcess(cfg) as run:
        run.wait(lambda: backlog <= _seen(sub), 30, "the read-only backlog replayed")
        at = run.taken()
        run.wait(lambda: max(_seen(sub)) > at + 40, 30, "live results")
        problems = run.daemon.readiness()["problems"]
        assert any("outbox: degraded" in p and "read-only" in p for p in problems), problems
        assert run.value("edged_outbox_healthy") == 0
        # Delivered rows cannot be deleted from a read-only file: the gauge says what is there.
        assert run.value("edged_outbox_messages") == _file_count(outbox) == len(backlog)
        if os.geteuid() == 0:
            mounts.undo(outbox)
        else:
            outbox.chmod(0o644)
        run.wait(lambda: run.value("edged_outbox_healthy") == 1, 30, "writable again")
        run.wait(lambda: run.value("edged_outbox_messages") < len(backlog), 30,
                 "delivered rows removed")
        at = run.taken()
        run.wait(lambda: max(_seen(sub)) > at + 20, 30, "results after recovery")
    assert run.value("edged_outbox_messages") == _file_count(outbox)
    _account("read-only outbox.db", run, sub, outbox)


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


def _start_on_a_read_only_folder(tmp_path, broker, mounts):  # noqa: ANN001, ANN202
    """`edged run` with its outbox in a folder it cannot write (a read-only bind mount for
    root); (the folder, the metrics port, the process)."""
    folder = tmp_path / "state-ro"
    folder.mkdir()
    if os.geteuid() == 0:
        _need_root_mount(mounts.read_only(folder), "a read-only folder for root")
    else:
        folder.chmod(0o555)
    port = free_port()
    cfg = demo_config(broker.port, loop=True, fps=25)
    cfg["mqtt"]["outbox"] = {"path": str(folder / "outbox.db")}
    cfg["metrics"] = {"listen": f"127.0.0.1:{port}"}
    return folder, port, start_edged("run", "-c", str(write_config(tmp_path / "c.yaml", cfg)))


def test_read_only_folder_the_daemon_starts_and_publishes_from_memory(tmp_path, env, mounts):
    broker, sub = env
    folder, port, proc = _start_on_a_read_only_folder(tmp_path, broker, mounts)
    try:
        deadline = time.monotonic() + 30
        while len(_seen(sub)) < 100:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no live results"
            assert rss_mb(proc.pid) < RSS_LIMIT_MB
            time.sleep(0.2)
        status, body = _get(f"http://127.0.0.1:{port}/readyz")
        ready = json.loads(body)
        assert status == 503 and any("outbox: degraded" in p and "read-only" in p
                                     for p in ready["problems"]), ready
        metrics = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
        assert _metric(metrics, "edged_outbox_healthy") == 0
        assert _metric(metrics, "edged_outbox_messages") == 0  # nothing is on disk
        assert 'edged_results_lost_total{reason="shutdown"} 0.0' in metrics
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "kept in memory" in ln]) == 1, err
    assert "kept in the outbox" not in err, "the exit log must not claim results are kept"
    assert not list(folder.iterdir())
    seen = _seen(sub)
    NUMBERS["read-only folder"] = {"delivered": len(seen), "gaps": max(seen) + 1 - len(seen)}
    print(f"\nread-only folder: {json.dumps(NUMBERS['read-only folder'])}")
    assert seen == set(range(max(seen) + 1)), "broker up: nothing may be missing"


def _run_with_backlog(tmp_path: Path, broker, sub,  # noqa: ANN001
                      outbox: Path) -> tuple[InProcess, int]:
    """A first run: some results delivered, then the broker goes down and results stay in the
    outbox; returns the run and the first seq that was not delivered."""
    cfg = _config(tmp_path, broker.port, outbox)
    with InProcess(cfg) as run:
        run.wait(lambda: len(_seen(sub)) >= 30, 30, "first results")
        broker.stop()
        at = run.taken()
        run.wait(lambda: run.taken() >= at + 200, 30, "a backlog in the outbox")
    return run, max(_seen(sub)) + 1


def test_damaged_outbox_at_start_is_moved_aside_rescued_and_counted(tmp_path, env):
    broker, sub = env
    outbox = tmp_path / "state" / "outbox.db"
    first, _ = _run_with_backlog(tmp_path, broker, sub, outbox)
    before = _kept(outbox)
    size = outbox.stat().st_size
    with open(outbox, "r+b") as f:  # two pages in the middle of the file are garbage
        f.seek(size // 2 // 4096 * 4096)
        f.write(os.urandom(8192))
    broker.start()
    cfg = _config(tmp_path, broker.port, outbox)
    restarted_at = time.time()
    with InProcess(cfg) as run:
        assert run.daemon.sink.outbox.healthy
        aside = [p.name for p in outbox.parent.iterdir()
                 if ".corrupt-" in p.name and not p.name.endswith(("-wal", "-shm"))]
        assert len(aside) == 1 and aside[0].startswith("outbox.db.corrupt-20"), aside
        assert run.value("edged_outbox_moved_aside_total") == 1
        run.wait(lambda: max(_seen(sub)) > first.taken() + 40, 30, "live results")
    assert run.value("edged_outbox_messages") == _file_count(outbox)
    live = [m["seq"] for m in sub.results() if m["ts"] >= restarted_at]
    assert min(live) == first.taken(), "a clean stop: seq continues exactly"
    rescued = before & _seen(sub)
    assert rescued, "what could be read was replayed"
    assert run.lost()["store_damaged"] == len(before - rescued)
    _account("damaged outbox.db", run, sub, outbox)


def test_power_cut_that_truncated_the_outbox_never_repeats_a_seq(tmp_path, env):
    broker, sub = env
    live = tmp_path / "live" / "outbox.db"
    cfg = _config(tmp_path, broker.port, live)
    cut = tmp_path / "state" / "outbox.db"
    cut.parent.mkdir()
    with InProcess(cfg) as first:
        first.wait(lambda: len(_seen(sub)) >= 30, 30, "first results")
        broker.stop()
        at = first.taken()
        first.wait(lambda: first.taken() >= at + 200, 30, "a backlog in the outbox")
        # The power cut: what is on the disk at this instant, with the WAL's tail torn off
        # (its last commits never reached the disk) and the ledger written in that boot.
        shutil.copyfile(live, cut)
        wal = Path(f"{live}-wal").read_bytes()
        Path(f"{cut}-wal").write_bytes(wal[:len(wal) // 2])
        shutil.copyfile(f"{live}.seq", f"{cut}.seq")
        taken_at_cut = first.taken()
    ledger = SeqLedger(f"{cut}.seq")
    state = ledger.load()
    assert state is not None and not state.clean
    ledger.state = state
    ledger.state.boot = "the-boot-before-the-power-cut"
    ledger.write()
    reserved = state.next[CAMERA]
    assert reserved >= taken_at_cut
    delivered_before = _seen(sub)
    broker.start()
    restarted_at = time.time()
    with InProcess(_config(tmp_path, broker.port, cut)) as run:
        run.wait(lambda: max(_seen(sub)) > reserved + 40, 30, "live results")
    live = [m["seq"] for m in sub.results() if m["ts"] >= restarted_at]
    assert live and min(live) == reserved, "seq continues after the reserved range, never below"
    crash = run.lost()["crash"]
    base = reserved - crash
    # Every seq below the reserved range start is delivered (before, or replayed now).
    assert set(range(base)) <= _seen(sub) | _kept(cut)
    # In the skipped range every seq was either delivered before the cut or is a counted gap.
    gaps = set(range(base, reserved)) - _seen(sub)
    assert len(gaps) + len(set(range(base, reserved)) & _seen(sub)) == crash
    NUMBERS["power cut (WAL torn)"] = {"taken_before_cut": taken_at_cut, "replayed": len(
        set(range(base)) - delivered_before), "skipped_counted": crash, "gaps": len(gaps)}
    print(f"\npower cut: {json.dumps(NUMBERS['power cut (WAL torn)'])}")
    assert not (_seen(sub) - set(range(run.taken()))), "no seq beyond what was taken"


def _ranges(text: str) -> set[int]:
    """The seqs of 'conveyor seq 3-7, 9' in a log line."""
    out: set[int] = set()
    spans = text.split(f"{CAMERA} seq ", 1)[1].split(";")[0]
    for span in spans.split(","):
        span = span.strip().split(" ")[0]
        a, _, b = span.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def test_exit_while_degraded_and_disconnected_says_what_is_lost(tmp_path, env, mounts):
    broker, sub = env
    folder, port, proc = _start_on_a_read_only_folder(tmp_path, broker, mounts)
    try:
        deadline = time.monotonic() + 30
        while len(_seen(sub)) < 50:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        broker.stop()
        deadline = time.monotonic() + 30
        while True:  # results pile up in memory
            metrics = _get(f"http://127.0.0.1:{port}/metrics")[1].decode()
            if _metric(metrics, "edged_outbox_fallback_messages") >= 20:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "kept in the outbox" not in err, err
    exit_line = [ln for ln in err.splitlines() if "not delivered" in ln]
    assert exit_line and "held only in memory" in exit_line[0], err
    lost_line = [ln for ln in err.splitlines() if "were lost at exit" in ln]
    assert len(lost_line) == 1, err
    n = int(lost_line[0].split(": ", 2)[-1].split(" results held")[0].rsplit(" ", 1)[-1])
    lost = _ranges(lost_line[0])
    assert len(lost) == n >= 20
    broker.start()  # what the broker took before it stopped reaches the subscriber now
    sub.wait_for(lambda: False, 2.0)
    seen = _seen(sub)
    # Every seq up to the last one taken: delivered before the broker went, or named lost.
    assert set(range(max(lost) + 1)) == seen | lost, sorted(set(range(max(lost) + 1)) - seen - lost)
    NUMBERS["exit while degraded"] = {"delivered": len(seen), "lost_at_exit": n}
    print(f"\nexit while degraded: {json.dumps(NUMBERS['exit while degraded'])}")
