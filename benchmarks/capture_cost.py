#!/usr/bin/env python3
"""Throughput cost of evidence captures: `edged run` on the looping demo video as fast as it
decodes, against a real mosquitto, with capture off, with a capture rule for the defect labels
(`scratched`, `dented`: 40 % of the frames) at the default cap (600 a minute per rule), and
with that rule uncapped (every defect frame offered to the writer: its bounded queue and its
lower CPU priority decide, the rest is dropped and counted), in one run, alternating.

    .venv/bin/python benchmarks/capture_cost.py [--rounds 5] [--seconds 8]

Throughput = results that reached a subscriber per second, counted after a 1.5 s warm-up
until the daemon is told to stop; captures = capture announcements in the same window; CPU
per result = the edged process's user + system CPU time over the window / its results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # noqa: E402
from common import ROOT, Broker, Collector, edged_cmd, machine  # noqa: E402

DEMO = ROOT / "models" / "demo"
MODES = ("off", "on", "uncapped")
DEFECTS = ["scratched", "dented"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(tmp: Path, broker_port: int, mode: str, seconds: float
             ) -> tuple[float, float, float]:
    caps = tmp / f"caps-{mode}"
    camera: dict = {"source": str(DEMO / "conveyor.mp4"), "loop": True}
    if mode != "off":
        camera["capture"] = {"labels": DEFECTS}
        if mode == "uncapped":
            camera["capture"]["max_per_minute"] = 10**9
    cfg = {"node_id": f"bench-{mode}", "log_level": "warning",
           "mqtt": {"host": "127.0.0.1", "port": broker_port,
                    "outbox": {"path": str(tmp / f"{mode}.db")}},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt"), "workers": 2}},
           "cameras": {"cam": camera},
           "metrics": {"enabled": False},
           "capture": {"dir": str(caps)}}
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    # One subscriber for both: a capture announcement has "rule", a result "latency_ms".
    with Collector(broker_port, topic=f"edged/bench-{mode}/cam/#") as col:
        proc = subprocess.Popen(edged_cmd("run", "-c", str(path)))
        try:
            if not col.wait_count(2, 30):
                raise RuntimeError("no results")
            time.sleep(1.5)
            t0, c0 = time.time(), cpu_seconds(proc.pid)
            time.sleep(seconds)
            t1, c1 = time.time(), cpu_seconds(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        seen = [(t, m) for t, m in col.snapshot() if t0 <= t <= t1]
        n = sum(1 for _, m in seen if "latency_ms" in m)
        c = sum(1 for _, m in seen if "rule" in m)
    shutil.rmtree(caps, ignore_errors=True)
    return n / (t1 - t0), c / (t1 - t0), (c1 - c0) * 1000 / max(n, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    captures: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        with Broker(tmp) as broker:
            for r in range(args.rounds):
                order = MODES if r % 2 == 0 else tuple(reversed(MODES))  # alternate
                for mode in order:
                    rate, caps, ms = run_once(tmp, broker.port, mode, args.seconds)
                    rates[mode].append(rate)
                    captures[mode].append(caps)
                    cpu[mode].append(ms)
                    print(f"round {r} capture {mode:8s}: {rate:8.1f} results/s, "
                          f"{caps:6.1f} captures/s, {ms:.3f} CPU ms/result", flush=True)
    med = {m: statistics.median(v) for m, v in rates.items()}
    capmed = {m: statistics.median(v) for m, v in captures.items()}
    cpumed = {m: statistics.median(v) for m, v in cpu.items()}
    print("median results/s: " + ", ".join(f"{m} {med[m]:.1f}" for m in MODES))
    print("median captures/s: " + ", ".join(f"{m} {capmed[m]:.1f}" for m in MODES))
    print("median CPU ms/result (edged process): " + ", ".join(
        f"{m} {cpumed[m]:.3f}" for m in MODES))
    print(f"on / off = {med['on'] / med['off']:.3f}; "
          f"uncapped / off = {med['uncapped'] / med['off']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
