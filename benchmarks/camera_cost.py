#!/usr/bin/env python3
"""What one camera costs, part by part, on the C1/C2 stream file (issue 13): the floor under
`benchmarks/cameras.py`'s capacity figures.

Each part is timed alone, as process CPU time, on the local H.264 file (no network):
- demux: read every packet, decode none;
- keyframe decode: PyAV with skip_frame NONKEY (what `decode: auto` does at fps <= the
  keyframe rate), and `ffmpeg -threads 1 -skip_frame nokey -f null` beside it;
- full decode: every frame, PyAV and `ffmpeg -threads 1 -f null`;
- bgr: one decoded 720p frame to a BGR array (edged's Picture.bgr());
- prepare: edged's preprocessing of that frame into the model's input tensor;
- invoke: one LiteRT invoke of MobileNet v2 (uint8, 1 thread, XNNPACK).
From them: the CPU per camera-second at 1 result/s with keyframe decoding (C1) and at 2
results/s with every frame decoded (C2), and how many such cameras two cores could carry if
nothing else ran (no RTSP server, broker, MQTT or outbox).

    .venv/bin/python benchmarks/camera_cost.py --video /tmp/t13/streams/cam720_gop25_105s.mp4
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import MODEL  # noqa: E402


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child_cpu(cmd: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def pyav(video: str, mode: str) -> tuple[float, int, float, object]:
    """(CPU s, frames decoded, stream seconds, the last frame) for mode demux|key|all."""
    import av

    c0 = cpu()
    frames, last, duration = 0, None, 0.0
    with av.open(video) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "SLICE"
        if mode == "key":
            stream.codec_context.skip_frame = "NONKEY"
        for packet in container.demux(stream):
            if packet.pts is not None:
                duration = max(duration, float(packet.pts * packet.time_base))
            if mode == "demux" or (mode == "key" and not packet.is_keyframe):
                continue
            for frame in packet.decode():
                frames += 1
                last = frame
    return cpu() - c0, frames, duration, last


def per_call(fn, n: int) -> float:  # noqa: ANN001
    fn()
    c0 = cpu()
    for _ in range(n):
        fn()
    return (cpu() - c0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--json")
    a = ap.parse_args()
    from edged.capture.sources.avstream import Picture
    from edged.inference.backends.cpu import CpuBackend
    from edged.inference.preprocess import InputSpec, Scratch, build_lut, prepare

    out: dict = {"video": a.video}
    demux_s, _, seconds, _ = pyav(a.video, "demux")
    key_s, keyframes, _, _ = pyav(a.video, "key")
    all_s, frames, _, last = pyav(a.video, "all")
    ff_all = child_cpu(["ffmpeg", "-v", "error", "-threads", "1", "-i", a.video, "-f", "null",
                        "-"])
    ff_key = child_cpu(["ffmpeg", "-v", "error", "-threads", "1", "-skip_frame", "nokey", "-i",
                        a.video, "-f", "null", "-"])
    pic = Picture(last, 0.0, True, 0.0, 0, 0, 1.0)
    bgr = pic.bgr()
    backend = CpuBackend(Path(MODEL).read_bytes(), threads=1, name="bench")
    backend.start()
    # MobileNet v2 uint8's input (the values only shape the table, not the time).
    spec = InputSpec(224, 224, 3, np.dtype(np.uint8), 0.0078125, 128)
    lut = build_lut(spec, 127.5, 127.5)
    scratch = Scratch()
    out_buf = backend.input_buffer()
    ms = {
        "demux_per_stream_s": 1000 * demux_s / seconds,
        "keyframe_decode_per_stream_s_pyav": 1000 * (key_s - demux_s) / seconds,
        "keyframe_decode_per_stream_s_ffmpeg": 1000 * ff_key / seconds,
        "full_decode_per_stream_s_pyav": 1000 * (all_s - demux_s) / seconds,
        "full_decode_per_stream_s_ffmpeg": 1000 * ff_all / seconds,
        "bgr_per_frame": 1000 * per_call(pic.bgr, 200),
        "prepare_per_frame": 1000 * per_call(
            lambda: prepare(bgr, spec, lut, out_buf, "stretch", scratch), 200),
    }
    del out_buf  # the interpreter refuses to run while a view of its input is held
    ms["invoke_per_frame"] = 1000 * per_call(backend.invoke, 200)
    backend.close()
    ms = {k: round(v, 2) for k, v in ms.items()}
    per_result = ms["bgr_per_frame"] + ms["prepare_per_frame"] + ms["invoke_per_frame"]
    c1 = ms["demux_per_stream_s"] + ms["keyframe_decode_per_stream_s_pyav"] + per_result
    c2 = ms["demux_per_stream_s"] + ms["full_decode_per_stream_s_pyav"] + 2 * per_result
    out.update(ms=ms, stream_seconds=round(seconds, 1), keyframes=keyframes, frames=frames,
               c1_floor_ms_per_camera_s=round(c1, 1), c2_floor_ms_per_camera_s=round(c2, 1),
               c1_cameras_on_2_cores=int(2000 // c1), c2_cameras_on_2_cores=int(2000 // c2),
               c2_over_ffmpeg=round((ms["full_decode_per_stream_s_ffmpeg"]) / c2, 2))
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
