"""Shared pieces of the benchmark scripts: a private broker, a subscriber, process helpers."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGED_SHARED", ROOT.parent / "shared"))
BENCH = SHARED / "bench"
MODEL = SHARED / "models" / "imagenet" / "mobilenet_v2_1.0_224_quant.tflite"
LABELS = SHARED / "models" / "imagenet" / "imagenet_labels.txt"
PHOTOS = ["parrot.jpg", "grace_hopper.bmp", "cat.bmp", "bird.bmp", "squat.bmp"]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, " \
           f"Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Broker:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\nmax_queued_messages 100000\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(5)


@dataclass
class Collector:
    """Subscribes to edged's results; records arrival time and payload of each."""

    port: int
    topic: str = "edged/+/+/result"
    arrivals: list[tuple[float, dict]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ANN001
        now = time.time()
        with self._lock:
            self.arrivals.append((now, json.loads(msg.payload)))

    def __enter__(self) -> Collector:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_count(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.arrivals) >= n:
                    return True
            time.sleep(0.05)
        return False

    def snapshot(self) -> list[tuple[float, dict]]:
        with self._lock:
            return list(self.arrivals)


def make_video(out: Path, hold: int = 30, repeat: int = 4, size: str = "640x480") -> Path:
    if not out.exists():
        photos = [str(SHARED / "models" / "photos" / p) for p in PHOTOS]
        subprocess.run([sys.executable, str(BENCH / "make_video.py"), str(out), *photos,
                        "--hold", str(hold), "--repeat", str(repeat), "--size", size],
                       check=True, capture_output=True)
    return out


def write_config(path: Path, port: int, cameras: dict, workers: int = 2, threads: int = 1,
                 model: Path = MODEL, labels: Path | None = LABELS, extra: dict | None = None,
                 ) -> Path:
    cfg = {
        "node_id": "bench",
        "log_level": "warning",
        "mqtt": {"host": "127.0.0.1", "port": port, "qos": 1, "drain_timeout_s": 30},
        "models": {"default": {"path": str(model), "workers": workers, "threads": threads,
                               **({"labels": str(labels)} if labels else {})}},
        "cameras": cameras,
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for key, value in (extra or {}).items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.update(
            {key: value})
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(cmd: list[str], timeout: float = 600) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True,
                          timeout=timeout).stdout


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def edged_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edged", *args]
