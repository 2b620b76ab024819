#!/usr/bin/env python3
"""Throughput cost of evidence captures, on the looping demo video as fast as it decodes,
against a real mosquitto: capture off; a capture rule for the defect labels (`scratched`,
`dented`: 40 % of the frames) at the default cap (600 a minute per rule); and that rule
uncapped (every defect frame offered to the writer: its bounded queue and its CPU budget
decide, the rest is dropped and counted). Two parts, each in one run:

1. toggled (the precise one on a shared machine): one daemon in this process; capture is
   switched off and on every `--window` seconds (the camera's rules are hidden from the
   capturer, so it does nothing), `--pairs` sets in rotating order, after a warm-up with
   capture on that spends the cap's first-minute burst. Per set, each variant's frames
   classified per second over the same set's `off`; the median of those ratios. Drift of the
   machine's load hits every window of a set alike. Uncapped, it also compares the writer
   without its CPU budget (`capture.writer_cpu`, default 0.1), and without it at nice +10
   (set from here on the writer's thread id), the alternative the budget replaced.
2. processes: `edged run` started afresh per mode (the burst included), rounds alternating;
   throughput = results at a subscriber per second over `--seconds` after a 1.5 s warm-up;
   CPU per result = the process's user + system time over the window / its results.

    .venv/bin/python benchmarks/capture_cost.py [--pairs 20] [--window 2] [--rounds 5]
        [--seconds 8] [--skip-processes]
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


# The writer variants the toggled part compares: (capture on, CPU share, nice of the writer).
VARIANTS = {"off": (False, 0.1, 0), "on": (True, 0.1, 0),
            "no budget": (True, 1.0, 0), "nice 10": (True, 1.0, 10)}


def toggled(tmp: Path, broker_port: int, uncapped: bool, sets: int, window: float,
            variants: dict[str, tuple[bool, float, int]]) -> dict[str, list[tuple[float, float]]]:
    """Per variant, (frames/s, captures/s) of each window; one daemon in this process, the
    variants in rotating order within each set."""
    sys.path.insert(0, str(ROOT))
    from prometheus_client import CollectorRegistry

    from edged.app.daemon import Daemon
    from edged.config import load_config
    from edged.mqtt.extensions.captures import Capturer

    rules: dict = {"labels": DEFECTS}
    capture: dict = {"dir": str(tmp / "caps-toggled")}
    if uncapped:
        rules["max_per_minute"] = 10**9
        capture["queue_bytes"] = 4 * 1024 * 1024  # drains in well under a second when off
    cfg = {"node_id": "bench-toggled", "log_level": "warning",
           "mqtt": {"host": "127.0.0.1", "port": broker_port,
                    "outbox": {"path": str(tmp / "toggled.db")}},
           "models": {"default": {"path": str(DEMO / "model.tflite"),
                                  "labels": str(DEMO / "labels.txt"), "workers": 2}},
           "cameras": {"cam": {"source": str(DEMO / "conveyor.mp4"), "loop": True,
                               "capture": rules}},
           "metrics": {"enabled": False}, "capture": capture}
    path = tmp / "toggled.yaml"
    path.write_text(yaml.safe_dump(cfg))
    registry = CollectorRegistry()
    daemon = Daemon(load_config(path), registry=registry)
    daemon.start()
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    try:
        cap = next(p for p in daemon.pipeline.extensions if isinstance(p, Capturer))
        writer = cap._thread.native_id  # noqa: SLF001 - the benchmark's switches
        rules_on = cap._rules_of  # noqa: SLF001

        def count(name: str) -> float:
            return sum(s.value for m in registry.collect() for s in m.samples
                       if s.name == name and s.labels.get("camera") == "cam")

        time.sleep(12)  # warm-up, capture on: the cap's burst is spent and written here
        names = list(variants)
        for i in range(sets):
            order = names[i % len(names):] + names[:i % len(names)]  # rotate
            line = []
            for name in order:
                on, share, nice = variants[name]
                cap._rules_of = rules_on if on else (lambda _name: None)  # noqa: SLF001
                cap._cpu_share = share  # noqa: SLF001
                os.setpriority(os.PRIO_PROCESS, writer, nice)  # root may lower it again
                if not on:
                    cap.idle(5)  # off means off: nothing left for the writer
                n0, w0, t0 = (count("edged_frames_processed_total"),
                              count("edged_captures_total"), time.monotonic())
                time.sleep(window)
                n1, w1, t1 = (count("edged_frames_processed_total"),
                              count("edged_captures_total"), time.monotonic())
                out[name].append(((n1 - n0) / (t1 - t0), (w1 - w0) / (t1 - t0)))
                line.append(f"{name} {out[name][-1][0]:6.1f} ({out[name][-1][1]:5.1f})")
            print(f"  set {i:2d}: " + ", ".join(line), flush=True)
    finally:
        daemon.stop()
        shutil.rmtree(tmp / "caps-toggled", ignore_errors=True)
    return out


def micro(tmp: Path, n: int = 20000) -> None:
    """What a capture costs, measured without the rest of the pipeline: `on_result` on the
    publisher thread for a result that meets no rule, one that meets a rule over its cap, and
    one that is queued; and the writer's CPU per capture (encode, sidecar, write, rename)."""
    sys.path.insert(0, str(ROOT))
    import cv2
    from prometheus_client import CollectorRegistry

    from edged.config import CaptureConfig, CaptureRulesConfig
    from edged.frame import Frame
    from edged.mqtt.extensions.captures import CaptureMetrics, Capturer

    video = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    image = video.read()[1]
    video.release()
    result = {"node_id": "n", "camera": "cam", "seq": 0, "frame": 0, "ts": time.time(),
              "model": "default", "label": "ok", "index": 0, "score": 0.99,
              "top_k": [{"label": "ok", "index": 0, "score": 0.99}], "inference_ms": 1.0,
              "latency_ms": 2.0}
    rules = {"cam": CaptureRulesConfig(labels=DEFECTS)}
    cap = Capturer(CaptureConfig(dir=str(tmp / "caps-micro"), min_free_bytes=0,
                                 queue_bytes=1024**3), rules.get,
                   CaptureMetrics(CollectorRegistry()), cpu_share=1.0)
    frame = Frame(image, 0, time.time(), time.monotonic())
    for label, what in (("ok", "no rule met"), ("dented", "rule met, over its cap")):
        r = dict(result, label=label)
        cap.on_result("cam", frame, r)
        for _ in range(700):  # spend the cap's burst first
            cap.on_result("cam", frame, r)
        t0 = time.perf_counter()
        for _ in range(n):
            cap.on_result("cam", frame, r)
        print(f"micro: on_result, {what}: {(time.perf_counter() - t0) / n * 1e6:.2f} us")
    rules["cam"] = CaptureRulesConfig(labels=DEFECTS, max_per_minute=10**9)
    r = dict(result, label="dented")
    cap.on_result("cam", frame, r)  # new rules: a fresh cap
    t0 = time.perf_counter()
    for i in range(500):
        cap.on_result("cam", frame, dict(r, seq=i, ts=r["ts"] + i / 1000))
    queued = (time.perf_counter() - t0) / 500
    print(f"micro: on_result, queued: {queued * 1e6:.2f} us")
    c0 = time.process_time()
    cap.start()
    cap.idle(120)
    cap.stop()
    per = (time.process_time() - c0) / 500
    print(f"micro: writer CPU per capture of a {image.shape[1]}x{image.shape[0]} frame: "
          f"{per * 1000:.3f} ms (JPEG q90 + sidecar + write + rename)")
    shutil.rmtree(tmp / "caps-micro", ignore_errors=True)


def report(title: str, out: dict[str, list[tuple[float, float]]]) -> None:
    """Medians, and per set each variant's frames/s over the same set's `off`."""
    off = [r for r, _ in out["off"]]
    parts = []
    for name, rows in out.items():
        ratio = statistics.median(r / o for (r, _), o in zip(rows, off))
        parts.append(f"{name} {statistics.median(r for r, _ in rows):.1f} frames/s "
                     f"({statistics.median(c for _, c in rows):.1f} captures/s, "
                     f"/off {ratio:.3f})")
    print(f"{title}: median " + "; ".join(parts), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--skip-processes", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        micro(tmp)
        with Broker(tmp) as broker:
            print("toggled, default cap (600/min):", flush=True)
            report("toggled, default cap", toggled(
                tmp, broker.port, False, args.pairs, args.window,
                {k: VARIANTS[k] for k in ("off", "on")}))
            print("toggled, uncapped:", flush=True)
            report("toggled, uncapped", toggled(tmp, broker.port, True, args.pairs,
                                                args.window, VARIANTS))
    if args.skip_processes:
        return 0
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
