"""`systemctl reload` that tells the truth where systemd has no Type=notify-reload (252).

With `ExecReload=/bin/kill -HUP $MAINPID` systemd calls the reload done as soon as the signal
is sent, so `systemctl reload` returned 0 at once, also for a config edged then refused. Now the
daemon writes the outcome of every reload to `$RUNTIME_DIRECTORY/reload.json` (atomically), and
`edged reload-wait --pid $MAINPID` (the last ExecReload= line) sends SIGHUP and waits, bounded,
for an outcome that started after its signal: exit 0 when applied, 1 with edged's reason when
not, 1 when edged does not answer in time or exits meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATUS_NAME = "reload.json"
POLL_S = 0.05


@dataclass(frozen=True)
class ReloadOutcome:
    pid: int
    started_ns: int  # CLOCK_MONOTONIC when the reload began (the same clock in every process)
    result: str  # applied | invalid | failed
    reason: str  # the first error line, or what was applied


def runtime_directory(environ: Mapping[str, str]) -> str | None:
    """systemd's $RUNTIME_DIRECTORY (the first one when it names several)."""
    value = environ.get("RUNTIME_DIRECTORY", "")
    return value.split(":")[0] or None


class ReloadStatusFile:
    """The daemon's side: one small JSON file, replaced after each reload."""

    def __init__(self, directory: str | None, pid: int | None = None) -> None:
        self._path = Path(directory) / STATUS_NAME if directory else None
        self._pid = pid if pid is not None else os.getpid()
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ReloadStatusFile:
        return cls(runtime_directory(environ))

    def write(self, started_ns: int, result: str, reason: str) -> None:
        if self._path is None:
            return
        outcome = ReloadOutcome(self._pid, started_ns, result, reason)
        tmp = self._path.with_name(f".{STATUS_NAME}.{self._pid}")
        try:
            tmp.write_text(json.dumps(asdict(outcome)))
            os.replace(tmp, self._path)  # a reader never sees half a file
            self._failed = False
        except OSError as exc:
            if not self._failed:
                log.warning("reload: cannot write %s: %s (systemctl reload will time out)",
                            self._path, exc.strerror or exc)
            self._failed = True


def read_outcome(path: Path) -> ReloadOutcome | None:
    try:
        data = json.loads(path.read_text())
        return ReloadOutcome(int(data["pid"]), int(data["started_ns"]), str(data["result"]),
                             str(data["reason"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet (or by a newer/older edged): keep waiting


def reload_wait(pid: int, directory: str, timeout_s: float, *,
                clock_ns: Callable[[], int] = time.monotonic_ns,
                kill: Callable[[int, int], None] = os.kill,
                sleep: Callable[[float], None] = time.sleep) -> tuple[int, str]:
    """Signal `pid` to reload and wait for its outcome: (exit code, one line)."""
    path = Path(directory) / STATUS_NAME
    sent = clock_ns()
    try:
        kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return 1, f"edged (pid {pid}) is not running"
    except PermissionError:
        return 1, f"not allowed to signal pid {pid}"
    deadline = sent + int(timeout_s * 1e9)
    while clock_ns() < deadline:
        outcome = read_outcome(path)
        if outcome is not None and outcome.pid == pid and outcome.started_ns >= sent:
            if outcome.result == "applied":
                return 0, f"reload applied: {outcome.reason}"
            return 1, f"reload {outcome.result}: {outcome.reason}; still running on the " \
                      "previous config"
        try:
            kill(pid, 0)
        except ProcessLookupError:
            return 1, f"edged (pid {pid}) exited during the reload"
        except PermissionError:
            pass  # alive, just not ours to signal
        sleep(POLL_S)
    return 1, f"edged (pid {pid}) did not finish the reload within {timeout_s:g}s"
