"""JPEGs decoded at reduced scale (decode_scale: auto) against ../shared/bench/reference.py
(full decode + bilinear resize): top-1 agrees on every clear case (reference margin >= 0.15)
for every shared model and photo, each photo as a JPEG at its own size and 4x larger; the
reduced decode really happens; the score differences are reported (BENCHMARKS.md, C3)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import SHARED, shared_or_skip
from tests.integration.test_real_models import MODELS, PHOTOS

CLEAR = 0.15


def jpegs(folder: Path) -> list[Path]:
    """Each shared photo as a JPEG at its own size and upscaled 4x (about 2000 x 1400)."""
    photos = shared_or_skip() / "photos"
    out = []
    for name in PHOTOS:
        image = cv2.imread(str(photos / name))
        stem = Path(name).stem
        for tag, img in (("1x", image), ("4x", cv2.resize(image, None, fx=4, fy=4,
                                                         interpolation=cv2.INTER_CUBIC))):
            path = folder / f"{stem}_{tag}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
            out.append(path)
    return out


def reference(model: Path, labels: Path, mean, std, images: list[Path]) -> dict[str, dict]:  # noqa: ANN001
    script = SHARED / "bench" / "reference.py"
    if not script.exists():
        pytest.skip(f"reference pipeline absent: {script}")
    norm = [] if mean is None else ["--mean", str(mean), "--std", str(std)]
    proc = subprocess.run([sys.executable, str(script), str(model), str(labels),
                           *map(str, images), *norm], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {r["src"]: r for r in map(json.loads, proc.stdout.splitlines())}


def ours(model: Path, labels: Path, mean, std, images: list[Path]  # noqa: ANN001
         ) -> dict[str, tuple[int, dict[int, float], int]]:
    """name -> (top-1, scores, reduction factor) with edged's decode and pipeline."""
    from edged.capture.decode import DecodeTarget, reduction
    from edged.capture.imagedecode import image_header, read_image_file
    from edged.config import ModelConfig
    from edged.inference.worker import classify
    from edged.model.loaded import load_model

    kw = {} if mean is None else {"mean": mean, "std": std}
    loaded = load_model("m", ModelConfig(path=str(model), labels=str(labels), top_k=1001,
                                         **kw))
    backend = loaded.new_backend()
    backend.start()
    target = DecodeTarget()
    target.hw = (loaded.spec.height, loaded.spec.width)
    out = {}
    try:
        for path in images:  # as an image folder or hot folder reads them
            image = read_image_file(str(path), target=target, scale_mode="auto")
            top, _ = classify(backend, loaded, image)
            header = image_header(path.read_bytes())
            factor = reduction((header.height, header.width), target.hw)
            assert image.shape[0] == -(-header.height // factor)
            assert target.full_hw == ((header.height, header.width) if factor > 1 else None)
            out[path.name] = (top[0][0], dict(top), factor)
    finally:
        backend.close()
    return out


@pytest.mark.parametrize("key", list(MODELS))
def test_reduced_jpeg_decode_agrees_with_the_reference_on_clear_cases(key, tmp_path):
    models = shared_or_skip()
    model, labels, mean, std, _ = MODELS[key]
    images = jpegs(tmp_path)
    ref = reference(models / model, models / labels, mean, std, images)
    got = ours(models / model, models / labels, mean, std, images)
    clear = [n for n, r in ref.items() if r["margin"] >= CLEAR]
    assert clear, "no clear case to compare"
    for name in clear:
        assert got[name][0] == ref[name]["index"], (key, name, got[name][0], ref[name])
    assert any(f > 1 for _, _, f in got.values()), "nothing was decoded reduced"
    diffs = {n: round(got[n][1].get(r["index"], 0.0) - r["score"], 4) for n, r in ref.items()}
    print(f"\n{key}: score of the reference's top-1, reduced - reference: {diffs}")
