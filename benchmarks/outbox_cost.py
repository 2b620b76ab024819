#!/usr/bin/env python3
"""Throughput cost of the durable outbox: the daemon on a video against a real mosquitto,
outbox on vs off, in one run, alternating; plus the outbox's own write rate.

    .venv/bin/python benchmarks/outbox_cost.py [--video V] [--rounds 3]

Throughput = results that reached a subscriber / (last arrival - first arrival).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import yaml  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from edged.mqtt.contract import Message  # noqa: E402
from edged.mqtt.outbox import Outbox  # noqa: E402
from tests.helpers.broker import Mosquitto  # noqa: E402

DEMO = ROOT / "models" / "demo"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_once(tmp: Path, port: int, video: str, outbox: bool, tag: str) -> tuple[int, float]:
    arrivals: list[float] = []
    done = threading.Event()

    def on_message(client, userdata, msg) -> None:  # noqa: ANN001
        if msg.topic.endswith("/result"):
            arrivals.append(time.perf_counter())
        elif msg.topic.endswith("/status") and json.loads(msg.payload)["state"] == "stopped":
            done.set()

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{tag}")
    sub.on_message = on_message
    sub.on_connect = lambda c, *a: c.subscribe(f"edged/{tag}/#", qos=1)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    time.sleep(0.3)
    cfg = {"node_id": tag, "log_level": "warning",
           "mqtt": {"host": "127.0.0.1", "port": port,
                    "outbox": {"enabled": outbox, "path": str(tmp / f"{tag}.db")}},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt"), "workers": 2}},
           "cameras": {"cam": {"source": video}},
           "metrics": {"enabled": False}}
    path = tmp / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    subprocess.run([sys.executable, "-m", "edged", "run", "-c", str(path)], check=True)
    done.wait(10)
    sub.disconnect()
    sub.loop_stop()
    n = len(arrivals)
    return n, (n - 1) / (arrivals[-1] - arrivals[0])


def put_rate(tmp: Path, synchronous: str, n: int = 5000) -> float:
    box = Outbox(str(tmp / f"put-{synchronous}.db"), 10**6, 10**9, synchronous)
    box.open()
    payload = b"x" * 400  # about the size of a result
    t0 = time.perf_counter()
    for seq in range(n):
        box.put(Message("edged/n/cam/result", payload, 1, False, "result", camera="cam",
                        seq=seq, user_properties=(("model_sha256", "sha"),)))
    rate = n / (time.perf_counter() - t0)
    box.close()
    return rate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--video", default=str(DEMO / "conveyor.mp4"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: nproc={os.cpu_count()}, CPU: {cpu_model()}, python {platform.python_version()}")
    rates: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Mosquitto(tmp).start()
        try:
            for r in range(args.rounds):
                for outbox in (False, True):
                    n, rate = run_once(tmp, broker.port, args.video, outbox,
                                       f"r{r}-{'on' if outbox else 'off'}")
                    rates[outbox].append(rate)
                    print(f"round {r} outbox {'on ' if outbox else 'off'}: {n} results, "
                          f"{rate:8.1f} results/s")
        finally:
            broker.stop()
        puts = {s: put_rate(tmp, s) for s in ("normal", "full")}
    off, on = (sorted(rates[k])[len(rates[k]) // 2] for k in (False, True))
    print(f"median results/s: outbox off {off:.1f}, on {on:.1f}; on/off = {on / off:.3f}")
    print(f"outbox writes alone: synchronous=normal {puts['normal']:.0f}/s, "
          f"synchronous=full {puts['full']:.0f}/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
