"""Helpers for the hostile-input fault tests: run the real daemon, watch its RSS, read its
metrics."""

from __future__ import annotations

import signal
import subprocess
import threading
import urllib.request
from pathlib import Path

from tests.helpers.subscriber import Subscriber

RSS_LIMIT_KB = 400 * 1024


def results(sub: Subscriber, camera: str) -> list[dict]:
    return [m.json for m in sub.on(f"/{camera}/result")]


def stop_edged(proc: subprocess.Popen) -> str:
    """SIGTERM, wait, and return stderr (the daemon's whole log)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return err


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class RssWatch:
    """Samples a process's RSS every 0.1 s in a named thread; `peak` in kB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            try:
                self.peak = max(self.peak, rss_kb(self.pid))
            except OSError:
                return  # exited

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in metrics")
