"""sd_notify(3) without libsystemd: datagrams to $NOTIFY_SOCKET, and the watchdog thread.

systemd hands a Type=notify service the socket path in $NOTIFY_SOCKET ('/run/...' or an
abstract socket written '@name'); each datagram holds newline-separated KEY=VALUE lines.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends state lines to the service manager; a no-op when not run by one."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Notifier:
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram of `lines`; False if there is no socket or sending failed."""
        if self._address is None:
            return False
        # '@' marks an abstract socket; its real name starts with a NUL byte.
        addr = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        data = "\n".join(lines).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, addr)
                self._failed = False
                return True
            except OSError as exc:
                if not self._failed:  # once per failure episode, not once per ping
                    log.warning("sd_notify to %s failed: %s", self._address, exc)
                self._failed = True
                return False

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def reloading(self, clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        # systemd matches MONOTONIC_USEC against its own CLOCK_MONOTONIC reading.
        self.notify("RELOADING=1", f"MONOTONIC_USEC={clock_ns() // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked for."""
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = environ.get("WATCHDOG_PID", "")
    if wpid and wpid != str(pid):
        return None  # the watchdog is meant for another process (e.g. our parent)
    return int(usec) / 2e6


class Watchdog:
    """A named thread that pings WATCHDOG=1 every `interval` while `healthy()` returns no
    problems; when it does, the pings stop (and the problems are logged once), so systemd
    restarts a wedged daemon after WatchdogSec."""

    def __init__(self, notifier: Notifier, interval: float,
                 problems: Callable[[], list[str]]) -> None:
        self._notifier, self._interval, self._problems = notifier, interval, problems
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pings = 0

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _run(self) -> None:
        withheld = False
        while True:
            try:
                problems = self._problems()
            except Exception:  # noqa: BLE001 - a bug in the check must not look healthy
                log.exception("watchdog: health check failed")
                problems = ["health check failed"]
            if problems:
                if not withheld:
                    log.error("watchdog: withholding pings: %s", "; ".join(problems))
                withheld = True
            else:
                if withheld:
                    log.info("watchdog: pipeline moves again; pinging")
                withheld = False
                if self._notifier.notify("WATCHDOG=1"):
                    self.pings += 1
            if self._stop.wait(self._interval):
                return
