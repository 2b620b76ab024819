"""Pre-encoded H.264 files for the RTSP server's --video mode: a fixed GOP (no scene-cut
keyframes, no B-frames), like an IP camera's main stream, encoded with PyAV's libx264."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_h264(out: Path, source: Path, seconds: float, fps: int = 25, gop: int = 25,
              size: tuple[int, int] | None = None, noise: float = 6.0, seed: int = 0) -> Path:
    """`seconds` of `source` (a video, looped) as H.264 in MP4 at `fps`, a keyframe every
    `gop` frames, with per-frame sensor noise (sigma `noise`) so no two frames are alike."""
    import av

    rng = np.random.default_rng(seed)
    cap = cv2.VideoCapture(str(source))
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image if size is None else cv2.resize(image, size))
    cap.release()
    if not frames:
        raise RuntimeError(f"{source}: no frames")
    height, width = frames[0].shape[:2]
    # A bank of noise fields, cycled at a prime stride: cheap, and no two frames alike.
    bank = [rng.normal(0, noise, (height, width, 3)).astype(np.int16) for _ in range(7)]
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast", "bf": "0", "keyint_min": str(gop),
                          "sc_threshold": "0", "g": str(gop)}
        for i in range(int(seconds * fps)):
            image = frames[i % len(frames)]
            if noise:
                image = np.clip(image + bank[i % 7], 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out
