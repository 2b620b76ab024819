#!/usr/bin/env python3
"""Many RTSP cameras on one box (issue 13: C1, C2, C4), beside the decode-everything yardstick.

usage: python benchmarks/cameras.py [--only c1,c2,c4] [--quick] [--json OUT]
           [--c1 16,32,48,64,80] [--c2 8,12,16,20,24] [--yard 8,12,16,20,24,28] [--c4 40]
           [--seconds 30] [--warmup 15]

Streams: one pre-encoded H.264 file per GOP (1280x720, 25 fps, a keyframe every 25 frames for
C1/C4 and every 50 for C2, no B-frames, a slowly panning photo under per-frame sensor noise,
CBR capped at 2 Mbit/s with a 0.25 s VBV buffer as IP cameras send: keyframes ~55 KB, others
~5-7 KB, 1.4-1.6 Mbit/s),
made once with the ffmpeg CLI (x264) and served by gst-rtsp-server as it is (no re-encode;
tests/helpers/rtsp_server.py --video): each client its own pipeline from the file's start, so
the cameras' keyframes are not in step. MobileNet v2 uint8 (../shared/models), 2 workers, real
mosquitto, QoS 1.

C1 cameras per box: N cameras at fps 1 (`decode: auto`, which learns the 1 s keyframe interval
   and decodes only keyframes). A step passes when every camera gets >= 0.95 results/s over the
   window and the p99 of edged_camera_lag_seconds (sampled every second, every camera) < 1.5 s.
   Also: time until every camera has delivered a frame (opening N at once), time from SIGTERM
   to exit, CPU per camera (edged's process CPU time over the window / N).
C2 the same at fps 2 with a keyframe every 50 frames (2 s): `auto` must decode every frame.
   Pass: >= 1.9 results/s per camera and lag p99 < 1.5 s.
Yardstick (per stream file): N `ffmpeg -threads 1 -i URL -f null -` processes, each decoding
   every frame; a step passes when every one decodes >= 0.95 x 25 frames/s.
C4 overload: N cameras at fps 2 on the GOP-50 stream (every frame decoded) with N above the C2
   capacity: when is the first lagging camera reported (lag gauge > max_lag_s, the log line,
   /readyz "degraded"), the largest lag seen (bounded by max_lag_s?), and results per camera
   (no camera starves).

Capacity numbers depend on what else runs on the machine: the report includes the load
average and the RTSP server's own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    LABELS,
    MODEL,
    ROOT,
    SHARED,
    Broker,
    Collector,
    edged_cmd,
    free_port,
    machine,
    percentile,
    rss_mb,
    write_config,
)

RTSP_HELPER = ROOT / "tests" / "helpers" / "rtsp_server.py"
FPS = 25
TICK = os.sysconf("SC_CLK_TCK")


def make_stream(out: Path, gop: int, seconds: int) -> Path:
    """A 720p 25 fps H.264 MP4 with a fixed GOP: 30 s encoded once, then repeated losslessly
    (stream copy) to `seconds`."""
    if out.exists():
        return out
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise SystemExit("ffmpeg is needed for the streams (scripts/setup.sh installs it)")
    photo = SHARED / "models" / "photos" / "parrot.jpg"
    base = out.with_suffix(".base.mp4")
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-loop", "1", "-framerate",
                    str(FPS), "-i", str(photo), "-t", "30", "-vf",
                    # A slow pan (every frame moves) under temporal sensor noise.
                    "scale=1440:-2,crop=1280:720:'80+80*sin(t/2)':'40+40*cos(t/3)',"
                    "format=yuv420p,noise=alls=8:allf=t+u", "-c:v", "libx264",
                    "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop),
                    "-sc_threshold", "0", "-bf", "0",
                    # CBR with a 0.25 s VBV buffer, as IP cameras send: keyframes ~55 KB,
                    # other frames ~5 KB (x264's default ABR makes 150 KB keyframes here).
                    "-b:v", "2M", "-maxrate", "2M", "-bufsize", "500k",
                    "-movflags", "+faststart", str(base)], check=True)
    loops = max(0, -(-seconds // 30) - 1)
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-stream_loop", str(loops),
                    "-i", str(base), "-c", "copy", "-movflags", "+faststart", str(out)],
                   check=True)
    base.unlink()
    return out


class RtspServer:
    def __init__(self, video: Path) -> None:
        self.port = free_port()
        self.video = video
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> RtspServer:
        self.proc = subprocess.Popen(["/usr/bin/python3", str(RTSP_HELPER), "--port",
                                      str(self.port), "--video", str(self.video), "--fps",
                                      str(FPS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"RTSP server did not start: {self.proc.stderr.read()}")
        return self

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def load() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def scrape(port: int, path: str = "/metrics") -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read().decode()
    except urllib.error.HTTPError as exc:  # /readyz answers 503 when not ready
        return exc.read().decode()
    except OSError:  # not listening yet
        return ""


def gauges(text: str, name: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        name + r'\{camera="([^"]+)"\} ([-\d.e+]+)', text)}


def counters(text: str, name: str, reason: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(
        name + r'\{camera="[^"]+",reason="' + reason + r'"\} ([\d.e+]+)', text))


def edged_step(tmp: Path, broker: Broker, url: str, n: int, fps: float, seconds: float,
               warmup: float, decode: str = "auto", max_lag_s: float = 2.0) -> dict:
    """N cameras on one edged; what each got in the window, lag, CPU, open and stop times."""
    mport = free_port()
    cams = {f"cam{i:03d}": {"source": url, "fps": fps, "decode": decode, "timeout_s": 10,
                            "max_lag_s": max_lag_s} for i in range(n)}
    cfg = write_config(tmp / f"cams{n}.yaml", broker.port, cams, workers=2,
                       extra={"metrics": {"listen": f"127.0.0.1:{mport}"}})
    log = tmp / f"edged{n}.log"
    res: dict = {"n": n, "fps": fps, "decode": decode, "load_before": load()}
    with Collector(broker.port) as col, open(log, "w") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(edged_cmd("run", "-c", str(cfg)), stderr=err)
        open_all = None
        lags: list[float] = []
        worst_lag = 0.0
        first_report: dict[str, float] = {}
        try:
            while time.monotonic() - t0 < warmup:
                time.sleep(0.5)
                if proc.poll() is not None:
                    raise RuntimeError(f"edged exited: {log.read_text()[-2000:]}")
                text = scrape(mport)
                if open_all is None:
                    got = gauges(text, "edged_frames_captured_total")
                    if len(got) == n and all(v > 0 for v in got.values()):
                        open_all = time.monotonic() - t0
                _reports(text, mport, max_lag_s, t0, first_report, log)
            c0, w0 = cpu_s(proc.pid), time.monotonic()
            drops0 = _drops(scrape(mport))
            start_wall = time.time()
            while time.monotonic() - w0 < seconds:
                time.sleep(1.0)
                text = scrape(mport)
                cam_lags = gauges(text, "edged_camera_lag_seconds")
                lags += cam_lags.values()
                worst_lag = max([worst_lag, *cam_lags.values()])
                if open_all is None:
                    got = gauges(text, "edged_frames_captured_total")
                    if len(got) == n and all(v > 0 for v in got.values()):
                        open_all = time.monotonic() - t0
                _reports(text, mport, max_lag_s, t0, first_report, log)
            window = time.monotonic() - w0
            cpu = cpu_s(proc.pid) - c0
            res["rss_mb"] = round(rss_mb(proc.pid))
            end_wall = time.time()
            text = scrape(mport)
            lag_drops = counters(text, "edged_frames_dropped_total", "lag")
            # Where the missing results went, in the window: by drop reason.
            drops1 = _drops(text)
            res["dropped_in_window"] = {k: round(drops1.get(k, 0) - drops0.get(k, 0))
                                        for k in sorted(drops1)}
        finally:
            ts = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            res["stop_s"] = round(time.monotonic() - ts, 2)
        arrivals = col.snapshot()
    per_cam = {c: 0 for c in cams}
    for _, p in arrivals:
        if start_wall <= p["ts"] <= end_wall and p["camera"] in per_cam:
            per_cam[p["camera"]] += 1
    rates = sorted(v / window for v in per_cam.values())
    res.update({
        "open_all_s": None if open_all is None else round(open_all, 1),
        "results_per_s_min": round(rates[0], 3), "results_per_s_median": round(rates[n // 2], 3),
        "cameras_below_95pct": sum(1 for r in rates if r < 0.95 * fps),
        "lag_p50_s": round(percentile(lags, 50), 3), "lag_p99_s": round(percentile(lags, 99), 3),
        "lag_max_s": round(worst_lag, 3), "lag_drops": lag_drops,
        "cpu_cores": round(cpu / window, 2), "cpu_ms_per_camera_s": round(1000 * cpu / window / n, 1),
        "lag_log_lines": log.read_text().count("behind the stream"),
        "errors": [line for line in log.read_text().splitlines() if "Traceback" in line][:3],
        **{f"first_{k}_s": round(v, 1) for k, v in first_report.items()},
    })
    if open_all is not None:  # overload starts once every camera is up
        for k in ("lag_drop", "log", "readyz"):
            if k in first_report:
                res[f"{k}_after_all_open_s"] = round(max(0.0, first_report[k] - open_all), 1)
    res["pass"] = res["cameras_below_95pct"] == 0 and res["lag_p99_s"] < 1.5
    return res


def _drops(text: str) -> dict[str, float]:
    """edged_frames_dropped_total summed over cameras, by reason."""
    out: dict[str, float] = {}
    for m in re.finditer(r'^edged_frames_dropped_total\{[^}]*reason="([^"]+)"[^}]*\} (\S+)',
                         text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def _reports(text: str, mport: int, max_lag_s: float, t0: float, first: dict, log: Path) -> None:
    """When lagging was first visible: the gauge, a lag drop, the log line, /readyz."""
    now = time.monotonic() - t0
    if "gauge" not in first and any(v > max_lag_s for v in
                                    gauges(text, "edged_camera_lag_seconds").values()):
        first["gauge"] = now
    if "lag_drop" not in first and counters(text, "edged_frames_dropped_total", "lag") > 0:
        first["lag_drop"] = now
    if "log" not in first and "behind the stream" in log.read_text():
        first["log"] = now
    if "readyz" not in first:
        try:
            body = json.loads(scrape(mport, "/readyz"))
        except (ValueError, OSError):
            return
        if body.get("degraded"):
            first["readyz"] = now


def yardstick_step(url: str, n: int, seconds: float, warmup: float) -> dict:
    """N ffmpeg processes decoding every frame, one thread each; frames/s of the slowest."""
    ffmpeg = shutil.which("ffmpeg")
    procs = []
    frames: list[list[tuple[float, int]]] = [[] for _ in range(n)]

    def follow(i: int, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.startswith("frame="):
                frames[i].append((time.monotonic(), int(line.split("=")[1])))

    threads = []
    for i in range(n):
        proc = subprocess.Popen([ffmpeg, "-nostdin", "-loglevel", "error", "-threads", "1",
                                 "-rtsp_transport", "tcp", "-i", url, "-threads", "1",
                                 "-f", "null", "-progress", "pipe:1", "-"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        t = threading.Thread(target=follow, args=(i, proc), name=f"ffmpeg-{i}", daemon=True)
        t.start()
        threads.append(t)
    time.sleep(warmup)
    c0 = sum(_safe_cpu(p.pid) for p in procs)
    w0 = time.monotonic()
    time.sleep(seconds)
    w1 = time.monotonic()
    cpu = sum(_safe_cpu(p.pid) for p in procs) - c0
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    rates = []
    for series in frames:
        inside = [(t, f) for t, f in series if w0 <= t <= w1]
        if len(inside) >= 2:
            rates.append((inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]))
        else:
            rates.append(0.0)
    rates.sort()
    return {"n": n, "decode_fps_min": round(rates[0], 1), "decode_fps_median":
            round(rates[n // 2], 1), "cpu_cores": round(cpu / (w1 - w0), 2),
            "pass": rates[0] >= 0.95 * FPS}


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_s(pid)
    except OSError:
        return 0.0


def largest(steps: list[dict]) -> int:
    passed = [s["n"] for s in steps if s["pass"]]
    return max(passed) if passed else 0


def _capacity(tmp: Path, broker: Broker, video: Path, fps: float, ns: str,
              a: argparse.Namespace, what: str) -> dict:
    """One capacity table (C1 or C2): edged's steps, then both decode-everything yardsticks
    (N `ffmpeg` decoders, and edged with `decode: all`), against one RTSP server."""
    with RtspServer(video) as server:
        steps = []
        for n in map(int, ns.split(",")):
            c0 = _safe_cpu(server.proc.pid)
            step = edged_step(tmp, broker, server.url(), n, fps, a.seconds, a.warmup)
            step["rtsp_server_cpu_s"] = round(_safe_cpu(server.proc.pid) - c0, 1)
            print(what, json.dumps(step), flush=True)
            steps.append(step)
        yard = []
        for n in map(int, a.yard.split(",")):
            step = yardstick_step(server.url(), n, a.seconds, 5)
            print(what, "yardstick", json.dumps(step), flush=True)
            yard.append(step)
        every = _all_steps(tmp, broker, server.url(), a.all_n, fps, a, what)
    res = {"steps": steps, "yardstick": yard, "edged_max_n": largest(steps),
           "yardstick_max_n": largest(yard), "decode_all": every,
           "decode_all_max_n": largest(every)}
    for key, base in (("ratio", "yardstick_max_n"), ("ratio_vs_decode_all", "decode_all_max_n")):
        if res[base]:
            res[key] = round(res["edged_max_n"] / res[base], 2)
    return res


def _all_steps(tmp: Path, broker: Broker, url: str, ns: str, fps: float,
               a: argparse.Namespace, what: str) -> list[dict]:
    """The issue's other decode-everything yardstick: edged itself with `decode: all`."""
    steps = []
    for n in map(int, ns.split(",")) if ns else ():
        step = edged_step(tmp, broker, url, n, fps, a.seconds, a.warmup, decode="all")
        print(what, "decode all", json.dumps(step), flush=True)
        steps.append(step)
    return steps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="c1,c2,c4")
    ap.add_argument("--quick", action="store_true", help="small N, short windows")
    ap.add_argument("--c1", default="16,32,48,64,80")
    ap.add_argument("--c2", default="8,12,16,20,24")
    ap.add_argument("--yard", default="8,12,16,20,24,28")
    ap.add_argument("--all", dest="all_n", default="8,12,16,20,24",
                    help="N for the second yardstick: edged itself with `decode: all` (C1, C2)")
    ap.add_argument("--c4", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--keep", help="folder for the stream files (kept between runs)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if a.quick:
        a.c1, a.c2, a.yard, a.c4, a.seconds, a.warmup = "2,4", "2", "2", 4, 10, 8
        a.all_n = "2"
    out: dict = {"machine": machine(), "load_start": load()}
    print(out["machine"], "load", out["load_start"], flush=True)
    keep = Path(a.keep) if a.keep else None
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = keep or tmp
        files.mkdir(parents=True, exist_ok=True)
        length = int(a.warmup + a.seconds + 60)
        only = a.only.split(",")
        with Broker(tmp) as broker:
            if "c1" in only or "c4" in only:
                gop25 = make_stream(files / f"cam720_gop25_{length}s.mp4", 25, length)
            if "c2" in only or "c4" in only:
                gop50 = make_stream(files / f"cam720_gop50_{length}s.mp4", 50, length)
            if "c1" in only:
                out["c1"] = _capacity(tmp, broker, gop25, 1, a.c1, a, "c1")
            if "c2" in only:
                out["c2"] = _capacity(tmp, broker, gop50, 2, a.c2, a, "c2")
            if "c4" in only:
                with RtspServer(gop50) as server:
                    step = edged_step(tmp, broker, server.url(), a.c4, 2, a.seconds, a.warmup)
                    print("c4", json.dumps(step), flush=True)
                out["c4"] = step
    out["load_end"] = load()
    print(json.dumps({k: v for k, v in out.items() if k in ("c1", "c2")}, default=str)[:3000])
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
