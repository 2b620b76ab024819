#!/usr/bin/env python3
"""CPU per classified region: one camera with 8 regions against the same stream configured
as 8 cameras (each with the region as its roi), in one run, alternating.

    .venv/bin/python benchmarks/regions_cost.py [--rounds 2] [--frames 300]

The stream: a 1280x480 H.264 file (ffmpeg, libx264) of demo-scene frames, 8 inspection
points of 320x240 side by side (4 x 2), each showing its own class. Each form runs in its own
process: the daemon's own pipeline (`Daemon` with a NullSink: results counted, not sent;
state and outbox off), every frame classified (`policy: every`). CPU = the process's
user + system time from the first result to the last (start-up and model loading excluded),
divided by the results. The 8-camera form opens the file 8 times and decodes every frame 8
times; the 8-region form decodes it once and crops 8 views.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEMO = ROOT / "models" / "demo"
COLS, ROWS, TILE = 4, 2, (320, 240)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def boxes() -> dict[str, list[int]]:
    w, h = TILE
    return {f"p{r * COLS + c}": [c * w, r * h, w, h] for r in range(ROWS) for c in range(COLS)}


def make_video(out: Path, frames: int) -> None:
    """frames/15 distinct scenes, each held 15 frames, as H.264 (yuv420p, 15 fps)."""
    import cv2
    import numpy as np

    from tests.helpers.regions_scene import scene_module, tiled

    labels = scene_module().LABELS
    rng = np.random.default_rng(5)
    pngs = out.parent / "png"
    pngs.mkdir(exist_ok=True)
    hold = 15
    for k in range((frames + hold - 1) // hold):
        row = [labels[(k + j) % len(labels)] for j in range(COLS * ROWS)]
        cv2.imwrite(str(pngs / f"{k:04d}.png"), tiled(row, rng, COLS))
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-framerate", str(15 / hold),
                    "-i", str(pngs / "%04d.png"), "-r", "15", "-frames:v", str(frames),
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30", str(out)],
                   check=True)


def child(form: str, video: str, expected: int) -> dict:
    from prometheus_client import CollectorRegistry

    from edged.app.daemon import Daemon
    from edged.config import Config
    from edged.sinks.null import NullSink

    cam = {"source": video, "policy": "every"}
    if form == "regions":
        cameras = {"cam": {**cam, "regions": {n: {"box": b} for n, b in boxes().items()}}}
    else:
        cameras = {f"cam{n}": {**cam, "roi": b} for n, b in boxes().items()}
    cfg = Config.model_validate({
        "node_id": "bench", "log_level": "warning",
        "mqtt": {"state": {"enabled": False}, "outbox": {"enabled": False}},
        "models": {"default": {"path": str(DEMO / "model.tflite"),
                               "labels": str(DEMO / "labels.txt"), "workers": 2}},
        "cameras": cameras, "metrics": {"enabled": False}})
    sink = NullSink()
    daemon = Daemon(cfg, CollectorRegistry(), sink_factory=lambda *_: sink)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="bench-daemon")
    runner.start()
    while sink.results == 0 and runner.is_alive():  # start-up is not measured
        time.sleep(0.005)
    c0, t0, n0 = cpu_s(), time.perf_counter(), sink.results
    deadline = time.monotonic() + 600
    while runner.is_alive() and sink.results < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    c1, t1, n1 = cpu_s(), time.perf_counter(), sink.results
    stop.set()
    runner.join(30)
    results = n1 - n0
    return {"form": form, "results": results, "total": n1, "cpu_s": round(c1 - c0, 3),
            "wall_s": round(t1 - t0, 3),
            "cpu_ms_per_region": round(1000 * (c1 - c0) / max(results, 1), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--child", choices=("regions", "cameras"))
    ap.add_argument("--video")
    args = ap.parse_args()
    expected = args.frames * COLS * ROWS
    if args.child:
        print(json.dumps(child(args.child, args.video, expected)))
        return 0
    from common import machine

    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "stations.mp4"
        make_video(video, args.frames)
        runs: dict[str, list[dict]] = {"regions": [], "cameras": []}
        for _ in range(args.rounds):
            for form in ("cameras", "regions"):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", form, "--video", str(video),
                     "--frames", str(args.frames)], capture_output=True, text=True,
                    check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                runs[form].append(row)
                print(json.dumps(row), flush=True)
    med = {f: statistics.median(r["cpu_ms_per_region"] for r in rows)
           for f, rows in runs.items()}
    print(f"machine: {machine()}")
    print(f"stream: 1280x480 H.264, {args.frames} frames, 8 regions of 320x240; "
          f"{args.rounds} rounds, median")
    print(f"CPU per classified region: 8 cameras {med['cameras']:.3f} ms, 1 camera with "
          f"8 regions {med['regions']:.3f} ms: ratio {med['regions'] / med['cameras']:.2f}x "
          "(goal <= 0.5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
