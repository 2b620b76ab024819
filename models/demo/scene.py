"""Procedural top-down quality-control scene: metal plates on a conveyor belt.

Pure numpy + OpenCV. Geometry is specified in pixels of a 240-px-high reference
frame and scaled to the requested size, so any resolution renders the same scene.
A scene is split into a sampled description (`sample_scene`) and a renderer
(`draw`), so the video can hold one part for many frames with small per-frame
changes (`jitter`), while training just calls `render`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

LABELS: tuple[str, ...] = ("ok", "scratched", "dented", "missing", "misaligned")
REF_H = 240  # reference frame height for all pixel sizes below
BELT_LEN = 640  # belt texture period (reference px); wider than any frame
RAIL = 0.07  # fraction of the frame height covered by each guide rail


@dataclass(frozen=True)
class Scratch:
    pts: tuple[tuple[float, float], ...]  # start, bend, end in part-local fractions
    thickness: int  # reference px
    value: float  # intensity the groove is drawn with (bright or dark)


@dataclass(frozen=True)
class Dent:
    centre: tuple[float, float]  # part-local fractions
    axes: tuple[float, float]  # semi-axes, reference px
    angle: float  # degrees
    depth: float  # 0..1


@dataclass(frozen=True)
class Part:
    centre: tuple[float, float]  # frame fractions
    angle: float  # degrees, counter-clockwise
    size: tuple[float, float]  # width, height in reference px
    tone: tuple[float, float, float]  # BGR base colour
    texture_seed: int  # brushed-metal pattern, fixed per part
    scratches: tuple[Scratch, ...] = ()
    dents: tuple[Dent, ...] = ()


@dataclass(frozen=True)
class Scene:
    label: str
    part: Part | None
    belt_seed: int
    belt_level: float  # mean belt brightness
    belt_offset: float  # conveyor travel, reference px
    gain: float  # global exposure
    gradient: tuple[float, float]  # illumination slope along x, y
    white: tuple[float, float, float]  # per-channel light colour
    noise: float  # sensor noise sigma


def _sample_part(label: str, rng: np.random.Generator) -> Part:
    w, h = rng.uniform(140, 160), rng.uniform(95, 115)
    g = rng.uniform(125, 195)
    tone = tuple(float(np.clip(g + t, 0, 255)) for t in rng.uniform(-15, 15, 3))
    # Well-placed parts stay within +-11 px / +-6 deg; misaligned ones are far
    # outside that band so the two classes never overlap.
    dx, dy = rng.uniform(-0.035, 0.035), rng.uniform(-0.04, 0.04)
    angle = rng.uniform(-6, 6)
    if label == "misaligned":
        if rng.random() < 0.5:
            angle = float(rng.choice([-1, 1]) * rng.uniform(22, 45))
        else:
            dx = float(rng.choice([-1, 1]) * rng.uniform(0.13, 0.19))
            dy = rng.uniform(-0.12, 0.12)
    scratches: list[Scratch] = []
    dents: list[Dent] = []
    if label == "scratched":
        for i in range(int(rng.integers(1, 4))):
            # The first scratch is always long so every scratched part is obvious.
            length = rng.uniform(0.55, 0.9) if i == 0 else rng.uniform(0.25, 0.7)
            c = rng.uniform([0.3, 0.3], [0.7, 0.7])
            d = rng.uniform(-np.pi, np.pi)
            v = np.array([np.cos(d), np.sin(d) * w / h]) * length / 2
            bend = c + rng.normal(0, 0.04, 2)
            p0, p1 = np.clip(c - v, 0.06, 0.94), np.clip(c + v, 0.06, 0.94)
            # A white groove on a bright plate is nearly invisible: use dark ones there.
            bright = rng.random() < 0.6 and float(np.mean(tone)) < 165
            value = rng.uniform(225, 255) if bright else rng.uniform(15, 50)
            scratches.append(
                Scratch((tuple(p0), tuple(bend), tuple(p1)), int(rng.integers(2, 4)), float(value))
            )
    elif label == "dented":
        for _ in range(int(rng.integers(1, 3))):
            a = rng.uniform(14, 23)
            dents.append(
                Dent(
                    tuple(rng.uniform([0.28, 0.3], [0.72, 0.7])),
                    (a, a * rng.uniform(0.6, 1.0)),
                    rng.uniform(0, 180),
                    rng.uniform(0.7, 1.0),
                )
            )
    return Part(
        centre=(0.5 + dx, 0.5 + dy),
        angle=float(angle),
        size=(w, h),
        tone=tone,  # type: ignore[arg-type]
        texture_seed=int(rng.integers(2**31)),
        scratches=tuple(scratches),
        dents=tuple(dents),
    )


def sample_scene(label: str, rng: np.random.Generator) -> Scene:
    """Draw all random parameters of one scene for the given class label."""
    if label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    return Scene(
        label=label,
        part=None if label == "missing" else _sample_part(label, rng),
        belt_seed=int(rng.integers(2**31)),
        belt_level=rng.uniform(35, 80),
        belt_offset=rng.uniform(0, BELT_LEN),
        gain=rng.uniform(0.75, 1.25),
        gradient=tuple(rng.uniform(-0.3, 0.3, 2)),  # type: ignore[arg-type]
        white=tuple(rng.uniform(0.92, 1.08, 3)),  # type: ignore[arg-type]
        noise=rng.uniform(1.0, 4.0),
    )


def jitter(scene: Scene, rng: np.random.Generator, t: int, belt_step: float = 3.0) -> Scene:
    """Frame t of a part held under the camera: belt creeps on, part wobbles ~1 px.

    The wobble is drawn around the sampled pose (not a random walk), so the part
    never drifts out of the pose range its class was trained on.
    """
    part = scene.part
    if part is not None:
        c = np.asarray(part.centre) + rng.uniform(-1, 1, 2) * [1.5 / 320, 1.5 / 240]
        part = replace(part, centre=tuple(c), angle=part.angle + rng.uniform(-0.5, 0.5))
    return replace(
        scene,
        part=part,
        belt_offset=(scene.belt_offset + belt_step * t) % BELT_LEN,
        gain=scene.gain * rng.uniform(0.98, 1.02),
    )


def _belt(scene: Scene, w: int, h: int, u: float) -> np.ndarray:
    """Rubber belt with seams and grain that scroll along x, plus static rails."""
    brng = np.random.default_rng(scene.belt_seed)
    grain = cv2.GaussianBlur(
        6 * brng.standard_normal((REF_H, BELT_LEN), dtype=np.float32), (0, 0), 1.2
    )
    grain += cv2.GaussianBlur(brng.normal(0, 8, (1, BELT_LEN)).astype(np.float32), (0, 0), 4)
    period = int(brng.integers(60, 110))
    grain[:, (np.arange(BELT_LEN) % period) < 3] -= 18  # belt seams
    cols = int(np.ceil(w / u)) + 1
    idx = (np.arange(cols) + int(scene.belt_offset)) % BELT_LEN
    tex = cv2.resize(grain[:, idx], (w, h), interpolation=cv2.INTER_LINEAR)
    img = np.repeat((scene.belt_level + tex)[..., None], 3, axis=2)
    rail = max(1, int(RAIL * h))
    steel = np.linspace(150, 105, rail, dtype=np.float32)[:, None, None]
    img[:rail] = steel
    img[h - rail :] = steel[::-1]
    return img


def _part_canvas(part: Part, u: float) -> tuple[np.ndarray, np.ndarray]:
    """Part image (BGR float) and coverage mask (float 0..1), unrotated."""
    pw, ph = round(part.size[0] * u), round(part.size[1] * u)
    mask8 = np.zeros((ph, pw), np.uint8)
    r = int(0.16 * ph)
    cv2.rectangle(mask8, (r, 0), (pw - 1 - r, ph - 1), 255, -1)
    cv2.rectangle(mask8, (0, r), (pw - 1, ph - 1 - r), 255, -1)
    for cx, cy in ((r, r), (pw - 1 - r, r), (r, ph - 1 - r), (pw - 1 - r, ph - 1 - r)):
        cv2.circle(mask8, (cx, cy), r, 255, -1, cv2.LINE_AA)
    hr = max(2, int(0.07 * ph))  # four mounting holes show the belt through them
    for fx, fy in ((0.12, 0.18), (0.88, 0.18), (0.12, 0.82), (0.88, 0.82)):
        cv2.circle(mask8, (int(fx * pw), int(fy * ph)), hr, 0, -1, cv2.LINE_AA)

    trng = np.random.default_rng(part.texture_seed)
    brushed = cv2.blur(trng.normal(0, 14, (ph, pw)).astype(np.float32), (max(3, pw // 3), 1))
    ys, xs = np.mgrid[0:ph, 0:pw].astype(np.float32)
    shade = 1.0 + 0.12 * (xs / pw - 0.5) - 0.1 * (ys / ph - 0.5) + brushed / 255.0
    # Bevel: edges fall off so the plate reads as a solid object.
    dist = cv2.distanceTransform(mask8, cv2.DIST_L2, 3)
    shade *= 0.72 + 0.28 * np.clip(dist / (3.0 * u), 0, 1)
    img = shade[..., None] * np.asarray(part.tone, np.float32)

    for d in part.dents:
        img = _dent(img, d, u)
    for s in part.scratches:
        img = _scratch(img, s, u)
    return img, mask8.astype(np.float32) / 255.0


def _dent(img: np.ndarray, d: Dent, u: float) -> np.ndarray:
    """Dark shaded bowl with a specular rim on the side away from the light."""
    ph, pw = img.shape[:2]
    ys, xs = np.mgrid[0:ph, 0:pw].astype(np.float32)
    t = np.deg2rad(d.angle)
    x, y = xs - d.centre[0] * pw, ys - d.centre[1] * ph
    xr, yr = x * np.cos(t) + y * np.sin(t), -x * np.sin(t) + y * np.cos(t)
    r2 = (xr / (d.axes[0] * u)) ** 2 + (yr / (d.axes[1] * u)) ** 2
    bowl = np.clip(1.0 - r2, 0, 1) ** 2  # depth profile, 1 at the centre
    gy, gx = np.gradient(bowl)
    lit = (gx * 0.7 + gy * 0.7) / (np.abs(gx * 0.7 + gy * 0.7).max() + 1e-6)
    out = img * (1.0 - 0.55 * d.depth * bowl)[..., None]
    return out + (70.0 * d.depth * lit)[..., None]


def _scratch(img: np.ndarray, s: Scratch, u: float) -> np.ndarray:
    ph, pw = img.shape[:2]
    p = np.asarray(s.pts) * [pw, ph]
    tt = np.linspace(0, 1, 24)[:, None]
    curve = (1 - tt) ** 2 * p[0] + 2 * (1 - tt) * tt * p[1] + tt**2 * p[2]  # quadratic Bezier
    m = np.zeros((ph, pw), np.uint8)
    th = max(1, round(s.thickness * u))
    cv2.polylines(m, [np.round(curve).astype(np.int32)], False, 255, th, cv2.LINE_AA)
    a = (m.astype(np.float32) / 255.0 * 0.9)[..., None]
    return img * (1 - a) + s.value * a


def draw(scene: Scene, rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """Render a sampled scene to a BGR uint8 image; rng only drives sensor noise."""
    w, h = size
    u = h / REF_H
    img = _belt(scene, w, h, u)
    if scene.part is not None:
        part_img, mask = _part_canvas(scene.part, u)
        ph, pw = mask.shape
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), scene.part.angle, 1.0)
        m[:, 2] += (scene.part.centre[0] * w - pw / 2, scene.part.centre[1] * h - ph / 2)
        warped = cv2.warpAffine(part_img, m, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_LINEAR)[..., None]
        # Soft drop shadow, offset down-right, darkens the belt under the part.
        m[:, 2] += (3 * u, 4 * u)
        shadow = cv2.GaussianBlur(cv2.warpAffine(mask, m, (w, h)), (0, 0), 3 * u)[..., None]
        img = img * (1 - 0.5 * shadow)
        img = img * (1 - alpha) + warped * alpha
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    light = scene.gain * (
        1 + scene.gradient[0] * (xs / w - 0.5) + scene.gradient[1] * (ys / h - 0.5)
    )
    img = img * light[..., None] * np.asarray(scene.white, np.float32)
    img += scene.noise * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def render(label: str, rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """One random frame of the given class as a BGR uint8 image of size (W, H)."""
    return draw(sample_scene(label, rng), rng, size)
