#!/usr/bin/env python3
"""A hot folder of 12 MP JPEGs (issue 13: C3): edged's images/s against the naive loop.

usage: python benchmarks/hotfolder.py [--images 40] [--rounds 2] [--json OUT]

Images: the five shared photos, each upscaled to 4000x3000 (landscape) or 3000x4000 with
sensor noise (several noise seeds, so no two files are alike), JPEG quality 90 (~2-3 MB).
Naive: one thread, `cv2.imread` + `cv2.resize` (bilinear) + BGR->RGB + quantize + invoke
(interpreter with 2 threads), as ../shared/bench/reference.py does, per file.
edged: `edged run` with one hot-folder camera (`watch: true`, settle_s 0.2) holding all the
files from the start, 2 workers, real mosquitto, QoS 1; images/s = (results - 1) / (last
arrival - first arrival). Once with `decode_scale: auto` (the default) and once with `off`,
alternating over the rounds. Top-1 is compared with reference.py on every file whose reference
margin is >= 0.15, and the score differences of the reference's top-1 are listed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH,
    LABELS,
    MODEL,
    PHOTOS,
    SHARED,
    Broker,
    Collector,
    edged_cmd,
    machine,
    write_config,
)


def make_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        name = PHOTOS[i % len(PHOTOS)]
        image = cv2.imread(str(SHARED / "models" / "photos" / name))
        size = (3000, 4000) if image.shape[0] > image.shape[1] else (4000, 3000)
        big = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
        noise = rng.normal(0, 4, big.shape).astype(np.int16)
        big = np.clip(big + noise, 0, 255).astype(np.uint8)
        path = folder / f"{i:03d}_{Path(name).stem}.jpg"
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def naive(images: list[Path]) -> float:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        from tflite_runtime.interpreter import Interpreter
    it = Interpreter(str(MODEL), num_threads=2)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    _, h, w, _ = d["shape"]
    scale, zp = d["quantization"]
    t0 = time.perf_counter()
    for path in images:
        f = cv2.imread(str(path))
        x = cv2.resize(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), (int(w), int(h)),
                       interpolation=cv2.INTER_LINEAR).astype(np.float32)
        q = np.clip(np.round((x - 127.5) / 127.5 / scale + zp), 0, 255).astype(np.uint8)
        it.set_tensor(d["index"], q[None])
        it.invoke()
        it.get_tensor(it.get_output_details()[0]["index"])
    return len(images) / (time.perf_counter() - t0)


def edged_run(tmp: Path, broker: Broker, images: list[Path], scale: str) -> tuple[float, dict]:
    folder = tmp / f"hot-{scale}-{time.monotonic_ns()}"
    folder.mkdir()
    for p in images:
        (folder / p.name).symlink_to(p)
    cfg = write_config(tmp / "hot.yaml", broker.port,
                       {"qc": {"source": str(folder), "watch": True, "settle_s": 0.2,
                               "decode_scale": scale}}, workers=2)
    data = yaml.safe_load(cfg.read_text())
    data["models"]["default"]["top_k"] = 5
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    with Collector(broker.port) as col:
        proc = subprocess.Popen(edged_cmd("run", "-c", str(cfg)), stderr=subprocess.PIPE,
                                text=True)
        ok = col.wait_count(len(images), 300)
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        if not ok:
            raise RuntimeError(f"edged delivered {len(col.snapshot())} of {len(images)}: "
                               f"{err[-2000:]}")
        arrivals = col.snapshot()
    times = sorted(t for t, _ in arrivals)
    rate = (len(times) - 1) / (times[-1] - times[0])
    return rate, {p["file"]: p for _, p in arrivals}


def reference(images: list[Path]) -> dict[str, dict]:
    proc = subprocess.run([sys.executable, str(BENCH / "reference.py"), str(MODEL), str(LABELS),
                           *map(str, images)], capture_output=True, text=True, check=True,
                          timeout=600)
    return {r["src"]: r for r in map(json.loads, proc.stdout.splitlines())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    out: dict = {"machine": machine(), "load_start": Path("/proc/loadavg").read_text()[:14]}
    print(out["machine"], "load", out["load_start"], flush=True)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        images = make_images(tmp / "images", a.images)
        runs: dict[str, list[float]] = {"naive": [], "auto": [], "off": []}
        results: dict[str, dict] = {}
        with Broker(tmp) as broker:
            for r in range(a.rounds):
                runs["naive"].append(naive(images))
                for scale in ("auto", "off"):
                    rate, results[scale] = edged_run(tmp, broker, images, scale)
                    runs[scale].append(rate)
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}/s"
                                                    for k, v in runs.items()), flush=True)
        ref = reference(images)
    best = {k: max(v) for k, v in runs.items()}
    clear = [n for n, r in ref.items() if r["margin"] >= 0.15]
    agree = {scale: sum(1 for n in clear if results[scale][n]["index"] == ref[n]["index"])
             for scale in ("auto", "off")}
    diffs = []
    for n, r in ref.items():
        top = {t["index"]: t["score"] for t in results["auto"][n]["top_k"]}
        diffs.append(abs(top.get(r["index"], 0.0) - r["score"]))
    out.update({
        "images_per_s": {k: [round(x, 1) for x in v] for k, v in runs.items()},
        "best": {k: round(v, 1) for k, v in best.items()},
        "edged_auto_vs_naive": round(best["auto"] / best["naive"], 2),
        "edged_off_vs_naive": round(best["off"] / best["naive"], 2),
        "clear_cases": len(clear), "top1_agree": agree,
        "score_diff_reference_top1": {"max": round(max(diffs), 4),
                                      "median": round(statistics.median(diffs), 4)},
        "load_end": Path("/proc/loadavg").read_text()[:14],
    })
    print(json.dumps(out, indent=1), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
