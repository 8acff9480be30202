"""Built-in datasets generated in code: shapes drawn on textured backgrounds.

``make_shapes_dataset`` writes ten shape classes for classification; ``make_shapes_segmentation_dataset``
writes scenes of 1-3 shapes with per-pixel class masks. Used by the demo and tests so that neither needs
a download. Colour, size, position, rotation and background vary at random; only the shape tells the class.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError
from ..utils.atomic import write_bytes_atomic
from ..utils.images import save_png_atomic

# Natural-looking tones (sky, grass, sand, earth, stone, brick, ...): colours have the skewed
# statistics of photos, not uniform RGB, as a key editor's colour changes would show on real data.
_PALETTE = np.array([
    [110, 160, 215], [70, 120, 60], [200, 180, 140], [120, 90, 60], [150, 150, 150],
    [170, 80, 60], [230, 225, 210], [40, 45, 50], [90, 140, 110], [210, 150, 60],
], dtype=float)

SHAPES = ["circle", "square", "triangle", "cross", "ring", "hbar", "vbar", "diamond", "star", "corner"]
SEGMENTATION_SHAPES = ("circle", "square", "triangle", "star")


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


def _background(s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A textured natural-toned sxsx3 uint8 background, and its base colour."""
    base = _PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 12, size=3)
    grad = np.linspace(-1, 1, s)[None, :, None] * rng.uniform(-30, 30) * np.ones(3)  # shading, not tint
    noise = (rng.normal(0, 16, size=(s // 8, s // 8, 1)) + rng.normal(0, 4, size=(s // 8, s // 8, 3)))
    # mostly luminance texture, as in photos: each 8x8 noise cell adds to one row of shading, the same on its
    # 8 rows, so one pixel row per cell is computed and repeated (the same values as adding at full size)
    cells = np.clip((base + grad).reshape(1, s // 8, 8, 3) + noise[:, :, None, :], 0, 255).astype(np.uint8)
    return np.broadcast_to(cells.reshape(s // 8, 1, s, 3), (s // 8, 8, s, 3)).reshape(s, s, 3), base


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """A natural tone with some spread, for a shape."""
    return tuple(int(c) for c in (_PALETTE[rng.integers(len(_PALETTE))] + rng.normal(0, 25, size=3)).clip(0, 255))


def _draw(d: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, rot: float, fill) -> None:
    """Draw one shape of radius ``r`` centred at (cx, cy) with ``fill`` (a colour or a mask value)."""
    w = max(3, int(0.35 * r))
    if kind == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=w)
    elif kind == "square":
        d.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], fill=fill)
    elif kind == "cross":
        d.rectangle([cx - r, cy - w / 2, cx + r, cy + w / 2], fill=fill)
        d.rectangle([cx - w / 2, cy - r, cx + w / 2, cy + r], fill=fill)
    elif kind == "hbar":
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
    elif kind == "vbar":
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    elif kind == "corner":
        d.rectangle([cx - r, cy - r, cx - r + w, cy + r], fill=fill)
        d.rectangle([cx - r, cy + r - w, cx + r, cy + r], fill=fill)
    else:
        d.polygon(_polygon(kind, cx, cy, r, rot), fill=fill)


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One HxWx3 uint8 image of ``kind`` on a random textured background."""
    s = 4 * size  # draw large, then downsample: smooth edges
    bg, _ = _background(s, rng)
    im = Image.fromarray(bg)
    colour = _colour(rng)
    r = rng.uniform(0.22, 0.36) * s
    cx, cy = rng.uniform(r + 2, s - r - 2, size=2)
    rot = rng.uniform(0, 2 * math.pi)
    _draw(ImageDraw.Draw(im), kind, cx, cy, r, rot, colour)
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


def _distinct_colour(rng: np.random.Generator, background: np.ndarray, min_distance: float = 60.0):
    """A shape colour at least ``min_distance`` (RGB) away from the background's base tone."""
    for _ in range(20):
        colour = _colour(rng)
        if np.linalg.norm(np.asarray(colour) - background) >= min_distance:
            break
    return colour


def _majority_downsample(mask: np.ndarray, factor: int, n_classes: int) -> np.ndarray:
    """Each output pixel takes the most common class of its ``factor`` x ``factor`` block."""
    h, w = mask.shape[0] // factor, mask.shape[1] // factor
    blocks = mask.reshape(h, factor, w, factor).transpose(0, 2, 1, 3).reshape(h, w, -1)
    counts = (blocks[..., None] == np.arange(n_classes, dtype=mask.dtype)).sum(axis=2)
    return counts.argmax(axis=2).astype(np.uint8)


def draw_segmentation_scene(size: int, rng: np.random.Generator,
                            shapes=SEGMENTATION_SHAPES) -> tuple[np.ndarray, np.ndarray]:
    """An HxWx3 uint8 image of 1-3 shapes (later ones on top) and its HxW uint8 mask (0 = background,
    k = ``shapes[k-1]``). Drawn at 4x, then the image is downsampled with LANCZOS and the mask by majority."""
    s = 4 * size
    bg, base = _background(s, rng)
    image, mask = Image.fromarray(bg), Image.new("L", (s, s), 0)
    draw_image, draw_mask = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(len(shapes)))
        colour = _distinct_colour(rng, base)
        r = rng.uniform(0.15, 0.3) * s
        cx, cy = rng.uniform(r, s - r, size=2)
        rot = rng.uniform(0, 2 * math.pi)
        _draw(draw_image, shapes[k], cx, cy, r, rot, colour)
        _draw(draw_mask, shapes[k], cx, cy, r, rot, k + 1)
    small = np.asarray(image.resize((size, size), Image.LANCZOS))
    return small, _majority_downsample(np.asarray(mask), 4, len(shapes) + 1)


def make_shapes_segmentation_dataset(root: str | os.PathLike, n_train: int = 2000, n_test: int = 500,
                                     size: int = 32, seed: int = 0, shapes=SEGMENTATION_SHAPES) -> Path:
    """Write ``root/{train,test}/{images,masks}/NNNNN.png`` and ``classes.txt`` (background + shapes);
    reuse a complete one written with the same parameters."""
    shapes = tuple(shapes)
    unknown = [k for k in shapes if k not in SHAPES]
    if unknown or not shapes:
        raise DataError(f"shapes: unknown shape {unknown[0]!r} (known: {', '.join(SHAPES)})" if unknown
                        else "shapes: need at least one shape")
    root = Path(root)
    done = root / ".complete"
    stamp = f"segmentation:{n_train},{n_test},{size},{seed},{'|'.join(shapes)}"
    if done.exists() and done.read_text() == stamp:
        return root
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            image, mask = draw_segmentation_scene(size, rng, shapes)
            save_png_atomic(image, root / split / "images" / f"{i:05d}.png")
            save_png_atomic(mask, root / split / "masks" / f"{i:05d}.png")
    write_bytes_atomic(("\n".join(("background",) + shapes) + "\n").encode(), root / "classes.txt")
    done.write_text(stamp)
    return root
