#!/usr/bin/env python3
"""`make demo`: a private mosquitto, a subscriber, and edged classifying the bundled demo video.

Every result is printed as it arrives at the subscriber; at the end, the agreement with the
video's ground truth.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "models" / "demo"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(tmp: Path, port: int) -> subprocess.Popen:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("demo: mosquitto did not start")


def main() -> int:
    truth = json.loads((DEMO / "conveyor.truth.json").read_text())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        broker = start_broker(tmp, port)
        results: dict[int, dict] = {}
        done = threading.Event()

        def on_message(client, userdata, msg) -> None:  # noqa: ANN001
            data = json.loads(msg.payload)
            if msg.topic.endswith("/status"):
                print(f"{msg.topic} {data['state']}")
                if data["state"] == "stopped":
                    done.set()
                return
            if not msg.topic.endswith("/result"):
                return
            results[data["frame"]] = data
            expected = truth[data["frame"]] if data["frame"] < len(truth) else "?"
            mark = "ok " if data["label"] == expected else "MISS"
            print(f"{msg.topic} seq={data['seq']:4d} frame={data['frame']:4d} "
                  f"{data['label']:>10s} {data['score']:.2f}  truth={expected:<10s} {mark} "
                  f"{data['latency_ms']:6.1f} ms")

        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edged-demo-viewer")
        sub.on_message = on_message
        sub.on_connect = lambda c, *a: c.subscribe("edged/#", qos=1)
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        # The example config as shipped, pointed at this broker (and a free metrics port).
        config = yaml.safe_load((ROOT / "config.example.yaml").read_text())
        config["mqtt"]["port"] = port
        config["metrics"]["listen"] = "127.0.0.1:0"
        config["mqtt"].setdefault("outbox", {})["path"] = str(tmp / "outbox.db")
        for model in config["models"].values():
            model["path"] = str(ROOT / model["path"])
            model["labels"] = str(ROOT / model["labels"])
        for cam in config["cameras"].values():
            cam["source"] = str(ROOT / cam["source"])
        cfg_path = tmp / "demo.yaml"
        cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
        time.sleep(0.3)
        t0 = time.monotonic()
        try:
            code = subprocess.call([sys.executable, "-m", "edged", "run", "-c", str(cfg_path)])
            done.wait(5)
        finally:
            sub.disconnect()
            sub.loop_stop()
            broker.terminate()
            broker.wait(5)
        elapsed = time.monotonic() - t0
    right = sum(1 for f, r in results.items() if f < len(truth) and r["label"] == truth[f])
    print(f"\nedged exit code {code}; {len(results)} results for {len(truth)} frames in "
          f"{elapsed:.1f}s; {right}/{len(truth)} = {100 * right / len(truth):.1f}% match the "
          "ground truth")
    return 0 if code == 0 and len(results) == len(truth) else 1


if __name__ == "__main__":
    sys.exit(main())
