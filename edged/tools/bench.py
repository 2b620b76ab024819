"""`edged bench`: what this machine does with a model, and the threads/workers to use.

1. invoke: p50/p99 time and invokes/s for each threads x workers setting (no decode, no I/O);
2. end to end: the daemon's own pipeline on a video file as fast as it goes (results are
   counted, not sent: the broker is not measured);
3. latency: capture-to-publish p50/p99 with the video paced at its own frame rate;
4. memory: the process's resident set size.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from tqdm import tqdm

from edged.config import Config, ModelConfig
from edged.app.daemon import Daemon
from edged.errors import EdgedError
from edged.model.loaded import LoadedModel, load_model
from edged.sinks.null import NullSink


@dataclass
class InvokeResult:
    threads: int
    workers: int
    ips: float
    p50_ms: float
    p99_ms: float


@dataclass
class BenchReport:
    model: str
    cores: int
    invoke: list[InvokeResult] = field(default_factory=list)
    e2e_fps: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    paced_fps: float | None = None
    rss_mb: float = 0.0
    suggestion: dict = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if values else 0.0


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def settings(cores: int) -> list[tuple[int, int]]:
    """threads x workers to try: single, all threads in one, all workers, and 2x workers."""
    found = [(1, 1), (cores, 1), (1, cores), (1, 2 * cores)]
    return list(dict.fromkeys(found))


def bench_invoke(model: LoadedModel, threads: int, workers: int, seconds: float,
                 tick: threading.Event) -> InvokeResult:
    backends = [model.new_backend(threads=threads) for _ in range(workers)]
    for b in backends:
        b.start()
    times: list[list[float]] = [[] for _ in backends]
    stop = threading.Event()

    def run(i: int) -> None:
        b = backends[i]
        buf = b.input_buffer()
        buf[...] = np.zeros_like(buf)
        del buf
        for _ in range(3):
            b.invoke()
        while not stop.is_set():
            t0 = time.perf_counter()
            b.invoke()
            times[i].append(time.perf_counter() - t0)

    ts = [threading.Thread(target=run, args=(i,), name=f"bench-{i}") for i in range(workers)]
    for t in ts:
        t.start()
    time.sleep(0.5)  # warm-up
    counts = [len(t) for t in times]
    t0 = time.perf_counter()
    stop.wait(seconds)
    n = sum(len(t) for t in times) - sum(counts)
    elapsed = time.perf_counter() - t0
    stop.set()
    for t in ts:
        t.join()
    for b in backends:
        b.close()
    tick.set()
    flat = [x * 1000 for t in times for x in t]
    return InvokeResult(threads, workers, n / elapsed, percentile(flat, 50), percentile(flat, 99))


def _pipeline_config(model: ModelConfig, video: str, threads: int, workers: int,
                     paced: bool) -> Config:
    m = model.model_dump()
    m.update(threads=threads, workers=workers)
    return Config.model_validate({
        "node_id": "bench", "log_level": "warning",
        "mqtt": {"state": {"enabled": False}, "outbox": {"enabled": False}},
        "models": {"default": m},
        "cameras": {"bench": {"source": video, "realtime": paced, "loop": paced}},
        "metrics": {"enabled": False}})


def bench_pipeline(model: ModelConfig, video: str, threads: int, workers: int,
                   seconds: float | None) -> tuple[float, list[float]]:
    """(results/s, latencies in ms): the whole file unpaced when seconds is None, else paced."""
    sink = NullSink()
    # The daemon's own pipeline, with results counted instead of sent.
    daemon = Daemon(_pipeline_config(model, video, threads, workers, seconds is not None),
                    CollectorRegistry(), sink_factory=lambda *_: sink)
    stop = threading.Event()
    runner = threading.Thread(target=daemon.run, args=(stop,), name="bench-daemon")
    runner.start()
    deadline = time.monotonic() + (seconds or 3600)
    while sink.results == 0 and runner.is_alive():  # start-up is not measured
        time.sleep(0.01)
    t0 = time.perf_counter()
    sink.take()
    while runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    count, latencies = sink.take()
    elapsed = time.perf_counter() - t0
    stop.set()
    runner.join()
    return count / elapsed, latencies


def run_bench(model_path: str, labels: str | None, video: str | None, seconds: float,
              mean: float | list[float] | None = None, std: float | list[float] | None = None,
              progress: bool = True) -> BenchReport:
    if not os.path.isfile(model_path):
        raise EdgedError(f"--model: file not found: {model_path}")
    if video is not None and not os.path.isfile(video):
        raise EdgedError(f"--video: file not found: {video}")
    cfg = ModelConfig(path=model_path, labels=labels, mean=mean, std=std)
    model = load_model("bench", cfg)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    report = BenchReport(model=os.path.basename(model_path), cores=cores or 1)
    combos = settings(report.cores)
    steps = len(combos) + (2 if video else 0)
    bar = tqdm(total=steps, desc="edged bench", unit="step", disable=not progress, leave=False)
    tick = threading.Event()
    for threads, workers in combos:
        bar.set_postfix_str(f"invoke threads={threads} workers={workers}")
        report.invoke.append(bench_invoke(model, threads, workers, seconds, tick))
        bar.update()
    # Within 3 % of the best throughput, the setting with the lowest invoke latency wins:
    # more workers than cores add no throughput, only queueing.
    top = max(r.ips for r in report.invoke)
    best = min((r for r in report.invoke if r.ips >= 0.97 * top),
               key=lambda r: (r.p50_ms, r.threads * r.workers))
    report.suggestion = {"threads": best.threads, "workers": best.workers}
    if video:
        bar.set_postfix_str("end to end")
        report.e2e_fps, _ = bench_pipeline(cfg, video, best.threads, best.workers, None)
        bar.update()
        bar.set_postfix_str("paced latency")
        report.paced_fps, lat = bench_pipeline(cfg, video, best.threads, best.workers,
                                               max(seconds * 2, 5.0))
        report.latency_p50_ms = percentile(lat, 50)
        report.latency_p99_ms = percentile(lat, 99)
        bar.update()
    bar.close()
    report.rss_mb = rss_mb()
    return report


def format_report(r: BenchReport) -> str:
    lines = [f"edged bench: {r.model} on {r.cores} cores", "",
             f"{'threads':>7} {'workers':>7} {'invokes/s':>10} {'p50 ms':>8} {'p99 ms':>8}"]
    for i in r.invoke:
        mark = "  <- suggested" if (i.threads, i.workers) == (r.suggestion["threads"],
                                                              r.suggestion["workers"]) else ""
        lines.append(f"{i.threads:>7} {i.workers:>7} {i.ips:>10.1f} {i.p50_ms:>8.2f} "
                     f"{i.p99_ms:>8.2f}{mark}")
    lines.append("")
    if r.e2e_fps is not None:
        lines.append(f"end to end (video, unpaced):  {r.e2e_fps:8.1f} frames/s")
        lines.append(f"capture to publish (paced at {r.paced_fps:.1f} fps): "
                     f"p50 {r.latency_p50_ms:.2f} ms, p99 {r.latency_p99_ms:.2f} ms")
    lines.append(f"resident memory: {r.rss_mb:.0f} MB")
    lines.append(f"suggested: threads: {r.suggestion['threads']}, workers: "
                 f"{r.suggestion['workers']}")
    return "\n".join(lines)


def report_json(r: BenchReport) -> str:
    from dataclasses import asdict

    return json.dumps(asdict(r), indent=1)
