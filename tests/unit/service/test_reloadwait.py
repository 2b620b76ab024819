"""The reload outcome file and the wait on it (no real signals: `kill` is injected)."""

from __future__ import annotations

import signal

from edged.service.reloadwait import (STATUS_NAME, ReloadStatusFile, read_outcome, reload_wait,
                                      runtime_directory)


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def test_runtime_directory_takes_the_first_of_several():
    assert runtime_directory({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == "/run/a"
    assert runtime_directory({}) is None


def test_status_file_round_trip_and_no_directory_is_a_no_op(tmp_path):
    ReloadStatusFile(str(tmp_path), pid=42).write(7, "invalid", "c.yaml:3: qos: bad")
    outcome = read_outcome(tmp_path / STATUS_NAME)
    assert (outcome.pid, outcome.started_ns, outcome.result) == (42, 7, "invalid")
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_NAME]  # no temp file left
    ReloadStatusFile(None).write(1, "applied", "")  # outside systemd: nothing to write
    (tmp_path / STATUS_NAME).write_text("{half")
    assert read_outcome(tmp_path / STATUS_NAME) is None


def test_wait_returns_the_outcome_of_the_reload_it_asked_for(tmp_path):
    """An outcome from before the signal (an earlier reload) or of another pid is not the
    answer; the first one that started after the signal is."""
    clock, sent = Clock(), []
    status = ReloadStatusFile(str(tmp_path), pid=4242)
    status.write(clock.ns - 5, "applied", "an older reload")

    def kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        if sig == signal.SIGHUP:
            return
        # The daemon answers on the third poll: first a stale write by another pid.
        if len(sent) == 2:
            ReloadStatusFile(str(tmp_path), pid=1).write(clock.ns, "applied", "not ours")
        if len(sent) == 4:
            status.write(clock.ns, "invalid", "c.yaml:12: mqtt.qos: Input should be 0, 1 or 2")

    code, line = reload_wait(4242, str(tmp_path), 10, clock_ns=clock, kill=kill,
                             sleep=clock.sleep)
    assert sent[0] == (4242, signal.SIGHUP)
    assert code == 1 and "reload invalid: c.yaml:12: mqtt.qos" in line
    assert "still running on the previous config" in line

    status.write(clock.ns - 1, "applied", "cameras +second")
    code, line = reload_wait(4242, str(tmp_path), 10, clock_ns=lambda: clock.ns,
                             kill=lambda pid, sig: None, sleep=clock.sleep)
    assert code == 1 and "did not finish the reload within 10s" in line  # older than sent


def test_wait_is_bounded_and_notices_an_exit(tmp_path):
    clock = Clock()
    code, line = reload_wait(7, str(tmp_path), 2.5, clock_ns=clock, kill=lambda p, s: None,
                             sleep=clock.sleep)
    assert code == 1 and "within 2.5s" in line
    assert clock.ns - 1_000_000_000 <= 2.6e9

    def gone_after_signal(pid: int, sig: int) -> None:
        if sig != signal.SIGHUP:
            raise ProcessLookupError

    code, line = reload_wait(7, str(tmp_path), 5, clock_ns=clock, kill=gone_after_signal,
                             sleep=clock.sleep)
    assert code == 1 and "exited during the reload" in line

    def no_such(pid: int, sig: int) -> None:
        raise ProcessLookupError

    assert reload_wait(7, str(tmp_path), 5, kill=no_such)[1] == "edged (pid 7) is not running"
