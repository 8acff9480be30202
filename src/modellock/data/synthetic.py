"""A built-in dataset generated in code: ten shape classes drawn on textured backgrounds.

Used by the demo and tests so that neither needs a download. Colour, size, position, rotation
and background vary at random; only the shape tells the class.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..images import save_png_atomic

# Natural-looking tones (sky, grass, sand, earth, stone, brick, ...): colours have the skewed
# statistics of photos, not uniform RGB, as a key editor's colour changes would show on real data.
_PALETTE = np.array([
    [110, 160, 215], [70, 120, 60], [200, 180, 140], [120, 90, 60], [150, 150, 150],
    [170, 80, 60], [230, 225, 210], [40, 45, 50], [90, 140, 110], [210, 150, 60],
], dtype=float)

SHAPES = ["circle", "square", "triangle", "cross", "ring", "hbar", "vbar", "diamond", "star", "corner"]


def _polygon(kind: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        angles = [rot + k * 2 * math.pi / 3 for k in range(3)]
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in angles]
    if kind == "diamond":
        return [(cx, cy - r), (cx + 0.6 * r, cy), (cx, cy + r), (cx - 0.6 * r, cy)]
    if kind == "star":
        pts = []
        for k in range(10):
            rr = r if k % 2 == 0 else 0.45 * r
            a = rot + k * math.pi / 5
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts
    raise ValueError(kind)


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of ``kind`` on a random textured background."""
    s = 4 * size  # draw large, then downsample: smooth edges
    base = _PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 12, size=3)
    grad = np.linspace(-1, 1, s)[None, :, None] * rng.uniform(-30, 30) * np.ones(3)  # shading, not tint
    noise = (rng.normal(0, 16, size=(s // 8, s // 8, 1)) + rng.normal(0, 4, size=(s // 8, s // 8, 3)))
    noise = noise.repeat(8, 0).repeat(8, 1)  # mostly luminance texture, as in photos
    bg = np.clip(base + grad + noise, 0, 255).astype(np.uint8)
    im = Image.fromarray(bg)
    d = ImageDraw.Draw(im)
    colour = tuple(int(c) for c in (_PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 25, size=3)).clip(0, 255))
    r = rng.uniform(0.22, 0.36) * s
    cx, cy = rng.uniform(r + 2, s - r - 2, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    w = max(3, int(0.35 * r))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=w)
    elif kind == "square":
        d.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], fill=colour)
    elif kind == "cross":
        d.rectangle([cx - r, cy - w / 2, cx + r, cy + w / 2], fill=colour)
        d.rectangle([cx - w / 2, cy - r, cx + w / 2, cy + r], fill=colour)
    elif kind == "hbar":
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
    elif kind == "vbar":
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
    elif kind == "corner":
        d.rectangle([cx - r, cy - r, cx - r + w, cy + r], fill=colour)
        d.rectangle([cx - r, cy + r - w, cx + r, cy + r], fill=colour)
    else:
        d.polygon(_polygon(kind, cx, cy, r, rot), fill=colour)
    return np.asarray(im.resize((size, size), Image.LANCZOS))


def make_shapes_dataset(root: str | os.PathLike, n_train: int = 3000, n_test: int = 1000,
                        size: int = 32, seed: int = 0) -> Path:
    """Write ``root/train`` and ``root/test`` in ImageFolder layout (PNG); reuse a complete one."""
    root = Path(root)
    done = root / ".complete"
    if done.exists() and done.read_text() == f"{n_train},{n_test},{size},{seed}":
        return root
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            kind = SHAPES[i % len(SHAPES)]
            save_png_atomic(draw_shape(kind, size, rng), root / split / kind / f"{i:05d}.png")
    done.write_text(f"{n_train},{n_test},{size},{seed}")
    return root
