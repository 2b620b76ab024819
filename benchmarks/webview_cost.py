#!/usr/bin/env python3
"""Throughput cost of the live view: `edged run` on the looping demo video as fast as it
decodes, against a real mosquitto, with the web view off, on with nobody watching, and on with
one viewer (an MJPEG stream at the default 5 fps plus the page's status poll), in one run,
alternating.

    .venv/bin/python benchmarks/webview_cost.py [--rounds 3] [--seconds 8]

Throughput = results that reached a subscriber per second, counted after a 1.5 s warm-up
until the daemon is told to stop.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # noqa: E402
from common import ROOT, Broker, Collector, edged_cmd, free_port, machine  # noqa: E402

DEMO = ROOT / "models" / "demo"
MODES = ("off", "on", "watched")


class Viewer(threading.Thread):
    """One browser's worth of load: the camera's MJPEG stream and a status poll each second."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(name="bench-viewer", daemon=True)
        self.port, self.stop_event, self.frames = port, stop, 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/cameras/cam/stream.mjpg")
                resp = conn.getresponse()
                last_poll = 0.0
                while not self.stop_event.is_set():
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    self.frames += chunk.count(b"Content-Type: image/jpeg")
                    if time.monotonic() - last_poll > 1.0:
                        last_poll = time.monotonic()
                        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/status",
                                               timeout=5).read()
                resp.close()
                conn.close()
            except OSError:
                self.stop_event.wait(0.2)  # not listening yet


def run_once(tmp: Path, broker_port: int, mode: str, seconds: float) -> tuple[float, int]:
    port = free_port()
    cfg = {"node_id": f"bench-{mode}", "log_level": "warning",
           "mqtt": {"host": "127.0.0.1", "port": broker_port,
                    "outbox": {"path": str(tmp / f"{mode}.db")}},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt"), "workers": 2}},
           "cameras": {"cam": {"source": str(DEMO / "conveyor.mp4"), "loop": True}},
           "metrics": {"listen": f"127.0.0.1:{port}"},
           "web": {"enabled": mode != "off"}}
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    stop = threading.Event()
    viewer = Viewer(port, stop) if mode == "watched" else None
    with Collector(broker_port, topic=f"edged/bench-{mode}/+/result") as col:
        proc = subprocess.Popen(edged_cmd("run", "-c", str(path)))
        try:
            if not col.wait_count(1, 30):
                raise RuntimeError("no results")
            if viewer is not None:
                viewer.start()
            t0 = time.time() + 1.5
            time.sleep(1.5 + seconds)
            t1 = time.time()
        finally:
            stop.set()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        n = sum(1 for t, _ in col.snapshot() if t0 <= t <= t1)
    return n / (t1 - t0), viewer.frames if viewer is not None else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with Broker(tmp) as broker:
            for r in range(args.rounds):
                for mode in MODES:
                    rate, frames = run_once(tmp, broker.port, mode, args.seconds)
                    rates[mode].append(rate)
                    extra = f" ({frames} MJPEG frames seen)" if mode == "watched" else ""
                    print(f"round {r} web {mode:7s}: {rate:8.1f} results/s{extra}", flush=True)
    med = {m: statistics.median(v) for m, v in rates.items()}
    print("median results/s: " + ", ".join(f"{m} {med[m]:.1f}" for m in MODES))
    print(f"on (nobody watching) / off = {med['on'] / med['off']:.3f}; "
          f"watched / off = {med['watched'] / med['off']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
